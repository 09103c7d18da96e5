"""GET /api/v1/leads (filters, cursor pagination) and GET /api/v1/leads/<public_ref>."""

from datetime import datetime, timedelta

import pytest

from capture.leads import optin as leads
from capture.db import db
from capture.models import Lead, Page
from tests.api.conftest import error_of
from tests.conftest import lead_of

START = datetime(2026, 3, 1, 12, 0)


@pytest.fixture
def stored(app, make_page):
    """25 leads on two pages, one a minute from START: every third from "ads",
    every fifth rejected; lead 7 referred by lead 1."""
    make_page(slug="offer")
    make_page(slug="other")
    with app.app_context():
        pages = {page.slug: page.id for page in db.session.query(Page)}
        for number in range(25):
            db.session.add(Lead(
                email=f"lead{number:02d}@example.com", name=f"Person {number}",
                public_ref=f"ref{number:02d}",
                page_id=pages["offer" if number % 2 == 0 else "other"],
                utm_source="ads" if number % 3 == 0 else None,
                review="rejected" if number % 5 == 0 else "approved",
                created_at=START + timedelta(minutes=number),
                consent_at=START + timedelta(minutes=number)))
        db.session.commit()
        first = db.session.query(Lead).filter_by(public_ref="ref01").one()
        db.session.query(Lead).filter_by(public_ref="ref07").one().referred_by_id = first.id
        db.session.commit()


def walk(api, query: str, limit: int, cursor: str | None = None) -> list[list[str]]:
    """Every page of a listing, following next_cursor: the emails of each page."""
    pages = []
    while True:
        url = f"/leads?limit={limit}{query}" + (f"&cursor={cursor}" if cursor else "")
        response = api.get(url)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        pages.append([lead["email"] for lead in body["leads"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "the cursor does not move"


def test_pagination_walks_every_matching_lead_exactly_once(api, stored):
    pages = walk(api, "&page=offer", limit=4)
    emails = [email for page in pages for email in page]
    expected = [f"lead{n:02d}@example.com" for n in range(24, -1, -1) if n % 2 == 0]
    assert emails == expected  # all 13, newest first, none twice
    assert [len(page) for page in pages] == [4, 4, 4, 1]


def test_last_page_that_is_full_has_no_next_cursor(api, stored):
    pages = walk(api, "&source=ads", limit=9)
    assert [len(page) for page in pages] == [9]


def test_leads_created_during_a_walk_do_not_shift_it(app, api, stored):
    body = api.get("/leads?limit=10").get_json()
    with app.app_context():
        page = db.session.query(Page).filter_by(slug="offer").one()
        leads.submit_optin(page, leads.OptIn(email="new@example.com"))
    rest = walk(api, "", limit=10, cursor=body["next_cursor"])
    emails = [lead["email"] for lead in body["leads"]] + [e for page in rest for e in page]
    assert len(emails) == len(set(emails)) == 25
    assert "new@example.com" not in emails


@pytest.mark.parametrize("query, numbers", [
    ("review=rejected", [20, 15, 10, 5, 0]),
    ("source=ads&review=approved", [24, 21, 18, 12, 9, 6, 3]),
    ("source=(none)&page=other", [23, 19, 17, 13, 11, 7, 5, 1]),
    ("q=person 1", [19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 1]),
    ("created_after=2026-03-01T12:20:00Z", [24, 23, 22, 21, 20]),
    ("created_before=2026-03-01T13:03:00%2B01:00", [2, 1, 0]),
])
def test_filters_choose_the_leads(api, stored, query, numbers):
    body = api.get(f"/leads?{query}").get_json()
    assert [lead["email"] for lead in body["leads"]] == [
        f"lead{n:02d}@example.com" for n in numbers]


def test_listed_lead_has_its_page_and_referrer(api, stored):
    [lead] = api.get("/leads?q=lead07").get_json()["leads"]
    assert lead["page"] == "other"
    assert lead["referred_by"] == "ref01"
    assert lead["public_ref"] == "ref07"
    assert lead["created_at"] == "2026-03-01T12:07:00Z"


@pytest.mark.parametrize("query, name", [
    ("review=maybe", "review"),
    ("limit=0", "limit"),
    ("limit=201", "limit"),
    ("limit=ten", "limit"),
    ("created_after=yesterday", "created_after"),
    ("cursor=forged", "cursor"),
    ("page=nowhere", "page"),
    ("colour=red", "colour"),
])
def test_bad_query_parameters_are_named_in_a_400(api, stored, query, name):
    response = api.get(f"/leads?{query}")
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_parameters"
    assert list(error["fields"]) == [name]


def test_one_lead_is_read_by_its_public_ref(app, api, make_page):
    make_page(slug="offer")
    created = api.post("/leads", {"page": "offer", "email": "ann@example.com",
                                  "utm_source": "store"}).get_json()["lead"]
    response = api.get(f"/leads/{created['public_ref']}")
    assert response.status_code == 200
    body = response.get_json()
    assert body["lead"] == created
    assert "events" not in body


def test_events_come_with_the_lead_when_asked(api, make_page):
    make_page(slug="offer")
    ref = api.post("/leads", {"page": "offer", "email": "ann@example.com",
                              "utm_source": "store"}).get_json()["lead"]["public_ref"]
    events = api.get(f"/leads/{ref}?include=events").get_json()["events"]
    kinds = [event["kind"] for event in events]
    assert "optin" in kinds and "approve" in kinds
    assert events[-1]["kind"] == "optin"
    assert events[-1]["data"] == {"utm_source": "store"}


def test_row_id_is_not_a_public_ref(app, api, stored):
    lead_id = lead_of(app, "lead03@example.com").id
    response = api.get(f"/leads/{lead_id}")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"
