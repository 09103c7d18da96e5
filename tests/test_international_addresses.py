"""International addresses (issue 15.1): stored and shown in Unicode, sent in ASCII
(IDNA) form, with SMTPUTF8 where the local part needs it; and one email that fails
in an unexpected way never stops the rest of a batch."""

import email
import email.policy

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from capture.mail import backends as mail
from capture.mail import outbox
from capture.mail import compose as rendering
from capture.db import db
from capture.models import Delivery, Enrollment, Lead, Page, Upgrade
from tests.conftest import (SmtpCollector, _free_port, count, create_page, lead_of, optin,
                            send_confirmations)
from tests.factories import add_lead, three_steps, tick

ASCII_FORM = "max@xn--mnchen-3ya.de"
UNICODE_FORM = "max@münchen.de"


class EnvelopeCollector(SmtpCollector):
    """Also keeps each message's envelope as the server saw it."""

    def __init__(self) -> None:
        super().__init__()
        self.envelopes = []
        self.raw = []  # the bytes of each message

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos),
                               bool(envelope.smtp_utf8)))
        self.raw.append(envelope.content)
        return await super().handle_DATA(server, session, envelope)


def _server(smtputf8: bool):
    handler = EnvelopeCollector()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port(),
                            enable_SMTPUTF8=smtputf8)
    controller.start()
    handler.port = controller.port
    return handler, controller


@pytest.fixture(params=[False, True], ids=["plain-server", "smtputf8-server"])
def server(request):
    handler, controller = _server(request.param)
    yield handler
    controller.stop()


@pytest.fixture
def plain_server():
    handler, controller = _server(False)
    yield handler
    controller.stop()


@pytest.fixture
def utf8_server():
    handler, controller = _server(True)
    yield handler
    controller.stop()


def _smtp_app(make_app, handler, tmp_path, **settings):
    folder = tmp_path / "sequences"
    folder.mkdir(exist_ok=True)
    return make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=handler.port,
                    SEQUENCES_DIR=str(folder), POSTAL_ADDRESS="1 Main St, Springfield",
                    **settings)


def _confirmation_sent(app, address: str) -> None:
    """Run the confirmation queue, as the scheduler's fast lane does (the request
    only queues the email)."""
    send_confirmations(app)


# --- the opt-in -----------------------------------------------------------------------

@pytest.mark.parametrize("typed", [ASCII_FORM, UNICODE_FORM])
def test_idn_address_with_a_name_opts_in_and_gets_its_confirmation(app, client, outbox,
                                                                   demo_page, typed):
    response = optin(client, email=typed, name="Max Müller", consent="y")
    assert response.status_code == 303
    lead = lead_of(app, UNICODE_FORM)
    assert lead is not None and lead.name == "Max Müller"
    _confirmation_sent(app, UNICODE_FORM)
    [message] = outbox.messages()
    [to] = message["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Max Müller", ASCII_FORM)
    raw = next(outbox.folder.glob("*.eml")).read_bytes()
    assert b"To: =?utf-8?" in raw and b"<max@xn--mnchen-3ya.de>" in raw
    assert "/confirm/" in message.get_body(preferencelist=("plain",)).get_content()


def test_both_forms_of_an_idn_address_are_one_lead(app, client, demo_page):
    assert optin(client, email=UNICODE_FORM, consent="y").status_code == 303
    assert optin(client, email=ASCII_FORM.upper(), consent="y").status_code == 303
    assert count(app, Lead) == 1
    assert lead_of(app, UNICODE_FORM) is not None


def test_idn_confirmation_goes_over_smtp_in_ascii_form(make_app, server, tmp_path):
    app = _smtp_app(make_app, server, tmp_path)
    slug = create_page(app)
    client = app.test_client()
    assert optin(client, slug, email=ASCII_FORM).status_code == 303
    _confirmation_sent(app, UNICODE_FORM)
    [(_, recipients, utf8)] = server.envelopes
    assert recipients == [ASCII_FORM] and not utf8
    assert server.messages[0]["To"].addresses[0].addr_spec == ASCII_FORM


def test_confirmation_message_to_a_named_idn_lead_reads_back(app):
    with app.app_context():
        page = db.session.get(Page, 1) or Page(slug="p", title="Guide", fields=[], rules={})
        lead = Lead(email=UNICODE_FORM, name="Max Müller", public_ref="ref")
        message = rendering.confirmation_message(lead, page, "https://example.com/confirm/x")
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert parsed["To"].addresses[0].addr_spec == ASCII_FORM
    assert parsed["To"].addresses[0].display_name == "Max Müller"
    assert message.as_bytes().isascii()


