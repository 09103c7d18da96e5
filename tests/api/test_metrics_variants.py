"""GET /api/v1/metrics?by=variant&page=SLUG: the numbers of a page test per variant
(capture.numbers.variants), as JSON."""

import json

import pytest

from capture.api import OPENAPI_FILE
from capture.api.shapes import variant_json
from capture.db import db
from capture.models import Page
from capture.numbers import variants as page_tests
from tests.api.conftest import error_of
from tests.test_page_tests import TEST, client_of, visitor_of
from tests.conftest import optin


@pytest.fixture
def tested(app, make_page):
    """A page with variant b: a visitor of each variant, one opt-in on b."""
    make_page(**TEST)
    client_of(app, visitor_of(app, "a")).get("/p/offer")
    optin(client_of(app, visitor_of(app, "b")), "offer", email="bo@example.com",
          company="Acme")


def test_one_row_per_variant_with_the_probability_and_the_warnings(app, api, tested):
    response = api.get("/metrics?by=variant&page=offer")
    assert response.status_code == 200
    body = response.get_json()
    assert (body["by"], body["page"]) == ("variant", "offer")
    rows = {row["group"]: row for row in body["rows"]}
    assert list(rows) == ["a", "b"]
    assert rows["b"]["visitors"] == 1 and rows["b"]["leads"] == 1
    assert (rows["b"]["state"], rows["b"]["share"]) == ("live", 0.5)
    assert rows["b"]["payout"] == "2.00" and rows["b"]["earnings_per_visitor"] == "2.0000"
    assert rows["a"]["probability_best"] + rows["b"]["probability_best"] == pytest.approx(1)
    assert rows["a"]["few_leads"] is True
    assert len(body["warnings"]) == 2
    assert body["total"]["leads"] == 1
    with app.app_context():
        page = db.session.query(Page).filter_by(slug="offer").one()
        assert body["rows"] == [variant_json(row)
                                for row in page_tests.test_report(page).rows]
    # Every row has exactly the fields the OpenAPI document's VariantRow names.
    schemas = json.loads(OPENAPI_FILE.read_text())["components"]["schemas"]
    assert all(set(row) == set(schemas["VariantRow"]["required"]) for row in body["rows"])
    assert "warnings" in schemas["Metrics"]["properties"]


def test_by_variant_needs_a_page(api, tested):
    response = api.get("/metrics?by=variant")
    assert response.status_code == 400
    assert error_of(response)["fields"] == {
        "page": "required with by=variant: the page whose test to show"}
