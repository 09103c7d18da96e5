"""Reading bounce reports (DSN, ARF, auto-replies) and what each does to its lead:
hard bounces, soft bounces up to the limit, complaints; each once per email."""

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select

from capture.db import db
from capture.mail import bounces, reports, verp
from capture.mail.verp import Origin
from capture.models import Enrollment, Event, Lead, Suppression
from tests import bounce_samples as samples
from tests.factories import add_delivery, add_lead

BOUNCE_ADDRESS = "bounces@mail.example.com"


@pytest.fixture
def app(make_app):
    return make_app(BOUNCE_ADDRESS=BOUNCE_ADDRESS)


def _address(app, kind="delivery", id=1) -> str:
    with app.app_context():
        return verp.envelope_sender(Origin(kind, id))


def _parse(app, raw: bytes) -> reports.Report:
    with app.app_context():
        return reports.parse(raw)


def test_dsn_status_codes_say_hard_or_soft(app):
    address = _address(app, id=5)
    hard = _parse(app, samples.dsn(address))
    assert (hard.kind, hard.origin) == (reports.HARD, Origin("delivery", 5))
    assert hard.detail.startswith("5.1.1 smtp; 550 5.1.1")
    assert _parse(app, samples.dsn(address, status="4.2.2", action="delayed")).kind == reports.SOFT
    assert _parse(app, samples.dsn(address, status="4.4.7")).kind == reports.SOFT
    assert _parse(app, samples.dsn(address, status="2.0.0", action="delivered")).kind == \
        reports.OTHER
    for header in ("Delivered-To", "X-Original-To"):
        assert _parse(app, samples.dsn(address, header=header)).origin == Origin("delivery", 5)


def test_arf_complaint_names_the_email_by_the_original_return_path(app):
    report = _parse(app, samples.arf(_address(app, id=8)))
    assert (report.kind, report.origin, report.detail) == (
        reports.COMPLAINT, Origin("delivery", 8), "abuse")


def test_arf_with_headers_only_names_the_email_by_original_mail_from(app):
    report = _parse(app, samples.arf(_address(app, "confirmation", 3), headers_only=True))
    assert (report.kind, report.origin) == (reports.COMPLAINT, Origin("confirmation", 3))


def test_only_genuine_verp_addresses_name_an_email(app):
    # The address the DSN quotes (Final-Recipient) is never trusted: only our token.
    forged = _address(app, id=5).replace("@", "x@")
    assert _parse(app, samples.dsn(forged)).origin is None
    assert _parse(app, samples.dsn(BOUNCE_ADDRESS)).origin is None
    assert _parse(app, samples.arf("bounces+zzzzzzzzzzzzzzzzzzzz@mail.example.com")).origin is None


def test_auto_replies_and_other_mail_are_not_acted_upon(app):
    address = _address(app)
    assert _parse(app, samples.out_of_office(address)).kind == reports.AUTO_REPLY
    assert _parse(app, samples.plain(address)).kind == reports.OTHER
    for name, value in (("X-Autoreply", "yes"), ("Precedence", "auto_reply")):
        raw = samples.plain(address).replace(b"Subject:", f"{name}: {value}\nSubject:".encode())
        assert _parse(app, raw).kind == reports.AUTO_REPLY
    assert not _parse(app, samples.out_of_office(address)).actionable


def _target(app, kind, id):
    return bounces.target_of(Origin(kind, id))


def test_hard_bounce_suppresses_once(app):
    lead_id = add_lead(app)
    delivery = add_delivery(app, lead_id)
    with app.app_context():
        assert bounces.hard_bounce(_target(app, "delivery", delivery), "5.1.1 no such user")
        assert not bounces.hard_bounce(_target(app, "delivery", delivery), "5.1.1 again")
        lead = db.session.get(Lead, lead_id)
        assert lead.subscription == "bounced"
        assert db.session.scalar(select(Suppression.email)) == "ann@example.com"
        assert db.session.scalar(select(func.count(Event.id)).where(Event.kind == "bounce")) == 1
        assert {e.state for e in db.session.scalars(select(Enrollment))} == {"stopped"}


