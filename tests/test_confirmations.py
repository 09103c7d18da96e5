"""The confirmation email queue (`capture.leads.confirmations`): an opt-in request never
sends an email, whatever the address; the scheduler's fast lane sends it; failed
attempts are recorded where the owner sees them; `flask --app wsgi mail test`."""

import logging
import socket
import threading
import time

import pytest
from sqlalchemy import event, select, update

from capture.leads import confirmations
from capture.leads import lifecycle as leads
from capture.mail import compose as rendering
from capture.db import db
from capture.models import Event, Lead, Suppression
from tests.conftest import (
    POSTGRES_URL,
    banners,
    body_text,
    count,
    create_page,
    form_tokens,
    lead_of,
    owner_client,
    send_confirmations,
)


def post_optin(client, email: str, slug: str = "offer"):
    """Open the page and submit the form, as a visitor does (nothing else runs)."""
    tokens = form_tokens(client.get(f"/p/{slug}").get_data(as_text=True))
    return client.post(f"/p/{slug}", data={**tokens, "email": email, "name": "Ann"})


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def recipients(smtp) -> list[str]:
    """The address each received message went to."""
    return [message["To"].addresses[0].addr_spec for message in smtp.messages]


def events_of(app, email: str, kind: str) -> list[dict]:
    with app.app_context():
        return list(db.session.scalars(
            select(Event.data).join(Lead).where(Lead.email == email, Event.kind == kind)
            .order_by(Event.id)))


@pytest.fixture
def offer(smtp_app):
    create_page(smtp_app, slug="offer", double_opt_in=True)
    return smtp_app


# --- 15.2: the request sends nothing --------------------------------------------------

def test_an_opt_in_sends_nothing_in_the_request_and_the_next_run_delivers_it(offer, smtp):
    response = post_optin(offer.test_client(), "ann@example.com")

    assert response.status_code == 303
    assert smtp.greetings == 0 and smtp.messages == []  # no connection, no email
    lead = lead_of(offer, "ann@example.com")
    assert lead.confirmation_sent_at is None
    assert lead.confirmation_queued_at == lead.created_at == lead.confirmation_due_at

    assert send_confirmations(offer) == 1
    [message] = smtp.to("ann@example.com")
    assert "/confirm/" in body_text(message)
    assert lead_of(offer, "ann@example.com").confirmation_due_at is None
    assert send_confirmations(offer) == 0  # sent once


def test_the_outbox_is_empty_right_after_the_post(app, outbox):
    create_page(app, slug="offer", double_opt_in=True)
    assert post_optin(app.test_client(), "ann@example.com").status_code == 303
    assert outbox.messages() == []

    send_confirmations(app)
    [message] = outbox.to("ann@example.com")
    assert "confirm" in str(message["Subject"]).lower()


@pytest.mark.parametrize("kind", ["new", "known", "suppressed"])
def test_new_known_and_suppressed_addresses_get_the_same_quick_answer_and_no_email(
        offer, smtp, clock, kind):
    client = offer.test_client()
    if kind == "known":  # unconfirmed, its confirmation old enough to be sent again
        post_optin(client, "ann@example.com")
        send_confirmations(offer)
        clock.advance(minutes=offer.config["CONFIRM_RESEND_MINUTES"] + 1)
    elif kind == "suppressed":
        with offer.app_context():
            db.session.add(Suppression(email="ann@example.com", reason="deleted by owner"))
            db.session.commit()
    greetings, messages = smtp.greetings, len(smtp.messages)
    smtp.stalls["MAIL"] = 5.0  # a relay far away: sending inside the request would show

    started = time.monotonic()
    response = post_optin(client, "ann@example.com")
    took = time.monotonic() - started

    assert response.status_code == 303
    assert response.headers["Location"] == "/p/offer/thanks"
    assert (smtp.greetings, len(smtp.messages)) == (greetings, messages)
    assert took < 4  # far below the stall, with room for a busy machine


def test_a_repeat_opt_in_queues_the_confirmation_again_once_per_resend_window(
        offer, smtp, clock):
    client = offer.test_client()
    post_optin(client, "ann@example.com")
    send_confirmations(offer)
    for _ in range(3):  # within the window: nothing more
        post_optin(client, "ann@example.com")
    assert lead_of(offer, "ann@example.com").confirmation_due_at is None
    send_confirmations(offer)
    assert len(smtp.to("ann@example.com")) == 1

    clock.advance(minutes=offer.config["CONFIRM_RESEND_MINUTES"])
    for _ in range(5):  # a flood after the window: one more email
        post_optin(client, "ann@example.com")
    send_confirmations(offer)
    send_confirmations(offer)
    assert len(smtp.to("ann@example.com")) == 2
    assert len(events_of(offer, "ann@example.com", "duplicate")) == 8


