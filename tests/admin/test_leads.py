"""Dashboard leads: the table (search, filters, sorting, pagination, bulk review, CSV
export, delete) and one lead's page (fields, attribution, consent, history, actions)."""

import csv
import io
import re
import secrets
from datetime import datetime, timedelta
from decimal import Decimal
from html import unescape

import pytest
from sqlalchemy import func, select, update

from capture.leads import lifecycle as leads_module
from capture import scheduler
from capture.db import db
from capture.models import (
    Delivery,
    Enrollment,
    Event,
    Lead,
    Page,
    Suppression,
    Upgrade,
)
from tests.conftest import csrf_of, optin

SCRIPT = "<script>alert(1)</script>"


# --- helpers ------------------------------------------------------------------------

def add_lead(app, email, page=None, **values) -> int:
    """Insert a lead (on the page with slug `page`) with the given columns."""
    with app.app_context():
        page_id = db.session.scalar(select(Page.id).where(Page.slug == page)) if page else None
        lead = Lead(email=email, public_ref=secrets.token_hex(8), page_id=page_id, **values)
        db.session.add(lead)
        db.session.commit()
        return lead.id


def lead_of(app, email):
    with app.app_context():
        lead = db.session.scalar(select(Lead).where(Lead.email == email))
        if lead is not None:
            db.session.expunge(lead)
        return lead


def rows_of(app, model, *conditions):
    with app.app_context():
        rows = db.session.scalars(select(model).where(*conditions).order_by(model.id)).all()
        for row in rows:
            db.session.expunge(row)
        return rows


def table_emails(client, query="") -> list[str]:
    """The emails of the table's rows, in the order shown."""
    response = client.get(f"/admin/leads{query}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    return [unescape(email) for email in
            re.findall(r'<td class="email"><a href="/admin/leads/\d+">([^<]*)</a>', html)]


def next_link(html: str, rel: str) -> str | None:
    match = re.search(rf'rel="{rel}" href="([^"]*)"', html)
    return unescape(match.group(1)) if match else None


def export_rows(client, query=""):
    response = client.get(f"/admin/leads/export.csv{query}")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def post(client, path, data=None, page=None):
    """POST a dashboard form with the CSRF token of `page` (default: the table)."""
    token = csrf_of(client, page or "/admin/leads")
    return client.post(path, data={"csrf_token": token, **(data or {})})


BASE = datetime(2026, 3, 1, 12, 0)


@pytest.fixture
def seeded(app, make_page):
    """Two pages and eight leads with known states, sources, names and dates."""
    make_page(slug="offer", sequence="welcome")
    make_page(slug="other")
    leads = [
        ("ann@example.com", "offer", "Ann Lee", "approved", "subscribed", "facebook", 0),
        ("bob@example.com", "offer", "Bob Stone", "pending", "unconfirmed", "facebook", 1),
        ("carol@sample.org", "other", "Carol Ann", "rejected", "unsubscribed", "google", 2),
        ("dave@example.com", "other", "Dave", "approved", "bounced", None, 3),
        ("erin@sample.org", "offer", "Erin", "pending", "subscribed", "google", 4),
        ("frank@example.com", None, "Frank", "approved", "subscribed", "newsletter", 5),
        ("gina@example.com", "offer", "Gina Annis", "rejected", "unconfirmed", None, 6),
        ("hal@example.com", "other", "", "pending", "unconfirmed", "facebook", 7),
    ]
    for email, page, name, review, subscription, source, day in leads:
        add_lead(app, email, page, name=name, review=review, subscription=subscription,
                 utm_source=source, created_at=BASE + timedelta(days=day))
    return [lead[0] for lead in leads]


# --- access and CSRF ------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/admin/leads", "/admin/leads/1", "/admin/leads/export.csv",
                                  "/admin/leads/1/erase"])
def test_anonymous_visitor_is_sent_to_login(client, app, path):
    add_lead(app, "ann@example.com")
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login")


