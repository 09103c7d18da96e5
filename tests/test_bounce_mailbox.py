"""The bounce mailbox read from a real IMAP server (dovecot on loopback): DSNs and ARF
reports acted upon and moved to Processed, everything else left in place, a second
read changing nothing, and a mailbox that fails costing one log line."""

import logging
import socket
import ssl
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from capture import scheduler
from capture.db import db
from capture.mail import mailbox, verp
from capture.mail.verp import Origin
from capture.models import Event, Lead, Suppression, WebhookDelivery
from tests import bounce_samples as samples
from tests.conftest import banners, owner_client
from tests.dovecot import Dovecot
from tests.factories import add_delivery, add_lead, add_webhook

BOUNCE_ADDRESS = "bounces@mail.example.com"


@pytest.fixture(scope="module")
def dovecot():
    server = Dovecot()
    yield server
    server.stop()


@pytest.fixture
def mailbox_folder(dovecot, request):
    """A folder of its own on the shared server for each test (and its Processed)."""
    name = f"T{abs(hash(request.node.name)) % 10**8}"
    connection = dovecot.client()
    connection.create(name)
    connection.logout()
    return name


@pytest.fixture
def bounce_app(make_app, dovecot, mailbox_folder):
    return make_app(BOUNCE_ADDRESS=BOUNCE_ADDRESS, BOUNCE_MAILBOX=dovecot.url(mailbox_folder))


def _verp(app, delivery_id: int) -> str:
    with app.app_context():
        return verp.envelope_sender(Origin("delivery", delivery_id))


def _events(app) -> list[tuple[str, int | None, int]]:
    with app.app_context():
        return sorted(db.session.execute(select(Event.kind, Event.delivery_id, Event.lead_id)
                                         .where(Event.kind.in_(("bounce", "soft_bounce",
                                                                "complaint")))).all())


def _fetch(app):
    with app.app_context():
        return mailbox.fetch()


def test_reports_are_acted_upon_and_moved_the_rest_left(bounce_app, dovecot, mailbox_folder):
    app = bounce_app
    ann, bob, cy = (add_lead(app, email=f"{name}@example.com", name=name)
                    for name in ("ann", "bob", "cy"))
    hard, complained, soft = (add_delivery(app, lead, step=f"0{i}-x")
                              for i, lead in enumerate((ann, bob, cy), 1))
    add_webhook(app, "https://hooks.example.com/in", events=["lead.complained"])
    forged = _verp(app, hard).replace("+", "+a", 1)
    dovecot.append(
        samples.dsn(_verp(app, hard), subject="hard"),
        samples.arf(_verp(app, complained), subject="complaint"),
        samples.dsn(_verp(app, soft), status="4.2.2", action="delayed", subject="soft",
                    header="Delivered-To"),
        samples.dsn(forged, subject="forged"),
        samples.dsn(_verp(app, 9999), subject="unknown delivery"),
        samples.out_of_office(_verp(app, hard)),
        samples.plain(BOUNCE_ADDRESS),
        folder=mailbox_folder)

    done = _fetch(app)

    assert done.handled == {"hard bounce": 1, "complaint": 1, "soft bounce": 1}
    assert sum(done.left.values()) == 4
    with app.app_context():
        states = {lead.email: lead.subscription for lead in db.session.scalars(select(Lead))}
        suppressed = set(db.session.scalars(select(Suppression.email)))
        hooks = [row.event for row in db.session.scalars(select(WebhookDelivery))]
    assert states == {"ann@example.com": "bounced", "bob@example.com": "unsubscribed",
                      "cy@example.com": "subscribed"}
    assert suppressed == {"ann@example.com", "bob@example.com"}
    assert hooks == ["lead.complained"]
    assert _events(app) == sorted([("bounce", hard, ann), ("complaint", complained, bob),
                                   ("soft_bounce", soft, cy)])
    assert sorted(dovecot.subjects("Processed")) >= ["complaint", "hard", "soft"]
    assert sorted(dovecot.subjects(mailbox_folder)) == sorted(
        ["forged", "unknown delivery", "Out of office: Welcome", "Question"])
    # Left untouched: not even marked as read.
    assert not any("\\Seen" in flags for flags in dovecot.flags(mailbox_folder))

    # Read again: nothing new. The same reports delivered twice change nothing either.
    before = _events(app)
    again = _fetch(app)
    assert again.handled == {} and again.left == {}
    dovecot.append(samples.dsn(_verp(app, hard), subject="hard again"),
                   samples.arf(_verp(app, complained), subject="complaint again"),
                   folder=mailbox_folder)
    # As after a restart that lost what was looked at: everything is read again.
    Path(app.instance_path, "bounce_mailbox.json").unlink()
    third = _fetch(app)
    assert third.handled == {"hard bounce": 1, "complaint": 1}
    assert _events(app) == before
    with app.app_context():
        assert db.session.scalar(select(func.count(WebhookDelivery.id))) == 1


