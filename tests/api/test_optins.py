"""A lead's opt-ins in the API: `optins` in every lead it answers with (loaded for a
page of leads in one query), and POST /api/v1/leads/<ref>/optins/<page>/review for a
later opt-in."""

import pytest
from sqlalchemy import event

from capture.db import db
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
