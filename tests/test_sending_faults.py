"""The sending engine when things go wrong: crashes, server trouble, the window."""

import socket
import threading
import time
from contextlib import contextmanager

import pytest
from sqlalchemy import select

from capture.mail import backends as mail
from capture.mail import compose as rendering
from capture.mail import actions, work_queue
from capture.db import db
from capture.models import Delivery, Enrollment, Lead, Suppression
from tests.conftest import count, create_page, optin
from tests.factories import (
    add_lead,
    deliveries,
    sequence_folder,
    subjects,
    three_steps,
    tick,
    write_step,
)

# The timeout once a fault has passed: the tests set 1 s to meet a stall quickly, and
# a busy machine can pause the test process that long, which would fail a healthy
# tick and leave a lead a step behind the test's count.
HEALTHY_TIMEOUT = 10


def states(app):
    with app.app_context():
        return sorted(db.session.scalars(select(Enrollment.state)).all())


def test_one_failing_item_does_not_strand_the_rest_of_the_batch(smtp_app, smtp, clock,
                                                               monkeypatch):
    three_steps(smtp_app)
    for number in range(4):
        add_lead(smtp_app, email=f"l{number}@example.com", name=f"L{number}")
    original = rendering.step_message

    def broken_for_one(sequence, step, lead, *args, **kwargs):
        if lead.email == "l1@example.com":
            raise RuntimeError("a template bug")
        return original(sequence, step, lead, *args, **kwargs)

    monkeypatch.setattr(rendering, "step_message", broken_for_one)
    summary = tick(smtp_app)
    assert (summary.sent, summary.failed) == (3, 1)
    assert sorted(m["To"].addresses[0].addr_spec for m in smtp.messages) == [
        "l0@example.com", "l2@example.com", "l3@example.com"]
    # That one email failed with its reason (the owner can resend it); nothing waits.
    with smtp_app.app_context():
        failed = db.session.execute(select(Lead.email, Delivery.error).join(Delivery.lead)
                                    .where(Delivery.status == "failed")).all()
        assert [tuple(row) for row in failed] == [
            ("l1@example.com", "RuntimeError: a template bug")]
        assert not db.session.scalars(select(Delivery.id).where(
            Delivery.status.in_(("claimed", "sending")))).all()


def test_claims_of_a_killed_tick_are_given_back_and_sent_once(smtp_app, smtp, clock):
    three_steps(smtp_app)
    for number in range(3):
        add_lead(smtp_app, email=f"k{number}@example.com")
    with smtp_app.app_context():
        # A tick claimed these and was killed before it sent anything.
        assert len(work_queue.claim_enrollments(clock.now, 10)) == 3
    assert tick(smtp_app).sent == 0
    clock.advance(minutes=11)
    assert tick(smtp_app).sent == 3
    clock.advance(minutes=11)
    tick(smtp_app)
    assert len(smtp.messages) == 3


def test_policy_refusal_of_every_recipient_bounces_nobody_and_stops_the_batch(
    smtp_app, smtp, clock
):
    three_steps(smtp_app)
    for number in range(3):
        add_lead(smtp_app, email=f"r{number}@example.com")
    smtp.rcpt_reply = "554 5.7.1 Relay access denied"
    summary = tick(smtp_app)
    assert summary.bounced == 0 and summary.sent == 0
    assert "relay" in summary.line().lower()
    assert smtp.attempts == 1  # the first refusal stops the batch
    with smtp_app.app_context():
        assert db.session.scalar(select(Suppression.id)) is None
        assert {lead.subscription for lead in db.session.scalars(select(Lead))} == {"subscribed"}
    smtp.rcpt_reply = None
    clock.advance(minutes=5)
    tick(smtp_app)
    assert len(smtp.messages) == 3


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-by-one"])
def test_sender_refused_is_retried_not_failed(smtp_app, smtp, clock, pipelining):
    smtp.pipelining = pipelining
    three_steps(smtp_app)
    lead_id = add_lead(smtp_app)
    smtp.mail_reply = "530 5.7.0 Authentication required"
    assert tick(smtp_app).retried == 1
    smtp.mail_reply = None
    clock.advance(minutes=5)
    tick(smtp_app)
    assert deliveries(smtp_app, lead_id) == [("welcome", "sent")]