def test_the_command_prints_what_it_did(bounce_app, dovecot, mailbox_folder):
    lead = add_lead(bounce_app)
    delivery = add_delivery(bounce_app, lead)
    dovecot.append(samples.dsn(_verp(bounce_app, delivery)), samples.plain(BOUNCE_ADDRESS),
                   folder=mailbox_folder)
    result = bounce_app.test_cli_runner().invoke(args=["bounces", "fetch"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == ("bounce mailbox: handled 1 hard bounce; "
                                     "left in place 1 unrecognised")


def test_a_refused_login_is_one_log_line_and_the_command_fails(make_app, dovecot, caplog):
    app = make_app(BOUNCE_ADDRESS=BOUNCE_ADDRESS,
                   BOUNCE_MAILBOX=dovecot.url(password="wrong"))
    with caplog.at_level(logging.WARNING, logger="capture.scheduler"):
        scheduler.run_bounces(app)
    assert [record.getMessage()[:26] for record in caplog.records] == [
        "bounce mailbox not read: 1"]
    result = app.test_cli_runner().invoke(args=["bounces", "fetch"])
    assert result.exit_code == 1 and "bounce mailbox not read" in result.output


def test_the_overview_shows_a_mailbox_that_cannot_be_read_until_it_can(make_app, dovecot,
                                                                        mailbox_folder):
    app = make_app(BOUNCE_ADDRESS=BOUNCE_ADDRESS,
                   BOUNCE_MAILBOX=dovecot.url(mailbox_folder, password="wrong"))
    client = owner_client(app)
    assert "bounce_mailbox" not in banners(client.get("/admin/").get_data(as_text=True))
    scheduler.run_bounces(app)
    shown = banners(client.get("/admin/").get_data(as_text=True))["bounce_mailbox"]
    assert shown.startswith("The bounce mailbox could not be read at ")
    assert "AUTHENTICATIONFAILED" in shown and "Check CAPTURE_BOUNCE_MAILBOX" in shown
    assert "wrong" not in shown  # never the password

    app.config["BOUNCE_MAILBOX"] = dovecot.url(mailbox_folder)
    scheduler.run_bounces(app)
    assert "bounce_mailbox" not in banners(client.get("/admin/").get_data(as_text=True))


def test_a_second_reader_reads_nothing_while_another_process_reads(bounce_app, dovecot,
                                                                    mailbox_folder):
    lead = add_lead(bounce_app)
    delivery = add_delivery(bounce_app, lead)
    dovecot.append(samples.dsn(_verp(bounce_app, delivery), subject="hard"),
                   folder=mailbox_folder)
    with bounce_app.app_context():
        where = mailbox.address(bounce_app.config["BOUNCE_MAILBOX"])
        with mailbox._one_reader(where) as alone:  # as another scheduler would
            assert alone
            assert _fetch(bounce_app).busy
            assert dovecot.subjects(mailbox_folder) == ["hard"]
    assert _fetch(bounce_app).handled == {"hard bounce": 1}
    result = bounce_app.test_cli_runner().invoke(args=["bounces", "fetch"])
    assert result.output.startswith("bounce mailbox: handled none")


def _bad_server(behaviour: str):
    """A loopback server that drops each connection, or greets and then says nothing."""
    listener = socket.create_server(("127.0.0.1", 0))
    held = []

    def serve():
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if behaviour == "drop":
                client.close()
            else:
                held.append(client)  # never answers

    threading.Thread(target=serve, daemon=True).start()
    return listener


@pytest.mark.parametrize("behaviour", ["drop", "slow"])
def test_a_mailbox_that_drops_or_stalls_is_one_log_line(make_app, caplog, behaviour):
    listener = _bad_server(behaviour)
    port = listener.getsockname()[1]
    app = make_app(BOUNCE_ADDRESS=BOUNCE_ADDRESS, BOUNCE_MAILBOX_TIMEOUT=1,
                   BOUNCE_MAILBOX=f"imap://u:p@127.0.0.1:{port}/INBOX")
    try:
        with caplog.at_level(logging.INFO, logger="capture"):
            scheduler.run_bounces(app)
    finally:
        listener.close()
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("bounce mailbox not read: 127.0.0.1")


def test_without_move_a_handled_message_is_copied_and_expunged_alone(
        bounce_app, dovecot, mailbox_folder, monkeypatch):
    connect = mailbox._connect

    def without_move(where):
        connection = connect(where)
        connection.capabilities = tuple(c for c in connection.capabilities if c != "MOVE")
        return connection

    monkeypatch.setattr(mailbox, "_connect", without_move)
    lead = add_lead(bounce_app)
    delivery = add_delivery(bounce_app, lead)
    # Another client's message flagged \Deleted: ours must not expunge it.
    dovecot.append(samples.plain(BOUNCE_ADDRESS), folder=mailbox_folder)
    connection = dovecot.client()
    connection.select(mailbox_folder)
    connection.uid("STORE", "1", "+FLAGS.SILENT", r"(\Deleted)")
    connection.logout()
    dovecot.append(samples.dsn(_verp(bounce_app, delivery), subject="copied"),
                   folder=mailbox_folder)
    assert _fetch(bounce_app).handled == {"hard bounce": 1}
    assert "copied" in dovecot.subjects("Processed")
    assert dovecot.subjects(mailbox_folder) == ["Question"]


def test_imap_upgrades_with_starttls(make_app, monkeypatch):
    server = Dovecot(tls=True)
    try:
        default = ssl.create_default_context
        trusting = default(cafile=str(server.certificate))
        monkeypatch.setattr(mailbox.ssl, "create_default_context", lambda: trusting)
        app = make_app(BOUNCE_ADDRESS=BOUNCE_ADDRESS, BOUNCE_MAILBOX=server.url())
        lead = add_lead(app)
        delivery = add_delivery(app, lead)
        server.append(samples.dsn(_verp(app, delivery)))
        assert _fetch(app).handled == {"hard bounce": 1}
        assert "TLS" in server.log()
        # Without trusting the certificate, nothing is read.
        monkeypatch.setattr(mailbox.ssl, "create_default_context", default)
        with pytest.raises(mailbox.MailboxError, match="CERTIFICATE_VERIFY_FAILED"):
            _fetch(app)
    finally:
        server.stop()


def test_the_scheduler_reads_the_mailbox_only_when_one_is_set(make_app):
    class Recorder:
        def __init__(self):
            self.jobs = {}

        def add_job(self, func, trigger, **options):
            self.jobs[options["id"]] = options["seconds"]

    without, with_mailbox = Recorder(), Recorder()
    scheduler._add_jobs(without, make_app())
    scheduler._add_jobs(with_mailbox, make_app(BOUNCE_MAILBOX="imaps://u:p@imap.example.com/",
                                               BOUNCE_INTERVAL_SECONDS=120))
    assert scheduler.BOUNCE_JOB_ID not in without.jobs
    assert with_mailbox.jobs[scheduler.BOUNCE_JOB_ID] == 120