def test_a_lead_still_waiting_after_confirm_within_days_is_left_alone(offer, smtp, clock):
    post_optin(offer.test_client(), "ann@example.com")
    clock.advance(days=confirmations.CONFIRM_WITHIN_DAYS, seconds=1)  # the scheduler was down

    assert send_confirmations(offer) == 0
    assert smtp.messages == []
    lead = lead_of(offer, "ann@example.com")
    assert lead.confirmation_due_at is None and lead.confirmation_sent_at is None


def test_a_lead_confirmed_or_rejected_meanwhile_gets_no_email(offer, smtp):
    client = offer.test_client()
    post_optin(client, "ann@example.com")
    post_optin(client, "bob@example.com")
    with offer.app_context():
        leads.reject(db.session.scalar(select(Lead).where(Lead.email == "ann@example.com")),
                     "spam")
        db.session.execute(update(Lead).where(Lead.email == "bob@example.com")
                           .values(subscription="subscribed"))
        db.session.commit()
    assert send_confirmations(offer) == 0
    assert smtp.messages == []


def test_several_schedulers_at_once_send_each_confirmation_once(offer, smtp):
    client = offer.test_client()
    for number in range(12):
        post_optin(client, f"p{number}@example.com")
    barrier = threading.Barrier(4)
    sent = []

    def scheduler():
        with offer.app_context():
            barrier.wait()
            sent.append(confirmations.send_queued())
            db.session.remove()

    threads = [threading.Thread(target=scheduler) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(sent) == 12
    assert sorted(recipients(smtp)) == sorted(f"p{number}@example.com" for number in range(12))


def test_the_queue_is_read_through_its_index(offer):
    post_optin(offer.test_client(), "ann@example.com")
    seen = []

    def remember(connection, cursor, statement, parameters, context, executemany):
        if "confirmation_due_at <=" in statement and statement.lstrip().startswith("SELECT"):
            seen.append((statement, parameters))

    with offer.app_context():
        event.listen(db.engine, "before_cursor_execute", remember)
        try:
            confirmations.send_queued()
        finally:
            event.remove(db.engine, "before_cursor_execute", remember)
        [(statement, parameters)] = seen
        connection = db.session.connection()
        if POSTGRES_URL:
            connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = connection.exec_driver_sql("EXPLAIN " + statement, parameters).all()
        else:
            plan = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement,
                                              parameters).all()
        db.session.rollback()
    assert "ix_leads_confirmation_due" in " ".join(str(row) for row in plan)


def test_confirmations_count_against_the_rate_cap_and_the_rest_waits(make_app, smtp, clock):
    app = make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port,
                   SEND_RATE_PER_MINUTE=2)
    create_page(app, slug="offer", double_opt_in=True)
    client = app.test_client()
    for name in ("a", "b", "c"):
        post_optin(client, f"{name}@example.com")
    assert send_confirmations(app) == 2
    assert send_confirmations(app) == 0
    clock.advance(seconds=61)
    assert send_confirmations(app) == 1
    assert len(smtp.messages) == 3


def test_one_leads_unexpected_error_never_stops_the_queue(offer, smtp, monkeypatch, caplog):
    client = offer.test_client()
    for name in ("ann", "bob", "cy"):
        post_optin(client, f"{name}@example.com")
    real = rendering.confirmation_message

    def breaks_for_bob(lead, page, url):
        if lead.email == "bob@example.com":
            raise RuntimeError("template exploded")
        return real(lead, page, url)

    monkeypatch.setattr(rendering, "confirmation_message", breaks_for_bob)
    with caplog.at_level(logging.ERROR, logger="capture.leads.confirmations"):
        assert send_confirmations(offer) == 2
    assert sorted(recipients(smtp)) == ["ann@example.com", "cy@example.com"]
    assert "template exploded" in caplog.text
    bob = lead_of(offer, "bob@example.com")
    assert bob.confirmation_error == "unexpected error: RuntimeError: template exploded"
    assert bob.confirmation_sent_at is None and bob.confirmation_due_at > bob.created_at
    assert events_of(offer, "bob@example.com", "confirmation_failed") == [
        {"error": "unexpected error: RuntimeError: template exploded"}]


def test_a_mail_server_failure_ends_the_run_and_waits_before_asking_again(
        make_app, smtp, clock):
    app = make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port)
    create_page(app, slug="offer", double_opt_in=True)
    client = app.test_client()
    for name in ("a", "b", "c"):
        post_optin(client, f"{name}@example.com")
    smtp.mail_reply = "530 5.7.0 Authentication required"

    assert send_confirmations(app) == 0
    assert smtp.attempts == 1  # the others would fail the same way
    assert send_confirmations(app) == 0
    assert smtp.attempts == 1  # not asked again every few seconds
    smtp.mail_reply = None
    clock.advance(seconds=confirmations.RETRY_MIN_SECONDS)
    assert send_confirmations(app) == 3