@pytest.mark.parametrize("action", ["approve", "reject", "upgrade", "unsubscribe", "erase"])
def test_lead_action_without_csrf_token_is_refused(owner, app, action):
    lead_id = add_lead(app, "ann@example.com", review="pending", subscription="subscribed")
    response = owner.post(f"/admin/leads/{lead_id}/{action}",
                          data={"reason": "spam", "amount": "10", "currency": "USD"})
    assert response.status_code == 400
    lead = lead_of(app, "ann@example.com")
    assert lead is not None and lead.review == "pending" and lead.subscription == "subscribed"
    assert rows_of(app, Upgrade) == []


def test_bulk_action_without_csrf_token_is_refused(owner, app):
    lead_id = add_lead(app, "ann@example.com", review="pending")
    response = owner.post("/admin/leads/bulk", data={"lead": [str(lead_id)], "action": "approve"})
    assert response.status_code == 400
    assert lead_of(app, "ann@example.com").review == "pending"


def test_unknown_lead_is_not_found(owner):
    assert owner.get("/admin/leads/999").status_code == 404


# --- the table ------------------------------------------------------------------------

def test_empty_table_invites_the_owner_to_share_a_page(owner, make_page):
    make_page(slug="offer")
    html = owner.get("/admin/leads").get_data(as_text=True)
    assert "No leads yet" in html
    assert "http://127.0.0.1:5000/p/offer" in html
    assert "<table" not in html


def test_table_shows_each_lead_with_its_columns_newest_first(owner, seeded):
    response = owner.get("/admin/leads")
    html = response.get_data(as_text=True)
    assert table_emails(owner) == list(reversed(seeded))
    row = re.search(r'<tr>\s*<td class="pick">.*?bob@example\.com.*?</tr>', html, re.S).group(0)
    for text in ("Bob Stone", "offer", "facebook", 'badge pending', 'badge unconfirmed',
                 "2026-03-02 12:00"):
        assert text in row
    assert "8 leads" in html


def test_search_matches_email_or_name_whatever_the_case(owner, seeded):
    assert table_emails(owner, "?q=ANN&sort=email") == [
        "ann@example.com", "carol@sample.org", "gina@example.com"]
    assert table_emails(owner, "?q=sample.ORG&sort=email") == [
        "carol@sample.org", "erin@sample.org"]
    assert table_emails(owner, "?q=nobody") == []


def test_search_treats_like_wildcards_as_plain_text(owner, seeded, app):
    add_lead(app, "pct@example.com", name="100% real")
    assert table_emails(owner, "?q=%25") == ["pct@example.com"]
    assert table_emails(owner, "?q=_") == []


@pytest.mark.parametrize(("query", "expected"), [
    ("review=approved", ["ann", "dave", "frank"]),
    ("review=pending", ["bob", "erin", "hal"]),
    ("review=rejected", ["carol", "gina"]),
    ("subscription=subscribed", ["ann", "erin", "frank"]),
    ("subscription=unconfirmed", ["bob", "gina", "hal"]),
    ("subscription=unsubscribed", ["carol"]),
    ("subscription=bounced", ["dave"]),
    ("page=offer", ["ann", "bob", "erin", "gina"]),
    ("page=other", ["carol", "dave", "hal"]),
    ("page=missing", []),
    ("source=facebook", ["ann", "bob", "hal"]),
    ("source=google", ["carol", "erin"]),
    ("source=(none)", ["dave", "gina"]),
    ("from=2026-03-03", ["carol", "dave", "erin", "frank", "gina", "hal"]),
    ("to=2026-03-02", ["ann", "bob"]),
    ("from=2026-03-03&to=2026-03-05", ["carol", "dave", "erin"]),
    ("page=offer&review=pending&source=google", ["erin"]),
    ("q=example.com&subscription=unconfirmed&from=2026-03-02", ["bob", "gina", "hal"]),
])
def test_filters_show_exactly_the_matching_leads(owner, seeded, query, expected):
    emails = table_emails(owner, f"?{query}&sort=email")
    assert [email.split("@")[0] for email in emails] == expected