def test_no_database_transaction_is_open_while_talking_to_smtp(smtp_app, smtp, clock,
                                                              monkeypatch):
    three_steps(smtp_app)
    add_lead(smtp_app)
    seen = []
    original = mail.SmtpBackend.send

    def watching(self, message, then=None):
        seen.append(db.session().in_transaction())
        return original(self, message, then)

    monkeypatch.setattr(mail.SmtpBackend, "send", watching)
    tick(smtp_app)
    assert seen == [False]
    with smtp_app.app_context():
        delivery = db.session.scalar(select(Delivery))
        assert delivery.status == "sent"


def test_overdue_step_waits_for_the_send_window(smtp_app, smtp, clock):
    folder = three_steps(smtp_app)
    (folder / "sequence.yml").write_text('send_window: "08:00-20:00"\n')
    add_lead(smtp_app)
    tick(smtp_app)  # 10:00: welcome goes out
    clock.advance(days=2, hours=13)  # 23:00, two days later: tips is overdue
    assert tick(smtp_app).sent == 0
    clock.advance(hours=8, minutes=59)  # 07:59
    assert tick(smtp_app).sent == 0
    clock.advance(minutes=1)  # 08:00
    assert tick(smtp_app).sent == 1
    assert subjects(smtp) == ["Welcome, Ann", "Three tips"]


def test_broken_settings_file_holds_the_sequence_until_fixed(smtp_app, smtp, clock):
    folder = three_steps(smtp_app)
    (folder / "sequence.yml").write_text("stop_on: [upgrade\nfrom: x\n")
    add_lead(smtp_app)
    assert tick(smtp_app).held == 1
    assert smtp.messages == []
    (folder / "sequence.yml").write_text("stop_on: [upgrade]\n")
    tick(smtp_app)
    assert subjects(smtp) == ["Welcome, Ann"]


def test_lead_typed_url_is_not_made_a_tracked_link(smtp_app, smtp, clock):
    write_step(sequence_folder(smtp_app), "01-hi.md", "Hi",
               "Hello {{ lead.name }}, see https://example.com/guide.", delay=0)
    add_lead(smtp_app, email="p@example.com", name="https://phish.example/login")
    tick(smtp_app)
    text = smtp.messages[0].get_body(("plain",)).get_content()
    assert "Hello https://phish.example/login, see http://127.0.0.1:5000/c/" in text
    assert text.count("/c/") == 1
    with smtp_app.app_context():
        from capture.models import Link

        assert db.session.scalars(select(Link.url)).all() == ["https://example.com/guide"]


def test_steps_are_ordered_by_the_number_in_their_name(smtp_app, smtp, clock):
    folder = sequence_folder(smtp_app)
    write_step(folder, "1-first.md", "First", "One.", delay=0)
    write_step(folder, "2-second.md", "Second", "Two.", delay=0)
    write_step(folder, "10-tenth.md", "Tenth", "Ten.", delay=0)
    add_lead(smtp_app)
    for _ in range(3):
        tick(smtp_app)
    assert subjects(smtp) == ["First", "Second", "Tenth"]


def test_unsubscribe_while_a_retry_is_pending_cancels_it(smtp_app, smtp, clock):
    three_steps(smtp_app)
    lead_id = add_lead(smtp_app)
    smtp.data_replies = ["451 later"]
    tick(smtp_app)
    with smtp_app.app_context():
        from capture.leads import lifecycle as leads

        leads.unsubscribe(db.session.get(Lead, lead_id), source="test")
    clock.advance(hours=2)
    tick(smtp_app)
    assert smtp.messages == []
    assert deliveries(smtp_app, lead_id) == [("welcome", "failed")]
    assert states(smtp_app) == ["stopped"]