def test_owner_finds_an_idn_lead_by_either_form(app, client, runner, demo_page):
    assert optin(client, email=UNICODE_FORM, consent="y").status_code == 303
    result = runner.invoke(args=["leads", "upgrade", ASCII_FORM.upper(), "10"])
    assert result.exit_code == 0, result.output
    assert count(app, Upgrade) == 1


def test_non_ascii_local_part_is_refused_at_opt_in_with_one_sentence(app, client, demo_page):
    response = optin(client, email="müller@münchen.de", consent="y")
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    assert "letters before the @" in text
    assert count(app, Lead) == 0


def test_non_ascii_local_part_is_accepted_when_smtputf8_is_on(make_app, demo_page):
    app = make_app(SMTP_UTF8=True)
    with app.app_context():
        from capture.pages import demo

        demo.install()
    response = optin(app.test_client(), email="Müller@MÜNCHEN.de", consent="y")
    assert response.status_code == 303
    assert lead_of(app, "müller@münchen.de") is not None


def test_console_and_outbox_backends_write_an_smtputf8_address(make_app, capsys):
    app = make_app(MAIL_BACKEND="console")
    with app.app_context():
        lead = Lead(email="müller@münchen.de", name="", public_ref="ref")
        page = Page(slug="p", title="Guide", fields=[], rules={})
        mail.send(rendering.confirmation_message(lead, page, "https://example.com/c"))
    assert "To: müller@xn--mnchen-3ya.de" in capsys.readouterr().out
    app = make_app(MAIL_BACKEND="outbox")
    with app.app_context():
        lead = Lead(email="müller@münchen.de", name="Jörg", public_ref="ref")
        page = Page(slug="p", title="Guide", fields=[], rules={})
        mail.send(rendering.confirmation_message(lead, page, "https://example.com/c"))
        [shown] = outbox.read_outbox(outbox.outbox_names(), whole=True)
    assert shown.to == "Jörg <müller@xn--mnchen-3ya.de>"
    assert "https://example.com/c" in shown.text


# --- the scheduler --------------------------------------------------------------------

def test_sequence_email_to_idn_leads_goes_in_ascii_form(make_app, server, tmp_path, clock):
    app = _smtp_app(make_app, server, tmp_path)
    three_steps(app)
    add_lead(app, email=UNICODE_FORM, name="Max Müller")
    add_lead(app, email="bob@xn--bcher-kva.example", name="")
    summary = tick(app)
    assert summary.sent == 2, summary.line()
    assert sorted(recipients[0] for _, recipients, _ in server.envelopes) == [
        "bob@xn--bcher-kva.example", ASCII_FORM]


def test_smtputf8_local_part_is_delivered_when_the_server_offers_it(make_app, utf8_server,
                                                                    tmp_path, clock):
    app = _smtp_app(make_app, utf8_server, tmp_path, SMTP_UTF8=True)
    three_steps(app)
    add_lead(app, email="müller@münchen.de", name="Jörg Müller")
    assert tick(app).sent == 1
    [(_, recipients, utf8)] = utf8_server.envelopes
    assert recipients == ["müller@xn--mnchen-3ya.de"] and utf8
    # An SMTPUTF8 message has its address headers in UTF-8 (RFC 6532).
    message = email.message_from_string(utf8_server.raw[0].decode("utf-8"),
                                        policy=email.policy.default)
    [to] = message["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Jörg Müller", "müller@xn--mnchen-3ya.de")


def _tick_with_one_bad_lead(app, email: str) -> str:
    """Tick with the lead `email` between two plain ones: the plain ones are sent,
    that one fails, nothing is left claimed. Returns its delivery's error."""
    three_steps(app)
    add_lead(app, email="ann@example.com")
    bad = add_lead(app, email=email, name="Jörg")
    add_lead(app, email="bea@example.com")
    summary = tick(app)
    assert (summary.sent, summary.failed) == (2, 1), summary.line()
    with app.app_context():
        delivery = db.session.scalar(select(Delivery).where(Delivery.lead_id == bad))
        assert delivery.status == "failed"
        assert not db.session.scalars(select(Delivery.status).where(
            Delivery.status.in_(("claimed", "sending")))).all()
        assert "sending" not in db.session.scalars(select(Enrollment.state)).all()
        return delivery.error


def test_smtputf8_local_part_fails_alone_when_the_server_does_not_offer_it(
        make_app, plain_server, tmp_path, clock):
    app = _smtp_app(make_app, plain_server, tmp_path, SMTP_UTF8=True)
    error = _tick_with_one_bad_lead(app, "müller@münchen.de")
    assert "does not offer SMTPUTF8" in error
    assert sorted(r[0] for _, r, _ in plain_server.envelopes) == [
        "ann@example.com", "bea@example.com"]


