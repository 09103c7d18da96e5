"""Several opt-ins per person: a known address opting in on another page is a new
opt-in of the same lead, with its own consent, attribution, review, payout and
sequence; on the same page again it stays a duplicate."""

import json
import re
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select

from capture.db import db
from capture.leads import optins
from capture.models import Event, Lead, Optin, Page
from capture.numbers import metrics
from tests.conftest import confirm, count, create_page, optin
from tests.factories import add_webhook, deliver, sequence_folder, subjects, tick, write_step


def optin_rows(app, email="ann@example.com"):
    """The person's opt-ins as (page slug, first, review, review_reason, utm_source)."""
    with app.app_context():
        rows = db.session.execute(
            select(Page.slug, Optin.first, Optin.review, Optin.review_reason,
                   Optin.utm_source, Optin.consent_text)
            .join(Lead, Lead.id == Optin.lead_id).outerjoin(Page, Page.id == Optin.page_id)
            .where(Lead.email == email).order_by(Optin.id)).all()
        return [tuple(row) for row in rows]


def events_of(app, kind, email="ann@example.com"):
    with app.app_context():
        return [(event.page_id, event.data) for event in db.session.scalars(
            select(Event).join(Lead).where(Lead.email == email, Event.kind == kind)
            .order_by(Event.id))]


def join(client, slug, email, query=""):
    """Opt in on a page, ticking its consent box."""
    return optin(client, slug, query=query, email=email, consent="y")


def sequence(app, name):
    write_step(sequence_folder(app, name), "01-hello.md", f"{name}: Hello", "Hi.", delay=0)


def two_pages(app, second=None, first=None):
    create_page(app, slug="checklist", double_opt_in=False, payout="2.00",
                consent="Send me the checklist", **(first or {}))
    create_page(app, slug="prices", double_opt_in=False, payout="5.00",
                consent="Send me the price list", **(second or {}))


def test_a_known_address_on_another_page_is_a_new_optin_of_the_same_lead(app):
    two_pages(app)
    join(app.test_client(), "checklist", "ann@example.com", query="?utm_source=ads")
    response = join(app.test_client(), "prices", "Ann@Example.com",
                    query="?utm_source=newsletter")
    assert response.status_code == 303
    assert count(app, Lead) == 1
    assert optin_rows(app) == [
        ("checklist", True, "approved", "", "ads", "Send me the checklist"),
        ("prices", False, "approved", "", "newsletter", "Send me the price list")]
    assert events_of(app, "duplicate") == []
    assert [data.get("utm_source") for _, data in events_of(app, "optin")] == [
        "ads", "newsletter"]


def test_the_same_page_again_stays_a_duplicate(app):
    two_pages(app)
    join(app.test_client(), "checklist", "ann@example.com")
    join(app.test_client(), "prices", "ann@example.com")
    join(app.test_client(), "prices", "ann@example.com")
    assert len(optin_rows(app)) == 2
    assert len(events_of(app, "duplicate")) == 1


def test_the_later_optin_is_reviewed_by_its_own_pages_rules(app):
    two_pages(app, second={"rules": {"block_domains": ["example.com"]}})
    join(app.test_client(), "checklist", "ann@example.com")
    join(app.test_client(), "prices", "ann@example.com")
    assert [row[2:4] for row in optin_rows(app)] == [
        ("approved", ""), ("rejected", "domain example.com is blocked")]
    with app.app_context():
        lead = db.session.scalar(select(Lead))
        assert lead.review == "approved"  # the person's first opt-in is untouched


def test_page_numbers_count_optins_and_the_total_counts_people(app):
    two_pages(app)
    join(app.test_client(), "checklist", "ann@example.com")
    join(app.test_client(), "prices", "ann@example.com")
    join(app.test_client(), "prices", "bob@example.com")
    with app.app_context():
        for report in (metrics.report(), metrics.report(start=datetime(2000, 1, 1, 0, 0, 1))):
            assert (report.total.leads, report.total.optins, report.total.approved) == (2, 3, 3)
            assert report.total.payout == Decimal("12.00")
        by_page = metrics.report(by="page").rows
        assert (by_page["checklist"].leads, by_page["prices"].leads) == (1, 2)
        assert by_page["prices"].payout == Decimal("10.00")
        prices = db.session.scalar(select(Page.id).where(Page.slug == "prices"))
        assert metrics.report(page_id=prices).total.leads == 2
        from_rows = metrics._from_tables(None, None, None, "page")
        assert {key: (n.leads, n.optins, n.approved, n.payout) for key, n in from_rows.items()} \
            == {page_of(app, key): (v.leads, v.optins, v.approved, v.payout)
                for key, v in by_page.items()}


def page_of(app, slug):
    return db.session.scalar(select(Page.id).where(Page.slug == slug))


