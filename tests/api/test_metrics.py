"""GET /api/v1/metrics: the numbers of capture.numbers.metrics, as JSON."""

from datetime import datetime, timedelta

import pytest

from capture.numbers import metrics
from capture.api.shapes import numbers_json
from tests.api.conftest import error_of
from tests.conftest import optin
from tests.factories import add_broadcast, add_delivery, add_event, add_lead, add_upgrade


@pytest.fixture
def activity(app, client, api, make_page, clock):
    """On 2026-03-02: 3 visitors of "offer" (payout 2.50), two from ads; 2 leads by the
    form (one rejected by the domain rule), 1 by the API; one 19.90 upgrade."""
    make_page(slug="offer", payout="2.50", rules={"block_domains": ["blocked.example"]})
    optin(app.test_client(), "offer", query="?utm_source=ads", email="ann@example.com")
    optin(app.test_client(), "offer", query="?utm_source=ads", email="bob@blocked.example")
    app.test_client().get("/p/offer")
    ref = api.post("/leads", {"page": "offer", "email": "cy@example.com",
                              "utm_source": "store"}).get_json()["lead"]["public_ref"]
    api.post("/upgrades", {"lead": ref, "amount": "19.90", "currency": "USD", "txn": "t1"})


def test_totals_are_the_numbers_of_the_metrics_module(app, api, activity):
    body = api.get("/metrics").get_json()
    total = body["total"]
    assert (total["visitors"], total["leads"], total["approved"], total["rejected"]) == (
        3, 3, 2, 1)
    assert total["conversion_rate"] == 1.0
    assert total["approval_rate"] == pytest.approx(2 / 3)
    assert (total["payout"], total["upgrade_revenue"], total["revenue"]) == (
        "5.00", "19.90", "24.90")
    assert total["earnings_per_visitor"] == "8.3000"
    with app.app_context():
        assert total == numbers_json(metrics.report().total)
    assert body["currency"] == "USD"


def test_grouped_by_source_gives_one_row_per_source(app, api, activity):
    body = api.get("/metrics?by=source").get_json()
    rows = {row.pop("group"): row for row in body["rows"]}
    assert set(rows) == {"(none)", "ads", "store"}
    assert rows["ads"]["leads"] == 2 and rows["ads"]["rejected"] == 1
    assert rows["store"]["upgrade_revenue"] == "19.90"
    with app.app_context():
        report = metrics.report(by="source")
        assert rows == {group: numbers_json(numbers) for group, numbers in report.rows.items()}


def test_period_and_page_narrow_the_report(app, api, activity):
    body = api.get("/metrics?from=2026-03-02&to=2026-03-02&page=offer&by=day").get_json()
    assert (body["from"], body["to"], body["page"], body["by"]) == (
        "2026-03-02", "2026-03-02", "offer", "day")
    assert [row["group"] for row in body["rows"]] == ["2026-03-02"]
    with app.app_context():
        expected = metrics.report(start=datetime(2026, 3, 2), end=datetime(2026, 3, 3))
        assert body["total"] == numbers_json(expected.total)
    later = api.get("/metrics?from=2026-03-03").get_json()["total"]
    assert (later["leads"], later["visitors"], later["revenue"]) == (0, 0, "0.00")


def test_rates_without_a_denominator_are_null(api):
    total = api.get("/metrics").get_json()["total"]
    assert total["conversion_rate"] is None and total["earnings_per_visitor"] is None


@pytest.mark.parametrize("query, name", [
    ("from=03/02/2026", "from"),
    ("from=2026-03-05&to=2026-03-01", "from"),
    ("by=week", "by"),
    ("page=nowhere", "page"),
    ("page=offer&by=broadcast", "page"),
])
def test_bad_parameters_are_named_in_a_400(api, query, name):
    response = api.get(f"/metrics?{query}")
    assert response.status_code == 400
    assert list(error_of(response)["fields"]) == [name]


def test_by_broadcast_gives_the_broadcasts_started_in_the_period_with_their_numbers(app, api):
    ann, bob = (add_lead(app, email=f"{name}@example.com", sequence=None)
                for name in ("ann", "bob"))
    march, april = datetime(2026, 3, 2, 9), datetime(2026, 4, 1, 9)
    spring = add_broadcast(app, "spring-sale", started_at=march)
    add_broadcast(app, "april-news", state="sending", started_at=april)
    add_broadcast(app, "later", state="scheduled")
    to_ann = add_delivery(app, ann, broadcast_id=spring)
    add_delivery(app, bob, broadcast_id=spring, status="failed")
    add_event(app, ann, "open", march, delivery_id=to_ann)
    add_event(app, ann, "click", march, delivery_id=to_ann)
    add_upgrade(app, ann, "19.90", march + timedelta(hours=1))
    body = api.get("/metrics?by=broadcast").get_json()
    assert body["by"] == "broadcast"
    assert [row["group"] for row in body["rows"]] == ["april-news", "spring-sale"]
    assert body["rows"][1] == {
        "group": "spring-sale", "state": "sent", "started_at": "2026-03-02T09:00:00Z",
        "recipients": 2, "delivered": 1, "opens": 1, "clicks": 1, "unsubscribes": 0,
        "bounces": 0, "complaints": 0, "upgrades": 1, "open_rate": 1.0, "click_rate": 1.0,
        "bounce_rate": 0.0, "complaint_rate": 0.0, "revenue": "19.90"}
    march_only = api.get("/metrics?by=broadcast&from=2026-03-01&to=2026-03-31").get_json()
    assert [row["group"] for row in march_only["rows"]] == ["spring-sale"]
    assert march_only["total"]["upgrade_revenue"] == "19.90"


def test_numbers_give_bounces_complaints_and_their_rates(app, api, activity):
    lead = add_lead(app, email="bounced@example.com", sequence=None, utm_source="ads")
    add_delivery(app, lead, sent_at=datetime(2026, 3, 2, 9))
    add_event(app, lead, "bounce", datetime(2026, 3, 2, 10))
    add_event(app, lead, "complaint", datetime(2026, 3, 2, 11))
    total = api.get("/metrics").get_json()["total"]
    assert (total["bounces"], total["complaints"]) == (1, 1)
    assert total["bounce_rate"] == total["complaint_rate"] == 1 / total["delivered"]
    rows = {row["group"]: row for row in api.get("/metrics?by=source").get_json()["rows"]}
    assert (rows["ads"]["bounces"], rows["store"]["bounces"]) == (1, 0)
    assert rows["ads"]["bounce_rate"] == 1 / rows["ads"]["delivered"]
