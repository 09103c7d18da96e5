"""VERP envelope senders: one signed address per email, read back, forgeries refused."""

from sqlalchemy import select

from capture.db import db
from capture.mail import compose, verp
from capture.mail.verp import Origin
from capture.models import Delivery, Lead
from tests.factories import add_lead, sequence_folder, tick, write_step


def test_token_reads_back_and_fits_a_local_part(make_app):
    app = make_app(BOUNCE_ADDRESS="bounces@mail.example.com")
    with app.app_context():
        for origin in (Origin("delivery", 1), Origin("delivery", 987654321),
                       Origin("confirmation", 42)):
            address = verp.envelope_sender(origin)
            local = address.split("@")[0]
            assert address.endswith("@mail.example.com") and local == local.lower()
            assert len(local) <= 64
            assert verp.origin_of(address) == origin
            assert verp.origin_of(address.upper()) == origin


def test_forged_or_foreign_tokens_are_refused(make_app):
    app = make_app(BOUNCE_ADDRESS="bounces@mail.example.com")
    with app.app_context():
        genuine = verp.envelope_sender(Origin("delivery", 7))
        local, domain = genuine.split("@")
        token = local.split("+")[1]
        other = verp.make_token(Origin("delivery", 8))
        # The name of delivery 8 with the MAC of delivery 7.
        assert verp.read_token(other[:-10] + token[-10:]) is None
        assert verp.read_token(token[:-1] + ("a" if token[-1] != "a" else "b")) is None
        assert verp.origin_of(f"bounces+{token}@elsewhere.example") is None
        assert verp.origin_of(f"other+{token}@mail.example.com") is None
        assert verp.origin_of("bounces@mail.example.com") is None
        assert verp.read_token("") is None and verp.read_token("!!!!!!!!!!!!!!!") is None
    other_key = make_app(BOUNCE_ADDRESS="bounces@mail.example.com", SECRET_KEY="another")
    with other_key.app_context():
        assert verp.origin_of(genuine) is None


def test_without_bounce_address_the_envelope_is_the_sender(app):
    with app.app_context():
        assert verp.envelope_sender(Origin("delivery", 1)) is None


def test_each_email_goes_out_from_its_own_verp_address(make_app, smtp, tmp_path):
    senders = []
    collect = smtp.handle_DATA

    async def handle_data(server, session, envelope):
        senders.append(envelope.mail_from)
        return await collect(server, session, envelope)

    smtp.handle_DATA = handle_data
    folder = tmp_path / "sequences"
    folder.mkdir()
    app = make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port,
                   SEQUENCES_DIR=str(folder), BOUNCE_ADDRESS="bounces@mail.example.com")
    write_step(sequence_folder(app), "01-hi.md", "Hi", "Hello", delay=0)
    first, second = add_lead(app), add_lead(app, email="bob@example.com", name="Bob")
    tick(app)
    with app.app_context():
        origins = [verp.origin_of(sender) for sender in senders]
        wanted = {(delivery.id) for delivery in db.session.scalars(select(Delivery))}
        lead = db.session.get(Lead, first)
        message = compose.confirmation_message(lead, lead.page, "https://x.example/c")
        assert verp.origin_of(message.sender) == Origin("confirmation", first)
    assert second != first
    assert len(set(senders)) == 2 and {origin.id for origin in origins} == wanted
    assert {origin.kind for origin in origins} == {"delivery"}
