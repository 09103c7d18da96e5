"""Buyers decide approval: POST /api/v1/leads/<ref>/review and the signed
/postback/review take the same decision, idempotently; an approved lead rejected
later is a return (its payout goes)."""

import json
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from capture.db import db
from capture.leads.upgrades import postback_signature
from capture.models import Event, Lead, Optin
from capture.numbers import metrics
from tests.api.conftest import error_of
from tests.conftest import create_page, optin
from tests.factories import add_webhook, deliver


@pytest.fixture
def ann(app):
    """Ann, pending on a manual-review page paying 4.00 per approved lead."""
    create_page(app, slug="offer", double_opt_in=False, review="manual", payout="4.00")
    optin(app.test_client(), "offer", email="ann@example.com")
    with app.app_context():
        return db.session.scalar(select(Lead.public_ref))


def decisions_of(app):
    """The review events on Ann's timeline: (kind, by, reason)."""
    with app.app_context():
        return [(e.kind, e.data.get("by"), e.data.get("reason")) for e in db.session.scalars(
            select(Event).where(Event.kind.in_(("approve", "reject", "return")))
            .order_by(Event.id))]


def payout(app):
    with app.app_context():
        return metrics.report().total.payout


def test_the_api_approves_and_a_replay_changes_nothing(app, api, ann):
    first = api.post(f"/leads/{ann}/review", {"review": "approved"})
    again = api.post(f"/leads/{ann}/review", {"review": "approved"})
    assert first.status_code == again.status_code == 200
    assert (first.get_json()["changed"], again.get_json()["changed"]) == (True, False)
    assert decisions_of(app) == [("approve", "api", "")]
    assert payout(app) == Decimal("4.00")


def test_rejecting_an_approved_lead_is_a_return_that_removes_its_payout(app, api, ann):
    api.post(f"/leads/{ann}/review", {"review": "approved"})
    response = api.post(f"/leads/{ann}/review", {"review": "rejected", "reason": "bad phone"})
    assert response.status_code == 200
    assert response.get_json()["returned"] is True
    assert decisions_of(app)[-1] == ("return", "api", "bad phone")
    assert payout(app) == Decimal("0.00")
    with app.app_context():
        assert db.session.scalar(select(Lead.review)) == "rejected"


def test_a_return_sends_lead_rejected_and_lead_returned(make_app, receiver):
    app = make_app(WEBHOOK_ALLOW_PRIVATE=True, WEBHOOK_TIMEOUT_SECONDS=10)
    create_page(app, slug="offer", double_opt_in=False, payout="4.00")
    add_webhook(app, receiver.url, events=["lead.rejected", "lead.returned"])
    optin(app.test_client(), "offer", email="ann@example.com")
    with app.app_context():
        from capture.leads import decisions

        ref = db.session.scalar(select(Lead.public_ref))
        decisions.decide(ref, "rejected", "fraud", by="api")
    deliver(app)
    assert receiver.events() == ["lead.rejected", "lead.returned"]
    assert json.loads(receiver.requests[1]["body"])["lead"]["review_reason"] == "fraud"


@pytest.mark.parametrize("body, field", [
    ({"review": "maybe"}, "review"),
    ({}, "review"),
    ({"review": "rejected"}, "reason"),
    ({"review": "rejected", "reason": "   "}, "reason"),
    ({"review": 1}, "review"),
])
def test_a_bad_decision_is_refused_and_changes_nothing(app, api, ann, body, field):
    response = api.post(f"/leads/{ann}/review", body)
    assert response.status_code == 422
    assert field in error_of(response)["fields"]
    assert decisions_of(app) == []


def test_an_unknown_lead_is_404(api, ann):
    response = api.post("/leads/nobody/review", {"review": "approved"})
    assert response.status_code == 404
    assert error_of(response)["message"] == "Unknown lead."


def test_naming_a_page_reviews_the_persons_later_optin_there(app, api, ann):
    create_page(app, slug="prices", double_opt_in=False, review="manual", payout="5.00")
    optin(app.test_client(), "prices", email="ann@example.com")
    response = api.post(f"/leads/{ann}/review", {"review": "approved", "page": "prices"})
    assert response.status_code == 200
    assert response.get_json()["page"] == "prices"
    with app.app_context():
        assert db.session.scalar(select(Lead.review)) == "pending"
        assert db.session.scalar(select(Optin.review).where(Optin.first.is_(False))) == "approved"
    assert payout(app) == Decimal("5.00")
    missing = api.post(f"/leads/{ann}/review", {"review": "approved", "page": "webinar"})
    assert missing.status_code == 404