# --- a slow or unwell mail server -----------------------------------------------------

@contextmanager
def raw_smtp_server(greeting: bytes | None):
    """A real TCP server on loopback that sends `greeting` (None: nothing at all, it
    stalls) to each connection and then holds it open without a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held = []

    def serve():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            held.append(connection)
            if greeting is not None:
                connection.sendall(greeting)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        for connection in held:
            connection.close()


def messages_per_recipient(smtp) -> dict[str, int]:
    found: dict[str, int] = {}
    for message in smtp.messages:
        address = message["To"].addresses[0].addr_spec
        found[address] = found.get(address, 0) + 1
    return found


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


@pytest.mark.parametrize("greeting", [None, b"421 4.3.2 Service not available\r\n"],
                         ids=["silent", "421"])
def test_server_that_will_not_greet_is_retried_and_each_email_sent_once(
    smtp_app, smtp, clock, greeting
):
    three_steps(smtp_app)
    for number in range(3):
        add_lead(smtp_app, email=f"g{number}@example.com")
    smtp_app.config["SMTP_TIMEOUT"] = 1
    with raw_smtp_server(greeting) as port:
        smtp_app.config["SMTP_PORT"] = port
        summary = tick(smtp_app)
    assert summary.sent == 0 and summary.retried == 1  # the first try stops the batch
    assert summary.errors
    with smtp_app.app_context():
        assert db.session.scalars(select(Delivery.status)).all() == ["retry"]
    smtp_app.config.update(SMTP_PORT=smtp.port, SMTP_TIMEOUT=HEALTHY_TIMEOUT)
    clock.advance(minutes=5)
    tick(smtp_app)
    assert messages_per_recipient(smtp) == {f"g{n}@example.com": 1 for n in range(3)}
    assert sorted(status for _, status in deliveries(smtp_app)) == ["sent"] * 3


@pytest.mark.parametrize("command", ["MAIL", "RCPT"])
def test_server_stalling_before_the_message_is_retried_and_sent_once(
    smtp_app, smtp, clock, command
):
    three_steps(smtp_app)
    lead_id = add_lead(smtp_app)
    smtp_app.config["SMTP_TIMEOUT"] = 1
    smtp.stalls[command] = 2
    assert tick(smtp_app).retried == 1
    assert deliveries(smtp_app, lead_id) == [("welcome", "retry")]
    smtp.stalls.clear()
    smtp_app.config["SMTP_TIMEOUT"] = HEALTHY_TIMEOUT
    time.sleep(1.5)  # the stalled command ends on the server's side
    clock.advance(minutes=5)
    tick(smtp_app)
    assert deliveries(smtp_app, lead_id) == [("welcome", "sent")]
    assert subjects(smtp) == ["Welcome, Ann"]


def test_no_answer_after_the_whole_message_leaves_it_unknown_never_resent(
    smtp_app, smtp, clock
):
    three_steps(smtp_app)
    first = add_lead(smtp_app, email="first@example.com", name="First")
    add_lead(smtp_app, email="second@example.com", name="Second")
    smtp_app.config["SMTP_TIMEOUT"] = 1
    smtp.stalls["DATA"] = 2  # longer than the client waits; then it is accepted
    summary = tick(smtp_app)
    assert summary.unknown == 1 and summary.sent == 0
    assert "stopped early" in summary.line()  # the stalling server gets no more now
    assert deliveries(smtp_app, first) == [("welcome", "unknown")]
    wait_for(lambda: len(smtp.messages) == 1)  # it did arrive after all
    smtp.stalls.clear()
    smtp_app.config["SMTP_TIMEOUT"] = HEALTHY_TIMEOUT
    for _ in range(4):
        clock.advance(days=2)
        tick(smtp_app)
    # Never sent twice; the lead goes on with the steps after it; the rest go on.
    assert [str(m["Subject"]) for m in smtp.to("first@example.com")] == [
        "Welcome, First", "Three tips", "An offer"]
    assert len(smtp.to("second@example.com")) == 3
    assert deliveries(smtp_app, first) == [
        ("welcome", "unknown"), ("tips", "sent"), ("offer", "sent")]
    with smtp_app.app_context():
        shown, total = actions.needing_owner("unknown")
        assert total == 1 and shown[0].lead.email == "first@example.com"


def test_421_after_the_message_is_retried_and_sent_once(smtp_app, smtp, clock):
    three_steps(smtp_app)
    lead_id = add_lead(smtp_app)
    smtp.data_replies = ["421 4.3.2 Service shutting down"]
    assert tick(smtp_app).retried == 1
    clock.advance(minutes=5)
    tick(smtp_app)
    assert deliveries(smtp_app, lead_id) == [("welcome", "sent")]
    assert subjects(smtp) == ["Welcome, Ann"]


class Credentials:
    """An aiosmtpd authenticator that accepts one password (the server answers 535
    to any other)."""

    def __init__(self, password: str) -> None:
        self.password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = isinstance(auth_data, LoginPassword) and auth_data.password == self.password
        return AuthResult(success=ok, handled=False)


def test_535_authentication_refused_waits_and_retries_nothing_lost(make_app, smtp, tmp_path,
                                                                  clock):
    from aiosmtpd.controller import Controller

    from tests.conftest import SmtpCollector, _free_port

    handler, credentials = SmtpCollector(), Credentials("new password")
    server = Controller(handler, hostname="127.0.0.1", port=_free_port(),
                        authenticator=credentials, auth_require_tls=False)
    server.start()
    try:
        app = make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=server.port,
                       SMTP_USERNAME="capture", SMTP_PASSWORD="old password",
                       SEQUENCES_DIR=str(tmp_path / "seq"))
        three_steps(app)
        for number in range(3):
            add_lead(app, email=f"a{number}@example.com")
        summary = tick(app)
        assert summary.retried == 1 and summary.sent == 0
        assert "535" in summary.line()
        assert handler.messages == []
        app.config["SMTP_PASSWORD"] = "new password"  # the owner fixes the setting
        clock.advance(minutes=5)
        tick(app)
        assert messages_per_recipient(handler) == {f"a{n}@example.com": 1 for n in range(3)}
        clock.advance(minutes=30)
        tick(app)
        assert len(handler.messages) == 3
    finally:
        server.stop()


def test_confirmation_not_sent_for_a_mail_server_fault_goes_out_on_a_repeat_opt_in(
    smtp_app, smtp
):
    create_page(smtp_app, slug="offer")
    client = smtp_app.test_client()
    smtp.mail_reply = "421 4.3.2 try later"
    assert optin(client, "offer", email="later@example.com").status_code == 303
    assert count(smtp_app, Lead) == 1 and smtp.messages == []
    smtp.mail_reply = None
    assert optin(client, "offer", email="later@example.com").status_code == 303
    assert len(smtp.to("later@example.com")) == 1


@pytest.mark.parametrize("change", [
    "UPDATE leads SET subscription = 'unsubscribed'",
    "UPDATE enrollments SET state = 'stopped', stop_reason = 'left by the lead'",
])
def test_an_email_rendered_before_the_lead_unsubscribed_or_left_is_not_sent(
        smtp_app, smtp, clock, monkeypatch, change):
    from sqlalchemy import text

    from capture.mail import handover

    write_step(sequence_folder(smtp_app), "01-hi.md", "Hi", "Hello.", delay=0)
    add_lead(smtp_app)
    rendered = handover.render_all

    def render_then_change(*args, **kwargs):
        # The lead acts between its chunk's rendering and the hand-over.
        emails = rendered(*args, **kwargs)
        with db.engine.begin() as connection:
            connection.execute(text(change))
        return emails

    monkeypatch.setattr(handover, "render_all", render_then_change)
    tick(smtp_app)
    assert smtp.messages == []
    with smtp_app.app_context():
        assert db.session.scalar(select(Delivery.status)) == "claimed"
