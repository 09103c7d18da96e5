"""A lead's opt-ins in the API: `optins` in every lead it answers with (loaded for a
page of leads in one query), and POST /api/v1/leads/<ref>/optins/<page>/review for a
later opt-in."""

import pytest
from sqlalchemy import event

from capture.db import db
from tests.api.conftest import error_of
from tests.conftest import create_page


@pytest.fixture
def pages(app):
    """Two pages: "checklist" (approves by itself) and "prices" (the owner reviews)."""
    create_page(app, slug="checklist", double_opt_in=False, payout="2.00",
                consent="Send me the checklist")
    create_page(app, slug="prices", double_opt_in=False, payout="5.00", review="manual",
                consent="Send me the price list")


def join(api, slug: str, email: str = "ann@example.com", **values) -> dict:
    response = api.post("/leads", {"page": slug, "email": email, "consent": True, **values})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


@pytest.fixture
def ann(api, pages) -> str:
    """Ann opted in on the checklist, then (pending) on the prices page: her ref."""
    join(api, "checklist", utm_source="ads", ip="203.0.113.7")
    return join(api, "prices", utm_source="newsletter", ip="198.51.100.9")["lead"]["public_ref"]


def review(api, ref: str, slug: str, **body):
    return api.post(f"/leads/{ref}/optins/{slug}/review", json=body)


def test_every_lead_has_its_optins_the_first_one_first(api, pages):
    created = join(api, "checklist", utm_source="ads", ip="203.0.113.7")
    assert [o["page"] for o in created["lead"]["optins"]] == ["checklist"]
    again = join(api, "prices", utm_source="newsletter", ip="198.51.100.9")
    assert again["new_person"] is False
    first, later = again["lead"]["optins"]
    assert (first["page"], first["first"], first["review"], first["payout"]) == (
        "checklist", True, "approved", "2.00")
    assert first["consent"]["ip"] == "203.0.113.7"
    assert first["attribution"]["utm_source"] == "ads"
    assert (later["page"], later["first"], later["review"], later["payout"]) == (
        "prices", False, "pending", "0.00")
    assert later["consent"]["text"] == "Send me the price list"
    assert later["consent"]["ip"] == "198.51.100.9"
    assert later["attribution"]["utm_source"] == "newsletter"
    ref = again["lead"]["public_ref"]
    assert api.get(f"/leads/{ref}").get_json()["lead"]["optins"] == [first, later]
    [listed] = api.get("/leads").get_json()["leads"]
    assert listed["optins"] == [first, later]


def test_a_page_of_leads_reads_their_optins_in_one_query(app, api, pages):
    for number in range(12):
        join(api, "checklist", f"lead{number}@example.com")
        join(api, "prices", f"lead{number}@example.com")
    statements: list[str] = []

    def remember(conn, cursor, statement, *args):
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", remember)
    try:
        counts = []
        for limit in (2, 12):
            statements.clear()
            leads = api.get(f"/leads?limit={limit}").get_json()["leads"]
            assert [len(lead["optins"]) for lead in leads] == [2] * limit
            counts.append(sum("FROM optins" in s for s in statements))
    finally:
        event.remove(engine, "before_cursor_execute", remember)
    assert counts == [1, 1]


def test_a_later_optin_is_approved_then_rejected(app, api, ann):
    response = review(api, ann, "prices", decision="approve")
    assert response.status_code == 200
    body = response.get_json()
    assert body["changed"] is True
    later = body["lead"]["optins"][1]
    assert (later["page"], later["review"], later["payout"]) == ("prices", "approved", "5.00")
    # The same decision again changes nothing.
    again = review(api, ann, "prices", decision="approve", reason=None)
    assert again.status_code == 200 and again.get_json()["changed"] is False
    rejected = review(api, ann, "prices", decision="reject", reason=" buyer:  no ")
    later = rejected.get_json()["lead"]["optins"][1]
    assert (later["review"], later["review_reason"], later["payout"]) == (
        "rejected", "buyer: no", "0.00")
    # The lead's own review (its first opt-in) is untouched.
    assert rejected.get_json()["lead"]["review"] == "approved"
    events = api.get(f"/leads/{ann}?include=events").get_json()["events"]
    assert [(e["kind"], e["data"]) for e in events if e["kind"] in ("approve", "reject")
            and e["data"].get("by") == "api"] == [
        ("reject", {"by": "api", "reason": "buyer: no", "page": "prices"}),
        ("approve", {"by": "api", "reason": "", "page": "prices"})]


@pytest.mark.parametrize("body, field, message", [
    ({"decision": "maybe"}, "decision", "unknown decision 'maybe'"),
    ({"decision": "reject"}, "reason", "Give a reason for rejecting."),
    ({"decision": "reject", "reason": "  "}, "reason", "Give a reason for rejecting."),
    ({}, "decision", "Some values are not valid."),
    ({"decision": ["approve"]}, "decision", "Some values are not valid."),
    ({"decision": "reject", "reason": 3}, "reason", "Some values are not valid."),
    ({"decision": "approve", "why": "x"}, "why",
     "The body has properties this operation does not know."),
])
def test_a_bad_decision_is_a_422_naming_it(api, ann, body, field, message):
    response = review(api, ann, "prices", **body)
    assert response.status_code == 422
    error = error_of(response)
    assert (error["code"], list(error["fields"]), error["message"]) == (
        "validation_failed", [field], message)
    assert api.get(f"/leads/{ann}").get_json()["lead"]["optins"][1]["review"] == "pending"


def test_the_first_optin_is_a_422_with_the_reason(api, ann):
    response = review(api, ann, "checklist", decision="reject", reason="no")
    assert response.status_code == 422
    error = error_of(response)
    assert error["message"] == "This is the lead's first opt-in: review the lead itself."
    assert error["fields"] == {}


@pytest.mark.parametrize("ref, slug", [
    ("nobody", "prices"),        # no such lead
    (None, "nowhere"),           # no such page
    (None, "other"),             # a page the lead has no opt-in on
])
def test_no_such_lead_or_optin_is_a_404(app, api, ann, ref, slug):
    create_page(app, slug="other", double_opt_in=False)
    response = review(api, ref or ann, slug, decision="approve")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_reviewing_needs_a_token(app, ann):
    response = app.test_client().post(f"/api/v1/leads/{ann}/optins/prices/review",
                                      json={"decision": "approve"})
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"