def test_lead_whose_address_cannot_be_encoded_fails_alone(make_app, plain_server, tmp_path,
                                                          clock):
    app = _smtp_app(make_app, plain_server, tmp_path)
    # Stored by an older version, before addresses were checked as strictly.
    error = _tick_with_one_bad_lead(app, "max@bad..münchen.de")
    assert error.startswith("DomainError: ")


def _backend_fails_for(monkeypatch, address: str) -> None:
    """Make the SMTP backend raise something other than a MailError for one address."""
    original = mail.SmtpBackend.send

    def send(self, message, then=None):
        if message.recipient == address:
            raise RuntimeError("a bug in the backend")
        return original(self, message, then)

    monkeypatch.setattr(mail.SmtpBackend, "send", send)


def test_unexpected_backend_error_fails_that_email_only(make_app, plain_server, tmp_path,
                                                        clock, monkeypatch):
    app = _smtp_app(make_app, plain_server, tmp_path)
    _backend_fails_for(monkeypatch, "bob@example.com")
    assert _tick_with_one_bad_lead(app, "bob@example.com") == "RuntimeError: a bug in the backend"


def test_unexpected_error_on_a_retry_fails_it_and_the_tick_goes_on(make_app, plain_server,
                                                                   tmp_path, clock,
                                                                   monkeypatch):
    app = _smtp_app(make_app, plain_server, tmp_path)
    three_steps(app)
    for name in ("ann", "bob"):
        add_lead(app, email=f"{name}@example.com")
    plain_server.data_replies = ["451 try later", "451 try later"]
    assert tick(app).retried == 2
    _backend_fails_for(monkeypatch, "ann@example.com")
    clock.advance(hours=1)
    summary = tick(app)
    assert (summary.sent, summary.failed) == (1, 1), summary.line()
    with app.app_context():
        assert sorted(db.session.scalars(select(Delivery.status))) == ["failed", "sent"]


def test_a_confirmation_that_cannot_be_built_fails_without_a_500(app, client, demo_page,
                                                                 monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a template bug")

    monkeypatch.setattr(rendering, "confirmation_message", broken)
    response = optin(client, email=UNICODE_FORM, consent="y")  # runs the queue too
    assert response.status_code == 303
    with app.app_context():
        lead = db.session.scalar(select(Lead).where(Lead.email == UNICODE_FORM))
        assert lead.confirmation_sent_at is None
        assert "RuntimeError: a template bug" in lead.confirmation_error


def test_a_webhook_row_that_raises_fails_alone_and_the_run_goes_on(make_app, monkeypatch):
    from capture.webhooks import delivery, outbound
    from capture.models import WebhookDelivery
    from tests.conftest import Receiver
    from tests.factories import add_webhook

    app = make_app(WEBHOOK_ALLOW_PRIVATE=True, WEBHOOK_TIMEOUT_SECONDS=10)
    receiver = Receiver()
    try:
        create_page(app, review="manual")
        add_webhook(app, receiver.url + "/broken")
        add_webhook(app, receiver.url + "/fine")
        for name in ("ann", "bob"):
            assert optin(app.test_client(), "offer", email=f"{name}@example.com").status_code == 303
        original = outbound.post

        def post(url, *args, **kwargs):
            if url.endswith("/broken"):
                raise RuntimeError("a bug in the client")
            return original(url, *args, **kwargs)

        monkeypatch.setattr(outbound, "post", post)
        with app.app_context():
            summary = delivery.deliver_due()
            rows = db.session.execute(select(WebhookDelivery.status, WebhookDelivery.error)
                                      .order_by(WebhookDelivery.id)).all()
    finally:
        receiver.stop()
    assert (summary.delivered, summary.failed) == (2, 2)
    assert sorted(tuple(row) for row in rows) == [
        ("delivered", ""), ("delivered", ""),
        ("failed", "RuntimeError: a bug in the client"),
        ("failed", "RuntimeError: a bug in the client")]
    assert len(receiver.requests) == 2


def test_a_lead_whose_due_step_cannot_be_worked_out_holds_only_itself(make_app, plain_server,
                                                                      tmp_path, clock,
                                                                      monkeypatch):
    from capture.mail import membership

    app = _smtp_app(make_app, plain_server, tmp_path)
    three_steps(app)
    for name in ("ann", "bob", "cid"):
        add_lead(app, email=f"{name}@example.com")
    original = membership.should_stop

    def should_stop(lead, *args, **kwargs):
        if lead.email == "bob@example.com":
            raise RuntimeError("a bug")
        return original(lead, *args, **kwargs)

    monkeypatch.setattr(membership, "should_stop", should_stop)
    assert tick(app).sent == 2
    with app.app_context():
        states = dict(db.session.execute(select(Lead.email, Enrollment.state).join(
            Enrollment, Enrollment.lead_id == Lead.id)).all())
    assert states["bob@example.com"] == "active"  # held for HOLD_MINUTES, not stranded
