"""PUT and GET /api/v1/costs: cost rows with the replace rule, every bad row named."""

from tests.api.conftest import error_of
from tests.conftest import create_page

ROW = {"date": "2026-03-01", "source": "ads", "campaign": "spring", "page": "guide",
       "amount": "30.00", "currency": "USD"}


def put(api, body):
    return api.client.put("/api/v1/costs", json=body,
                          headers={"Authorization": f"Bearer {api.token}"})


def test_rows_are_put_then_replaced_and_listed(app, api):
    create_page(app, slug="guide")
    first = put(api, [ROW, {**ROW, "date": "2026-03-02", "amount": 12}])
    assert (first.status_code, first.get_json()) == (200, {"added": 2, "replaced": 0})
    again = put(api, {"rows": [{**ROW, "amount": "31.50"}]})
    assert again.get_json() == {"added": 0, "replaced": 1}
    listed = api.get("/costs?from=2026-03-01&to=2026-03-01").get_json()["rows"]
    assert listed == [{**ROW, "amount": "31.50"}]
    assert api.get("/metrics?from=2026-03-01&to=2026-03-02").get_json()["total"]["spend"] \
        == "43.50"


def test_every_bad_row_is_named_and_nothing_is_saved(app, api):
    create_page(app, slug="guide")
    response = put(api, [ROW, {**ROW, "amount": "-1"}, {**ROW, "currency": "EUR"}, 7,
                         {**ROW, "cost": 1}])
    assert response.status_code == 422
    assert error_of(response)["fields"] == {
        "rows[1].amount": "must be 0 or more (at most 999999999999.99)",
        "rows[2].currency": "EUR is not the page's currency (USD); Capture converts nothing",
        "rows[3]": "must be an object",
        "rows[4].cost": "unknown; the keys are date, source, campaign, page, amount, currency"}
    assert api.get("/costs").get_json()["rows"] == []


def test_an_empty_list_is_refused(api):
    response = put(api, [])
    assert response.status_code == 422
    assert error_of(response)["fields"] == {"rows": "give a non-empty list of cost rows"}