def test_soft_bounces_make_a_lead_bounced_at_the_limit_within_seven_days(app, frozen_clock):
    lead_id = add_lead(app)
    first, second, third = (add_delivery(app, lead_id, step=f"0{i}-x") for i in (1, 2, 3))
    with app.app_context():
        assert bounces.soft_bounce(_target(app, "delivery", first), "4.2.2 mailbox full")
        assert not bounces.soft_bounce(_target(app, "delivery", first), "4.2.2 twice")
        frozen_clock.advance(days=8)  # the first is too old to count now
        assert bounces.soft_bounce(_target(app, "delivery", second), "4.2.2 full")
        assert bounces.soft_bounce(_target(app, "delivery", third), "4.2.2 full")
        assert db.session.get(Lead, lead_id).subscription == "subscribed"
        assert bounces.soft_bounce(_target(app, "confirmation", lead_id), "4.4.1 timeout")
        lead = db.session.get(Lead, lead_id)
        assert lead.subscription == "bounced"
        assert db.session.scalar(select(Suppression.reason)).startswith("3 soft bounces")


def test_soft_bounce_limit_is_a_setting(make_app):
    app = make_app(SOFT_BOUNCE_LIMIT=1)
    lead_id = add_lead(app)
    delivery = add_delivery(app, lead_id)
    with app.app_context():
        bounces.soft_bounce(_target(app, "delivery", delivery), "4.2.2 full")
        assert db.session.get(Lead, lead_id).subscription == "bounced"


def test_complaint_unsubscribes_suppresses_and_tells_webhooks_once(app):
    from capture.models import WebhookDelivery
    from tests.factories import add_webhook
    add_webhook(app, "https://hooks.example.com/in", events=["lead.complained"])
    lead_id = add_lead(app)
    delivery = add_delivery(app, lead_id)
    with app.app_context():
        assert bounces.complaint(_target(app, "delivery", delivery), "abuse")
        assert not bounces.complaint(_target(app, "delivery", delivery), "abuse")
        assert db.session.get(Lead, lead_id).subscription == "unsubscribed"
        assert db.session.scalar(select(Suppression.reason)) == "complaint"
        assert [row.event for row in db.session.scalars(select(WebhookDelivery))] == [
            "lead.complained"]


def test_an_erased_lead_or_a_missing_email_is_no_target(app):
    lead_id = add_lead(app)
    delivery = add_delivery(app, lead_id)
    with app.app_context():
        db.session.get(Lead, lead_id).subscription = "erased"
        db.session.commit()
        assert _target(app, "delivery", delivery) is None
        assert _target(app, "delivery", 999) is None
        assert _target(app, "confirmation", 999) is None


@pytest.mark.parametrize("url", ["https://u:p@host/", "imaps://host/INBOX", "imap://u:p@/",
                                 "imaps://u:p@host:port/"])
def test_a_bad_mailbox_url_stops_start_up_without_repeating_it(make_app, url):
    with pytest.raises(SystemExit) as stopped:
        make_app(BOUNCE_MAILBOX=url)
    assert "CAPTURE_BOUNCE_MAILBOX" in str(stopped.value) and url not in str(stopped.value)


def test_a_report_being_acted_upon_keeps_its_lead_locked_until_it_commits(app):
    """Two processes reading one report: the second waits for the first's commit and
    then finds its event (on SQLite, which has no row locks, by the write lock)."""
    lead = add_lead(app, email="ann@example.com")
    delivery = add_delivery(app, lead)
    with app.app_context():
        target = bounces.target_of(Origin("delivery", delivery))
        other = sa.create_engine(db.engine.url, connect_args=(
            {"timeout": 0} if db.engine.dialect.name == "sqlite" else {}))
        try:
            with other.connect() as connection:
                with pytest.raises(sa.exc.OperationalError):
                    if db.engine.dialect.name == "sqlite":
                        connection.execute(sa.text("UPDATE leads SET id = id WHERE id = :id"),
                                           {"id": lead})
                    else:
                        connection.execute(sa.text("SELECT id FROM leads WHERE id = :id "
                                                   "FOR UPDATE NOWAIT"), {"id": lead})
            assert bounces.hard_bounce(target, "550 no such user") is True
            with other.connect() as connection:  # committed: the lock is gone
                connection.execute(sa.text("UPDATE leads SET id = id WHERE id = :id"),
                                   {"id": lead})
                connection.commit()
        finally:
            other.dispose()