# --- the signed postback ---------------------------------------------------------------

def postback(app, method="get", sign=True, **params):
    values = {key: value for key, value in params.items() if value is not None}
    if sign:
        values["sig"] = postback_signature(values, app.config["POSTBACK_SECRET"])
    client = app.test_client(use_cookies=False)
    if method == "get":
        return client.get("/postback/review?" + urlencode(values))
    return client.post("/postback/review", data=values)


def test_a_signed_postback_approves_then_returns(app, ann):
    approved = postback(app, lead=ann, review="approved")
    assert approved.status_code == 200 and approved.get_json()["changed"] is True
    replay = postback(app, method="post", lead=ann, review="approved")
    assert replay.get_json() == {"ok": True, "changed": False, "returned": False}
    returned = postback(app, lead=ann, review="rejected", reason="duplicate in our CRM")
    assert returned.get_json()["returned"] is True
    assert decisions_of(app) == [("approve", "postback", ""),
                                 ("return", "postback", "duplicate in our CRM")]
    assert payout(app) == Decimal("0.00")


def test_a_postback_with_a_bad_signature_is_403_and_changes_nothing(app, ann):
    values = {"lead": ann, "review": "approved", "sig": "0" * 64}
    response = app.test_client().get("/postback/review?" + urlencode(values))
    assert response.status_code == 403
    tampered = {"lead": ann, "review": "approved"}
    tampered["sig"] = postback_signature(tampered, app.config["POSTBACK_SECRET"])
    tampered["review"] = "rejected"
    tampered["reason"] = "x"
    assert app.test_client().get("/postback/review?" + urlencode(tampered)).status_code == 403
    assert decisions_of(app) == []


def test_a_postback_for_an_unknown_lead_is_404(app, ann):
    assert postback(app, lead="nobody", review="approved").status_code == 404


def test_a_postback_with_an_unknown_review_is_400(app, ann):
    response = postback(app, lead=ann, review="maybe")
    assert response.status_code == 400
    assert response.get_json()["error"] == "review must be approved or rejected"


def test_a_postback_missing_a_parameter_is_400(app, ann):
    response = postback(app, sign=False, lead=ann, review="approved")
    assert response.status_code == 400
    assert response.get_json()["error"] == "missing: sig"


# --- rejection reasons per page and source -----------------------------------------

def test_rejection_reasons_by_page_and_source_in_the_api_and_the_dashboard(app, api, ann):
    from tests.conftest import owner_client

    create_page(app, slug="strict", double_opt_in=False,
                rules={"block_domains": ["spam.example"]})
    optin(app.test_client(), "strict", query="?utm_source=ads", email="x@spam.example")
    optin(app.test_client(), "strict", query="?utm_source=ads", email="y@spam.example")
    api.post(f"/leads/{ann}/review", {"review": "approved"})
    api.post(f"/leads/{ann}/review", {"review": "rejected", "reason": "bad phone"})
    rows = api.get("/metrics?by=reason").get_json()["rows"]
    assert rows == [
        {"group": "domain spam.example is blocked", "rejected": 2, "returned": 0,
         "pages": {"strict": 2}, "sources": {"ads": 2}},
        {"group": "bad phone", "rejected": 1, "returned": 1,
         "pages": {"offer": 1}, "sources": {"(none)": 1}}]
    only_offer = api.get("/metrics?by=reason&page=offer").get_json()["rows"]
    assert [row["group"] for row in only_offer] == ["bad phone"]
    page = owner_client(app).get("/admin/sources").get_data(as_text=True)
    assert "Why leads were rejected" in page
    assert "domain spam.example is blocked" in page and "strict (2)" in page


def test_the_lead_page_shows_who_returned_the_lead(app, api, ann):
    from tests.conftest import owner_client

    api.post(f"/leads/{ann}/review", {"review": "approved"})
    api.post(f"/leads/{ann}/review", {"review": "rejected", "reason": "bad phone"})
    with app.app_context():
        lead_id = db.session.scalar(select(Lead.id))
    page = owner_client(app).get(f"/admin/leads/{lead_id}").get_data(as_text=True)
    assert "Approved by api" in page
    assert ("Returned by api (approved before: its payout is taken back): "
            "<em>bad phone</em>") in page