def test_a_nonsense_filter_is_named_and_ignored(owner, seeded):
    response = owner.get("/admin/leads?review=happy&from=yesterday")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Unknown review “happy”: ignored." in html
    assert "From “yesterday” is not a date like 2026-03-01: ignored." in html
    assert len(table_emails(owner, "?review=happy")) == 8


def test_no_match_has_its_own_empty_state(owner, seeded):
    html = owner.get("/admin/leads?q=zzz").get_data(as_text=True)
    assert "No leads match these filters." in html
    assert "No leads yet" not in html


@pytest.mark.parametrize(("query", "expected"), [
    ("", ["hal", "gina", "frank", "erin", "dave", "carol", "bob", "ann"]),
    ("?dir=asc", ["ann", "bob", "carol", "dave", "erin", "frank", "gina", "hal"]),
    ("?sort=email&dir=desc", ["hal", "gina", "frank", "erin", "dave", "carol", "bob", "ann"]),
    ("?sort=name", ["hal", "ann", "bob", "carol", "dave", "erin", "frank", "gina"]),
    ("?sort=password_hash", ["hal", "gina", "frank", "erin", "dave", "carol", "bob", "ann"]),
])
def test_sorting_uses_whitelisted_columns_only(owner, seeded, query, expected):
    assert [email.split("@")[0] for email in table_emails(owner, query)] == expected


def test_sort_headers_link_to_the_other_direction_keeping_filters(owner, seeded):
    html = unescape(owner.get("/admin/leads?sort=email&review=approved").get_data(as_text=True))
    assert 'href="/admin/leads?review=approved&sort=email&dir=desc"' in html
    assert 'href="/admin/leads?review=approved&sort=name"' in html