def test_an_approved_later_optin_starts_its_pages_sequence_once(smtp_app, smtp, clock):
    sequence(smtp_app, "checklist-course")
    sequence(smtp_app, "prices-course")
    two_pages(smtp_app, first={"sequence": "checklist-course"},
              second={"sequence": "prices-course"})
    join(smtp_app.test_client(), "checklist", "ann@example.com")
    join(smtp_app.test_client(), "prices", "ann@example.com")
    join(smtp_app.test_client(), "prices", "ann@example.com")
    tick(smtp_app)
    tick(smtp_app)
    assert sorted(subjects(smtp)) == ["checklist-course: Hello", "prices-course: Hello"]


def test_a_pending_later_optin_starts_its_sequence_when_approved(smtp_app, smtp, clock):
    sequence(smtp_app, "prices-course")
    two_pages(smtp_app, second={"sequence": "prices-course", "review": "manual"})
    join(smtp_app.test_client(), "checklist", "ann@example.com")
    join(smtp_app.test_client(), "prices", "ann@example.com")
    tick(smtp_app)
    assert subjects(smtp) == []
    with smtp_app.app_context():
        later = db.session.scalar(select(Optin).where(Optin.first.is_(False)))
        decision = optins.review(later, "approve")
        assert decision.changed and decision.message == "The opt-in on prices is approved."
        assert metrics.report(by="page").rows["prices"].payout == Decimal("5.00")
    tick(smtp_app)
    assert subjects(smtp) == ["prices-course: Hello"]


def test_rejecting_a_later_optin_removes_its_payout_and_stops_its_sequence(
        smtp_app, smtp, clock):
    write_step(sequence_folder(smtp_app, "prices-course"), "01-a.md", "A", "a", delay=0)
    write_step(sequence_folder(smtp_app, "prices-course"), "02-b.md", "B", "b", delay="1d")
    two_pages(smtp_app, second={"sequence": "prices-course"})
    join(smtp_app.test_client(), "checklist", "ann@example.com")
    join(smtp_app.test_client(), "prices", "ann@example.com")
    tick(smtp_app)
    with smtp_app.app_context():
        later = db.session.scalar(select(Optin).where(Optin.first.is_(False)))
        assert optins.review(later, "reject", "  buyer said: no\n").changed
        assert metrics.report().total.payout == Decimal("2.00")
    clock.advance(days=2)
    tick(smtp_app)
    assert subjects(smtp) == ["A"]
    # It was approved: a return.
    assert [data for _, data in events_of(smtp_app, "return")] == [
        {"by": "owner", "reason": "buyer said: no", "page": "prices"}]


def test_the_first_optin_is_reviewed_on_the_lead_not_here(app):
    two_pages(app)
    join(app.test_client(), "checklist", "ann@example.com")
    with app.app_context():
        first = db.session.scalar(select(Optin))
        try:
            optins.review(first, "reject", "no")
        except ValueError as error:
            assert "review the lead itself" in str(error)
        else:
            raise AssertionError("the first opt-in was reviewed apart from its lead")


def test_the_first_optin_follows_the_leads_review(app):
    from capture.leads import lifecycle

    two_pages(app, first={"review": "manual"})
    join(app.test_client(), "checklist", "ann@example.com")
    with app.app_context():
        lifecycle.reject(db.session.scalar(select(Lead)), "fake address")
    assert [row[2:4] for row in optin_rows(app)] == [("rejected", "fake address")]


def test_an_unconfirmed_person_is_asked_again_and_confirming_starts_both_sequences(
        smtp_app, smtp, clock):
    sequence(smtp_app, "checklist-course")
    sequence(smtp_app, "prices-course")
    create_page(smtp_app, slug="checklist", sequence="checklist-course")
    create_page(smtp_app, slug="prices", sequence="prices-course")
    join(smtp_app.test_client(), "checklist", "ann@example.com")
    clock.advance(hours=1)
    join(smtp_app.test_client(), "prices", "ann@example.com")
    confirmations = [m for m in smtp.messages if "confirm" in str(m["Subject"]).lower()]
    assert len(confirmations) == 2
    link = re.search(r"(/confirm/[^\s\"]+)", confirmations[-1].get_body(("plain",))
                     .get_content()).group(1)
    assert confirm(smtp_app.test_client(), link).status_code == 200
    tick(smtp_app)
    assert sorted(s for s in subjects(smtp) if "Hello" in s) == [
        "checklist-course: Hello", "prices-course: Hello"]


def test_a_later_optin_sends_optin_created_with_the_optin(make_app, receiver):
    app = make_app(WEBHOOK_ALLOW_PRIVATE=True, WEBHOOK_TIMEOUT_SECONDS=10)
    two_pages(app)
    add_webhook(app, receiver.url, events=["optin.created", "lead.created"])
    join(app.test_client(), "checklist", "ann@example.com")
    join(app.test_client(), "prices", "ann@example.com", query="?utm_source=newsletter")
    deliver(app)
    bodies = [json.loads(r["body"]) for r in receiver.requests]
    assert [b["event"] for b in bodies] == ["lead.created", "optin.created", "optin.created"]
    later = bodies[-1]["optin"]
    assert (later["page"], later["first"], later["review"], later["payout"]) == (
        "prices", False, "approved", "5.00")
    assert later["attribution"]["utm_source"] == "newsletter"
    assert bodies[-1]["lead"]["page"] == "checklist"