# --- 15.16: a failing mail server is visible -------------------------------------------

def test_a_refused_connection_shows_on_the_overview_and_the_lead_page(make_app, smtp, clock):
    app = make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=closed_port(),
                   POSTAL_ADDRESS="1 Main St")
    create_page(app, slug="offer", double_opt_in=True)
    owner = owner_client(app)
    post_optin(app.test_client(), "ann@example.com")
    lead_id = lead_of(app, "ann@example.com").id
    page = owner.get(f"/admin/leads/{lead_id}").get_data(as_text=True)
    assert "Confirmation email queued, not sent yet." in page

    send_confirmations(app)

    html = owner.get("/admin/").get_data(as_text=True)
    found = banners(html)
    assert list(found) == ["smtp_failing"]
    assert found["smtp_failing"].startswith("Emails are not going out")
    assert "SMTP connection" in found["smtp_failing"]
    assert "1 waiting email is retried automatically (confirmation email: 1)" in \
        found["smtp_failing"]
    assert 'href="/admin/leads?subscription=unconfirmed">See unconfirmed leads' in html
    page = owner.get(f"/admin/leads/{lead_id}").get_data(as_text=True)
    assert "Confirmation email waiting — last attempt failed:" in page
    assert "Connection refused" in page
    assert "Confirmation email not sent:" in page  # on the timeline

    app.config["SMTP_PORT"] = smtp.port  # the owner fixes the setting
    clock.advance(seconds=confirmations.RETRY_MIN_SECONDS)
    assert send_confirmations(app) == 1
    assert banners(owner.get("/admin/").get_data(as_text=True)) == {}
    page = owner.get(f"/admin/leads/{lead_id}").get_data(as_text=True)
    assert "Confirmation email waiting" not in page
    assert "Confirmation email sent" in page


def test_a_mailbox_refused_for_good_is_not_retried_and_says_why(offer, smtp, clock):
    smtp.refuse.add("gone@example.com")
    post_optin(offer.test_client(), "gone@example.com")
    send_confirmations(offer)
    lead = lead_of(offer, "gone@example.com")
    assert lead.confirmation_due_at is None and "550" in lead.confirmation_error
    clock.advance(hours=2)
    send_confirmations(offer)
    assert smtp.attempts == 1
    owner = owner_client(offer)
    page = owner.get(f"/admin/leads/{lead.id}").get_data(as_text=True)
    assert "Confirmation email not sent — last attempt failed:" in page
    # A refused mailbox is the address's problem, not the server's.
    assert banners(owner.get("/admin/").get_data(as_text=True)) == {}


# --- `flask --app wsgi mail test` ------------------------------------------------------

@pytest.mark.parametrize("pipelining", [True, False])
def test_mail_test_sends_one_email_and_prints_the_servers_answer(smtp_app, smtp, pipelining):
    smtp.pipelining = pipelining
    result = smtp_app.test_cli_runner().invoke(args=["mail", "test", "Owner@Example.com"])

    assert result.exit_code == 0, result.output
    assert result.output == (f"Sent to owner@example.com through smtp 127.0.0.1:{smtp.port}: "
                             "250 Message accepted\n")
    [message] = smtp.to("owner@example.com")
    assert message["Subject"] == "Capture test email"
    assert "your mail settings work" in body_text(message)


def test_mail_test_against_a_closed_port_says_why_in_one_line(make_app):
    port = closed_port()
    app = make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=port)
    result = app.test_cli_runner().invoke(args=["mail", "test", "owner@example.com"])

    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert result.output.startswith(f"Error: not sent through smtp 127.0.0.1:{port}: "
                                    "SMTP connection:")
    assert "Connection refused" in result.output


def test_mail_test_shows_a_refusal_of_the_server(smtp_app, smtp):
    smtp.mail_reply = "530 5.7.0 Authentication required"
    result = smtp_app.test_cli_runner().invoke(args=["mail", "test", "owner@example.com"])
    assert result.exit_code == 1
    assert "530" in result.output and "Authentication required" in result.output


def test_mail_test_with_the_outbox_says_where_it_wrote(app, outbox):
    result = app.test_cli_runner().invoke(args=["mail", "test", "owner@example.com"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Sent to owner@example.com through outbox: written to ")
    assert len(outbox.to("owner@example.com")) == 1


def test_mail_test_refuses_a_bad_address_in_one_line(app):
    result = app.test_cli_runner().invoke(args=["mail", "test", "not-an-address"])
    assert result.exit_code == 1
    assert result.output == ("Error: 'not-an-address' is not an email address: An email "
                             "address needs an @, like name@example.com.\n")
    assert count(app, Lead) == 0
