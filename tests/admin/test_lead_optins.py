"""Dashboard: a person's opt-ins on their lead page (one row per page, the later ones
reviewed there with Approve and Reject), the leads table's page filter over every
opt-in and the export's `pages` column."""

import csv
import io
import re
from html import unescape
from html.parser import HTMLParser

from sqlalchemy import select

from capture.db import db
from capture.models import Lead, Optin, Page
from tests.conftest import create_page, csrf_of, optin, owner_client


class OptinTable(HTMLParser):
    """The rows of the lead page's opt-ins table: each row's cell texts (whitespace
    collapsed) and the forms in it (their action and hidden `decision`)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict] = []
        self._in_table = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and "optins" in (attrs.get("class") or "").split():
            self._in_table = True
        elif self._in_table and tag == "tr" and "data-optin" in attrs:
            self.rows.append({"cells": [], "forms": []})
        elif self._in_table and self.rows and tag == "td":
            self._cell = []
        elif self._in_table and self.rows and tag == "form":
            self.rows[-1]["forms"].append({"action": attrs["action"]})
        elif self._in_table and self.rows and tag == "input" and attrs.get("name") == "decision":
            self.rows[-1]["forms"][-1]["decision"] = attrs["value"]

    def handle_endtag(self, tag):
        if tag == "table" and self._in_table:
            self._in_table = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1]["cells"].append(" ".join(" ".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def optin_rows(html: str) -> list[dict]:
    table = OptinTable()
    table.feed(html)
    return table.rows


def flashes(html: str) -> list[str]:
    """The flash messages a page shows, as their text."""
    return [unescape(text) for text in re.findall(r'class="flash[^"]*"[^>]*>([^<]*)<', html)]


def two_pages(app, prices=None):
    """A checklist page (approved at once) and a price-list page reviewed by hand,
    both with a consent text and a payout."""
    create_page(app, slug="checklist", double_opt_in=False, payout="2.00",
                consent="Send me the checklist")
    create_page(app, slug="prices", double_opt_in=False, payout="5.00", currency="EUR",
                consent="Send me the price list", review="manual", **(prices or {}))


def join(app, slug, email="ann@example.com", query=""):
    response = optin(app.test_client(), slug, query=query, email=email, consent="y")
    assert response.status_code == 303, response.status_code


def ids_of(app, email="ann@example.com") -> tuple[int, dict[str, int]]:
    """The lead's id and its opt-ins' ids by page slug."""
    with app.app_context():
        lead_id = db.session.scalar(select(Lead.id).where(Lead.email == email))
        optins = dict(db.session.execute(
            select(Page.slug, Optin.id).join(Page, Page.id == Optin.page_id)
            .where(Optin.lead_id == lead_id)).all())
        return lead_id, optins


def review_of(app, optin_id) -> tuple[str, str]:
    with app.app_context():
        optin_row = db.session.get(Optin, optin_id)
        return optin_row.review, optin_row.review_reason


def post_review(owner, lead_id, optin_id, **data):
    """Press a review button of the lead page (its CSRF token and all)."""
    token = csrf_of(owner, f"/admin/leads/{lead_id}")
    return owner.post(f"/admin/leads/{lead_id}/optins/{optin_id}/review",
                      data={"csrf_token": token, **data})


def ann_on_both_pages(app):
    two_pages(app)
    join(app, "checklist", query="?utm_source=ads&ref=alice")
    join(app, "prices")
    return ids_of(app)


def test_the_lead_page_lists_every_optin_with_its_source_consent_review_and_payout(
        app, clock):
    two_pages(app)
    join(app, "checklist", query="?utm_source=ads&ref=alice")
    clock.advance(days=1, minutes=5)
    join(app, "prices")
    lead_id, _ = ids_of(app)
    response = owner_client(app).get(f"/admin/leads/{lead_id}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "<h2>Opt-ins</h2>" in html
    first, later = optin_rows(html)
    assert first["cells"] == [
        "checklist (first)", "2026-03-02 10:00", "ads · ref alice",
        "Send me the checklist 2026-03-02 10:00", "approved", "2.00 USD",
        "first opt-in: review the lead above"]
    assert first["forms"] == []
    assert later["cells"][:6] == [
        "prices", "2026-03-03 10:05", "direct", "Send me the price list 2026-03-03 10:05",
        "pending", "—"]
    assert [form.get("decision") for form in later["forms"]] == ["approve", "reject"]


def test_approving_a_pending_later_optin_counts_its_payout(app):
    lead_id, optin_ids = ann_on_both_pages(app)
    owner = owner_client(app)
    response = post_review(owner, lead_id, optin_ids["prices"], decision="approve")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/admin/leads/{lead_id}#optins"
    html = owner.get(f"/admin/leads/{lead_id}").get_data(as_text=True)
    assert "The opt-in on prices is approved." in flashes(html)
    later = optin_rows(html)[1]
    assert later["cells"][4:6] == ["approved", "5.00 EUR"]
    assert [form.get("decision") for form in later["forms"]] == ["reject"]
    assert review_of(app, optin_ids["prices"]) == ("approved", "")


def test_rejecting_needs_a_reason_and_then_shows_it(app):
    lead_id, optin_ids = ann_on_both_pages(app)
    owner = owner_client(app)
    response = post_review(owner, lead_id, optin_ids["prices"], decision="reject", reason=" ")
    assert response.status_code == 302
    html = owner.get(f"/admin/leads/{lead_id}").get_data(as_text=True)
    assert "Give a reason for rejecting." in flashes(html)
    assert 'class="flash error"' in html
    assert optin_rows(html)[1]["cells"][4] == "pending"
    assert review_of(app, optin_ids["prices"]) == ("pending", "")

    post_review(owner, lead_id, optin_ids["prices"], decision="reject", reason="Competitor")
    html = owner.get(f"/admin/leads/{lead_id}").get_data(as_text=True)
    assert "The opt-in on prices is rejected." in flashes(html)
    assert optin_rows(html)[1]["cells"][4:6] == ["rejected Competitor", "—"]


def test_the_first_optin_is_not_reviewed_here(app):
    lead_id, optin_ids = ann_on_both_pages(app)
    owner = owner_client(app)
    response = post_review(owner, lead_id, optin_ids["checklist"], decision="reject",
                           reason="Competitor")
    assert response.status_code == 302
    html = owner.get(f"/admin/leads/{lead_id}").get_data(as_text=True)
    assert "This is the lead's first opt-in: review the lead itself." in flashes(html)
    assert optin_rows(html)[0]["cells"][4] == "approved"
    assert review_of(app, optin_ids["checklist"]) == ("approved", "")


def test_an_optin_of_another_lead_is_not_found(app):
    lead_id, optin_ids = ann_on_both_pages(app)
    join(app, "checklist", email="bob@example.com")
    bob_id, _ = ids_of(app, "bob@example.com")
    owner = owner_client(app)
    response = post_review(owner, bob_id, optin_ids["prices"], decision="approve")
    assert response.status_code == 404
    assert post_review(owner, lead_id, 999, decision="approve").status_code == 404
    assert review_of(app, optin_ids["prices"]) == ("pending", "")


def test_review_without_the_csrf_token_is_refused(app):
    lead_id, optin_ids = ann_on_both_pages(app)
    response = owner_client(app).post(
        f"/admin/leads/{lead_id}/optins/{optin_ids['prices']}/review",
        data={"decision": "approve"})
    assert response.status_code == 400
    assert review_of(app, optin_ids["prices"]) == ("pending", "")


def test_an_erased_persons_optins_have_no_buttons(app):
    lead_id, optin_ids = ann_on_both_pages(app)
    owner = owner_client(app)
    token = csrf_of(owner, f"/admin/leads/{lead_id}/erase")
    assert owner.post(f"/admin/leads/{lead_id}/erase",
                      data={"csrf_token": token}).status_code == 302
    html = owner.get(f"/admin/leads/{lead_id}").get_data(as_text=True)
    rows = optin_rows(html)
    assert [row["cells"][0] for row in rows] == ["checklist (first)", "prices"]
    assert all(row["forms"] == [] for row in rows)
    assert "review the lead above" not in html

    post_review(owner, lead_id, optin_ids["prices"], decision="approve")
    html = owner.get(f"/admin/leads/{lead_id}").get_data(as_text=True)
    assert f"Lead #{lead_id} is erased: its opt-ins are not reviewed any more." in \
        flashes(html)
    assert review_of(app, optin_ids["prices"]) == ("pending", "")


def table_emails(owner, query="") -> list[str]:
    response = owner.get(f"/admin/leads{query}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    return [unescape(email) for email in
            re.findall(r'<td class="email"><a href="/admin/leads/\d+">([^<]*)</a>', html)]


def test_filtering_by_a_page_lists_everyone_who_opted_in_on_it(app):
    ann_on_both_pages(app)
    join(app, "prices", email="bob@example.com")
    join(app, "checklist", email="cy@example.com")
    owner = owner_client(app)
    assert table_emails(owner, "?page=prices") == ["bob@example.com", "ann@example.com"]
    assert table_emails(owner, "?page=checklist") == ["cy@example.com", "ann@example.com"]
    html = owner.get("/admin/leads?page=prices").get_data(as_text=True)
    assert "2 leads match" in " ".join(html.split())


def export_rows(owner, query=""):
    response = owner.get(f"/admin/leads/export.csv{query}")
    assert response.status_code == 200
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def test_the_export_names_every_page_in_optin_order_and_filters_alike(app):
    ann_on_both_pages(app)
    join(app, "prices", email="bob@example.com")
    join(app, "checklist", email="cy@example.com")
    owner = owner_client(app)
    assert {row["email"]: (row["page"], row["pages"]) for row in export_rows(owner)} == {
        "ann@example.com": ("checklist", "checklist;prices"),
        "bob@example.com": ("prices", "prices"),
        "cy@example.com": ("checklist", "checklist"),
    }
    assert [row["email"] for row in export_rows(owner, "?page=prices")] == [
        "bob@example.com", "ann@example.com"]
