"""POST /api/v1/upgrades: record a purchase once per txn; a replay changes nothing."""

import pytest

from capture.models import Upgrade
from tests.api.conftest import error_of
from tests.conftest import count


@pytest.fixture
def lead_ref(api, make_page) -> str:
    make_page(slug="offer")
    body = api.post("/leads", {"page": "offer", "email": "ann@example.com"}).get_json()
    return body["lead"]["public_ref"]


def test_upgrade_is_recorded_with_201(app, api, lead_ref):
    response = api.post("/upgrades", {"lead": lead_ref, "amount": "19.90",
                                      "currency": "eur", "txn": "order-1"})
    assert response.status_code == 201
    body = response.get_json()
    assert body["replay"] is False
    assert body["upgrade"]["amount"] == "19.90"
    assert body["upgrade"]["currency"] == "EUR"
    assert body["upgrade"]["lead"] == lead_ref
    assert body["upgrade"]["source"] == "api"
    assert count(app, Upgrade) == 1


def test_replayed_txn_answers_200_and_changes_nothing(app, api, lead_ref):
    first = api.post("/upgrades", {"lead": lead_ref, "amount": "19.90", "currency": "EUR",
                                   "txn": "order-1"}).get_json()["upgrade"]
    response = api.post("/upgrades", {"lead": lead_ref, "amount": 25, "currency": "USD",
                                      "txn": "order-1"})
    assert response.status_code == 200
    assert response.get_json() == {"upgrade": first, "replay": True}
    assert count(app, Upgrade) == 1


def test_amount_may_be_a_json_number(api, lead_ref):
    response = api.post("/upgrades", {"lead": lead_ref, "amount": 7.5, "currency": "USD",
                                      "txn": "order-2"})
    assert response.get_json()["upgrade"]["amount"] == "7.50"


def test_every_bad_value_is_named(app, api, lead_ref):
    response = api.post("/upgrades", {"lead": "nobody", "amount": "19.999",
                                      "currency": "EURO", "txn": " "})
    assert response.status_code == 422
    fields = error_of(response)["fields"]
    assert fields["lead"] == "no lead has this public ref"
    assert "19.999" in fields["amount"]
    assert "ISO 4217" in fields["currency"]
    assert fields["txn"].startswith("required")
    assert count(app, Upgrade) == 0


def test_missing_values_are_required(api, lead_ref):
    fields = error_of(api.post("/upgrades", {}))["fields"]
    assert set(fields) == {"lead", "amount", "currency", "txn"}
    assert all(message.startswith("required") for message in fields.values())


@pytest.mark.parametrize("amount", [0, "-5", True, "1e3", {"value": 5}])
def test_amount_must_be_positive_with_two_decimals_at_most(api, lead_ref, amount):
    response = api.post("/upgrades", {"lead": lead_ref, "amount": amount, "currency": "USD",
                                      "txn": "t"})
    assert response.status_code == 422
    assert list(error_of(response)["fields"]) == ["amount"]