@pytest.mark.parametrize(("sort", "key", "descending"), [
    ("", "created", True),
    ("&dir=asc", "created", False),
    ("&sort=email", "email", False),
    ("&sort=name", "name", False),
    ("&sort=name&dir=desc", "name", True),
])
def test_pages_walk_every_matching_lead_once_forwards_and_back(
        owner, app, make_page, monkeypatch, sort, key, descending):
    app.config["LEADS_PER_PAGE"] = 3
    make_page(slug="offer")
    made = []
    for number in range(11):
        # Equal names and equal times on several rows: the id keeps the order total.
        values = {"email": f"lead{(number * 7) % 11:02}@example.com",
                  "name": f"Same {number % 2}", "created": BASE + timedelta(hours=number // 3)}
        made.append((values[key], number, values["email"]))
        add_lead(app, values["email"], "offer", name=values["name"],
                 created_at=values["created"], review="approved")
    add_lead(app, "other@example.com", "offer", review="pending")
    expected = [email for _, _, email in sorted(made, reverse=descending)]

    pages, html = [], owner.get(f"/admin/leads?review=approved{sort}").get_data(as_text=True)
    assert 'rel="prev"' not in html
    while True:
        pages.append(table_emails_of(html))
        link = next_link(html, "next")
        if link is None:
            break
        html = owner.get(link).get_data(as_text=True)
    assert [len(page) for page in pages] == [3, 3, 3, 2]
    assert [email for page in pages for email in page] == expected

    back = []
    while (link := next_link(html, "prev")) is not None:
        html = owner.get(link).get_data(as_text=True)
        back.append(table_emails_of(html))
    assert back == list(reversed(pages[:-1]))


def table_emails_of(html: str) -> list[str]:
    return [unescape(email) for email in
            re.findall(r'<td class="email"><a href="/admin/leads/\d+">([^<]*)</a>', html)]


def test_a_cursor_of_a_deleted_lead_starts_again_at_the_first_page(owner, seeded):
    assert table_emails(owner, "?after=999") == list(reversed(seeded))


# --- export ---------------------------------------------------------------------------

def test_export_holds_exactly_the_current_filter_in_table_order(owner, seeded):
    rows = export_rows(owner, "?review=approved&sort=email&dir=desc")
    assert [row["email"] for row in rows] == [
        "frank@example.com", "dave@example.com", "ann@example.com"]
    assert rows[0]["page"] == "" and rows[1]["page"] == "other"
    assert [row["email"] for row in export_rows(owner, "?q=sample&source=google")] == [
        "erin@sample.org", "carol@sample.org"]
    assert len(export_rows(owner)) == 8


def test_export_link_carries_the_filters(owner, seeded):
    html = unescape(owner.get("/admin/leads?page=offer&q=ann").get_data(as_text=True))
    assert 'href="/admin/leads/export.csv?q=ann&page=offer"' in html


def test_export_neutralizes_cells_that_would_run_as_formulas(owner, app, make_page):
    make_page(slug="offer")
    add_lead(app, "x@example.com", "offer", name="=cmd|' /C calc'!A0", utm_source="@SUM(1)")
    [row] = export_rows(owner)
    assert row["name"] == "'=cmd|' /C calc'!A0"
    assert row["utm_source"] == "'@SUM(1)"


# --- bulk review ----------------------------------------------------------------------

@pytest.fixture
def manual_page(make_page):
    """A manual-review page with a sequence and no double opt-in."""
    return make_page(slug="manual", review="manual", double_opt_in=False, sequence="welcome")


def test_bulk_approve_enrols_the_leads_in_their_sequence(owner, app, client, manual_page):
    for name in ("ann", "bob", "cat"):
        assert optin(client, "manual", email=f"{name}@example.com").status_code == 303
    assert rows_of(app, Enrollment) == []
    ids = [lead_of(app, f"{name}@example.com").id for name in ("ann", "bob")]
    back = "/admin/leads?review=pending"
    response = post(owner, "/admin/leads/bulk",
                    {"lead": [str(i) for i in ids], "action": "approve", "back": back})
    assert response.status_code == 302
    assert response.headers["Location"] == back
    assert "Approved 2 leads." in owner.get(back).get_data(as_text=True)
    enrolled = rows_of(app, Enrollment)
    assert sorted(e.lead_id for e in enrolled) == sorted(ids)
    assert {e.sequence for e in enrolled} == {"welcome"}
    assert lead_of(app, "cat@example.com").review == "pending"
    approvals = rows_of(app, Event, Event.kind == "approve")
    assert [(e.lead_id, e.data["by"]) for e in approvals] == [(i, "owner") for i in sorted(ids)]


def test_bulk_reject_needs_a_reason_and_stops_sequences(owner, app, make_page):
    make_page(slug="offer", sequence="welcome", double_opt_in=False)
    ids = [add_lead(app, f"{n}@example.com", "offer", review="pending",
                    subscription="subscribed") for n in ("ann", "bob")]
    post(owner, "/admin/leads/bulk", {"lead": [str(ids[0])], "action": "approve"})
    assert [e.state for e in rows_of(app, Enrollment)] == ["active"]

    response = post(owner, "/admin/leads/bulk", {"lead": [str(i) for i in ids],
                                                 "action": "reject", "reason": " "})
    assert "Give a reason for rejecting." in owner.get(response.headers["Location"]).get_data(
        as_text=True)
    assert lead_of(app, "ann@example.com").review == "approved"

    post(owner, "/admin/leads/bulk", {"lead": [str(i) for i in ids], "action": "reject",
                                      "reason": "Fake sign-ups"})
    for email in ("ann@example.com", "bob@example.com"):
        lead = lead_of(app, email)
        assert (lead.review, lead.review_reason) == ("rejected", "Fake sign-ups")
    [enrollment] = rows_of(app, Enrollment)
    assert (enrollment.state, enrollment.stop_reason) == ("stopped", "rejected")
    rejects = rows_of(app, Event, Event.kind == "reject")
    assert {(e.data["by"], e.data["reason"]) for e in rejects} == {("owner", "Fake sign-ups")}


def test_bulk_action_with_nothing_ticked_says_so(owner, seeded):
    response = post(owner, "/admin/leads/bulk", {"action": "approve"})
    assert "Tick at least one lead first." in owner.get(response.headers["Location"]).get_data(
        as_text=True)


def test_bulk_action_never_redirects_outside_the_table(owner, seeded, app):
    lead_id = lead_of(app, "bob@example.com").id
    response = post(owner, "/admin/leads/bulk", {"lead": [str(lead_id)], "action": "approve",
                                                 "back": "https://evil.example/"})
    assert response.headers["Location"] == "/admin/leads"


# --- erase ----------------------------------------------------------------------------

def test_erase_asks_first_then_keeps_the_row_without_the_person(owner, app, client, make_page):
    make_page(slug="offer", double_opt_in=False)
    optin(client, "offer", email="gone@example.com", name="Gone")
    lead = lead_of(app, "gone@example.com")

    confirm = owner.get(f"/admin/leads/{lead.id}/erase")
    assert confirm.status_code == 200
    assert "Erase gone@example.com?" in confirm.get_data(as_text=True)
    assert lead_of(app, "gone@example.com") is not None

    response = post(owner, f"/admin/leads/{lead.id}/erase", page=f"/admin/leads/{lead.id}/erase")
    assert response.status_code == 302
    table = owner.get("/admin/leads").get_data(as_text=True)
    assert f"Erased lead #{lead.id}" in table
    assert "gone@example.com" not in table and "Gone" not in table
    detail = owner.get(f"/admin/leads/{lead.id}").get_data(as_text=True)
    assert f"Erased lead #{lead.id}" in detail and "Erase…" not in detail
    assert lead_of(app, "gone@example.com") is None
    [suppression] = rows_of(app, Suppression)
    assert suppression.email is None and len(suppression.email_hash) == 64
    with app.app_context():
        assert db.session.scalar(select(func.count(Event.id))) > 1  # the history stays

    # A new opt-in from the address is not silently re-added.
    assert optin(client, "offer", email="Gone@Example.com").status_code == 303
    assert lead_of(app, "gone@example.com") is None


# --- one lead -------------------------------------------------------------------------

@pytest.fixture
def full_lead(app, client, make_page, clock):
    """A lead from a real opt-in with attribution and a referrer, one email sent and
    failed, opens by a person and a scanner, a click and an upgrade."""
    make_page(slug="offer", double_opt_in=True, consent="Yes, email me the guide.",
              fields=[
                  {"name": "name", "label": "Name", "type": "text", "required": False},
                  {"name": "email", "label": "Email", "type": "email", "required": True},
                  {"name": "company", "label": "Company", "type": "text", "required": False},
                  {"name": "country", "label": "Country", "type": "country",
                   "required": False},
              ])
    optin(client, "offer", email="friend@example.com", consent="y")
    friend = lead_of(app, "friend@example.com")
    clock.advance(minutes=5)
    # Another browser: attribution is first-touch per visitor cookie.
    query = f"?utm_source=fb&utm_campaign=spring&ref={friend.public_ref}"
    optin(app.test_client(), "offer", query=query,
          headers={"Referer": "https://social.example/post"},
          email="jane@example.com", name="Jane Doe", company="Acme", country="DE", consent="y")
    jane = lead_of(app, "jane@example.com")
    with app.app_context():
        lead = db.session.get(Lead, jane.id)
        clock.advance(minutes=1)
        leads_module.confirm(lead, "203.0.113.9")
        delivery = Delivery(lead_id=lead.id, sequence="welcome", step="01-welcome",
                            filename="01-welcome.md", status="failed", attempts=3,
                            subject="Welcome!", error="550 5.1.1 mailbox full")
        sent = Delivery(lead_id=lead.id, sequence="welcome", step="02-fields",
                        filename="02-fields.md", status="sent", attempts=1,
                        subject="Your fields", sent_at=clock.now)
        db.session.add_all([delivery, sent])
        db.session.flush()
        clock.advance(minutes=2)
        for machine in (True, False):
            db.session.add(Event(lead_id=lead.id, page_id=lead.page_id, kind="open",
                                 delivery_id=sent.id, machine=machine, data={},
                                 created_at=clock.now))
        db.session.add(Event(lead_id=lead.id, page_id=lead.page_id, kind="click",
                             delivery_id=sent.id, data={"url": "https://shop.example/x"},
                             created_at=clock.now))
        db.session.commit()
        clock.advance(minutes=1)
        from capture.leads import upgrades as engagement
        engagement.record_upgrade(lead, Decimal("49.5"), "EUR", "order-77", source="postback")
    return jane.id


def test_detail_shows_every_field_attribution_and_consent(owner, full_lead):
    html = owner.get(f"/admin/leads/{full_lead}").get_data(as_text=True)
    for text in ("Jane Doe", "jane@example.com", "Germany (DE)", "Company", "Acme",
                 "utm_source", "fb", "spring", "https://social.example/post",
                 "Yes, email me the guide.", "203.0.113.9",
                 "badge approved", "badge subscribed"):
        assert text in html, text
    assert re.search(r"Landing URL</dt><dd class=\"url\">[^<]*/p/offer", html)
    assert re.search(r"Visitor id</dt><dd><code>\w+</code>", html)


def test_detail_shows_referrals_both_ways(owner, app, full_lead):
    friend = lead_of(app, "friend@example.com")
    html = owner.get(f"/admin/leads/{full_lead}").get_data(as_text=True)
    assert f'href="/admin/leads/{friend.id}">friend@example.com</a>' in html
    friend_html = owner.get(f"/admin/leads/{friend.id}").get_data(as_text=True)
    assert "Brought in 1 lead" in friend_html
    assert f'href="/admin/leads/{full_lead}">jane@example.com</a>' in friend_html


def test_detail_shows_deliveries_with_state_and_error(owner, full_lead):
    html = owner.get(f"/admin/leads/{full_lead}").get_data(as_text=True)
    assert '<span class="badge failed">failed</span>' in html
    assert "550 5.1.1 mailbox full" in html
    assert '<span class="badge sent">sent</span>' in html


def test_detail_timeline_is_newest_first_with_marks_and_amounts(owner, full_lead):
    html = owner.get(f"/admin/leads/{full_lead}").get_data(as_text=True)
    timeline = html[html.index('<ol class="timeline">'):]
    kinds = re.findall(r'<li class="event (\w+)">', timeline)
    assert kinds[0] == "upgrade"
    assert kinds[-1] == "optin"
    assert kinds.index("confirm") < kinds.index("confirmation_sent") < kinds.index("optin")
    assert "49.50 EUR" in timeline and "order-77" in timeline
    assert 'class="badge machine"' in timeline and 'class="badge human"' in timeline
    assert "Opened “Your fields”" in timeline
    assert "https://shop.example/x" in timeline


def test_approve_from_detail_enrols_and_records_who(owner, app, manual_page, client):
    optin(client, "manual", email="ann@example.com")
    lead = lead_of(app, "ann@example.com")
    response = post(owner, f"/admin/leads/{lead.id}/approve", page=f"/admin/leads/{lead.id}")
    assert response.headers["Location"] == f"/admin/leads/{lead.id}"
    html = owner.get(f"/admin/leads/{lead.id}").get_data(as_text=True)
    assert "ann@example.com is approved." in html
    assert "Approved by owner" in html
    assert lead_of(app, "ann@example.com").review == "approved"
    assert [e.sequence for e in rows_of(app, Enrollment)] == ["welcome"]


def test_approving_a_lead_the_rules_rejected_queues_its_confirmation(
        owner, app, client, make_page, outbox):
    make_page(slug="offer", double_opt_in=True, rules={"block_domains": ["blocked.example"]})
    optin(client, "offer", email="x@blocked.example")
    lead = lead_of(app, "x@blocked.example")
    assert lead.review == "rejected" and lead.confirmation_sent_at is None
    assert outbox.to("x@blocked.example") == []

    post(owner, f"/admin/leads/{lead.id}/approve", page=f"/admin/leads/{lead.id}")
    lead = lead_of(app, "x@blocked.example")
    assert lead.review == "approved" and lead.review_reason == ""
    assert outbox.to("x@blocked.example") == []  # not while the owner waits
    scheduler.run_confirmations(app)
    assert lead_of(app, "x@blocked.example").confirmation_sent_at is not None
    assert len(outbox.to("x@blocked.example")) == 1


def test_bulk_approving_rule_rejected_leads_leaves_their_confirmations_to_the_scheduler(
        owner, app, client, make_page, outbox):
    make_page(slug="offer", double_opt_in=True, rules={"block_domains": ["blocked.example"]})
    for name in ("x", "y"):
        optin(client, "offer", email=f"{name}@blocked.example")
    ids = [lead_of(app, f"{name}@blocked.example").id for name in ("x", "y")]

    post(owner, "/admin/leads/bulk", {"lead": [str(i) for i in ids], "action": "approve"})
    assert [lead_of(app, f"{n}@blocked.example").review for n in ("x", "y")] == [
        "approved", "approved"]
    assert outbox.messages() == []  # nothing sent while the owner waited

    scheduler.run_confirmations(app)
    for name in ("x", "y"):
        [message] = outbox.to(f"{name}@blocked.example")
        assert "confirm" in message["Subject"].lower()
        assert lead_of(app, f"{name}@blocked.example").confirmation_sent_at is not None
    scheduler.run_confirmations(app)
    assert len(outbox.messages()) == 2  # sent once


def test_bulk_approving_queues_no_confirmation_once_the_page_dropped_double_opt_in(
        owner, app, client, make_page, outbox):
    make_page(slug="offer", double_opt_in=True, rules={"block_domains": ["blocked.example"]})
    optin(client, "offer", email="x@blocked.example")
    lead = lead_of(app, "x@blocked.example")
    assert (lead.review, lead.subscription) == ("rejected", "unconfirmed")
    with app.app_context():
        db.session.execute(update(Page).values(double_opt_in=False))
        db.session.commit()
    post(owner, "/admin/leads/bulk", {"lead": [str(lead.id)], "action": "approve"})
    scheduler.run_confirmations(app)
    assert outbox.to("x@blocked.example") == []


def test_approving_does_not_resend_a_confirmation_already_sent(
        owner, app, client, make_page, outbox):
    make_page(slug="offer", double_opt_in=True, review="manual")
    optin(client, "offer", email="ann@example.com")
    assert len(outbox.to("ann@example.com")) == 1
    lead = lead_of(app, "ann@example.com")
    post(owner, f"/admin/leads/{lead.id}/approve", page=f"/admin/leads/{lead.id}")
    assert lead_of(app, "ann@example.com").review == "approved"
    assert len(outbox.to("ann@example.com")) == 1


def test_reject_from_detail_needs_a_reason(owner, app, make_page):
    make_page(slug="offer")
    lead_id = add_lead(app, "ann@example.com", "offer", review="pending")
    response = post(owner, f"/admin/leads/{lead_id}/reject", {"reason": ""},
                    page=f"/admin/leads/{lead_id}")
    assert response.status_code == 422
    assert "Give a reason for rejecting." in response.get_data(as_text=True)
    assert lead_of(app, "ann@example.com").review == "pending"

    post(owner, f"/admin/leads/{lead_id}/reject", {"reason": "Competitor"},
         page=f"/admin/leads/{lead_id}")
    lead = lead_of(app, "ann@example.com")
    assert (lead.review, lead.review_reason) == ("rejected", "Competitor")
    html = owner.get(f"/admin/leads/{lead_id}").get_data(as_text=True)
    assert "Rejected by owner: <em>Competitor</em>" in html


def test_upgrade_by_hand_is_recorded_once_per_transaction(owner, app, make_page):
    make_page(slug="offer", currency="EUR")
    lead_id = add_lead(app, "ann@example.com", "offer", review="approved")
    detail = f"/admin/leads/{lead_id}"
    assert re.search(r'name="currency"[^>]*value="EUR"', owner.get(detail).get_data(as_text=True))
    response = post(owner, f"{detail}/upgrade",
                    {"amount": "19.90", "currency": "eur", "txn": "order-1"}, page=detail)
    assert response.status_code == 302
    html = owner.get(detail).get_data(as_text=True)
    assert "Recorded an upgrade of 19.90 EUR." in html
    post(owner, f"{detail}/upgrade", {"amount": "19.90", "currency": "EUR", "txn": "order-1"},
         page=detail)
    post(owner, f"{detail}/upgrade", {"amount": "5", "currency": "USD", "txn": ""}, page=detail)
    upgrades = rows_of(app, Upgrade)
    assert [(u.amount, u.currency, u.source) for u in upgrades] == [
        (Decimal("19.90"), "EUR", "manual"), (Decimal("5.00"), "USD", "manual")]
    assert upgrades[1].txn.startswith("manual-")
    assert "entered by hand" in owner.get(detail).get_data(as_text=True)


@pytest.mark.parametrize(("data", "message"), [
    ({"amount": "19,90", "currency": "USD"}, "is not an amount like 19.90"),
    ({"amount": "0", "currency": "USD"}, "must be more than 0"),
    ({"amount": "", "currency": "USD"}, "Enter the amount, like 19.90."),
    ({"amount": "10", "currency": "XYZ"}, "is not an ISO 4217 code"),
])
def test_upgrade_by_hand_shows_validation_errors(owner, app, data, message):
    lead_id = add_lead(app, "ann@example.com")
    response = post(owner, f"/admin/leads/{lead_id}/upgrade", data,
                    page=f"/admin/leads/{lead_id}")
    assert response.status_code == 422
    assert message in unescape(response.get_data(as_text=True))
    assert rows_of(app, Upgrade) == []


def test_unsubscribe_from_detail_stops_sequences(owner, app, make_page):
    make_page(slug="offer", sequence="welcome", double_opt_in=False)
    lead_id = add_lead(app, "ann@example.com", "offer", review="pending",
                       subscription="subscribed")
    post(owner, f"/admin/leads/{lead_id}/approve", page=f"/admin/leads/{lead_id}")
    post(owner, f"/admin/leads/{lead_id}/unsubscribe", page=f"/admin/leads/{lead_id}")
    assert lead_of(app, "ann@example.com").subscription == "unsubscribed"
    [enrollment] = rows_of(app, Enrollment)
    assert enrollment.state == "stopped"
    [event] = rows_of(app, Event, Event.kind == "unsubscribe")
    assert event.data["source"] == "owner"
    assert "by the owner" in owner.get(f"/admin/leads/{lead_id}").get_data(as_text=True)


# --- escaping -------------------------------------------------------------------------

def test_names_with_script_are_escaped_in_table_detail_and_delete(owner, app, make_page):
    make_page(slug="offer")
    lead_id = add_lead(app, "x@example.com", "offer", name=SCRIPT, utm_source=SCRIPT,
                       review="rejected", review_reason=SCRIPT, consent_text=SCRIPT,
                       fields={"company": SCRIPT})
    with app.app_context():
        db.session.add(Event(lead_id=lead_id, kind="reject", data={"by": "owner",
                                                                     "reason": SCRIPT}))
        db.session.commit()
    for path in ("/admin/leads", f"/admin/leads/{lead_id}", f"/admin/leads/{lead_id}/erase",
                 f"/admin/leads?q={SCRIPT}"):
        html = owner.get(path).get_data(as_text=True)
        assert SCRIPT not in html, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
