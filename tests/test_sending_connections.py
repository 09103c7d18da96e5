"""Sending over several SMTP connections at once (CAPTURE_SMTP_CONNECTIONS) against a
real SMTP server: each email once, the rate cap shared, one connection's trouble
kept to its own email."""

from collections import Counter

import pytest
from sqlalchemy import select

from capture.db import db
from capture.models import Delivery, Enrollment
from tests.conftest import SmtpCollector
from tests.factories import add_lead, three_steps, tick


@pytest.fixture
def many_app(make_app, smtp, tmp_path):
    """An app sending over five connections, with room for a few hundred emails a tick."""
    folder = tmp_path / "sequences"
    folder.mkdir()
    app = make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port,
                   SEQUENCES_DIR=str(folder), POSTAL_ADDRESS="1 Main St, Springfield",
                   SMTP_CONNECTIONS=5, SEND_BATCH_SIZE=500, SEND_RATE_PER_MINUTE=1000)
    three_steps(app)
    return app


def add_leads(app, count: int) -> list[str]:
    addresses = [f"many{number}@example.com" for number in range(count)]
    for address in addresses:
        add_lead(app, email=address, name=f"Lead {address[4:-12]}")
    return addresses


def received(smtp) -> Counter:
    """How many messages each recipient got."""
    with smtp.lock:
        return Counter(message["To"].addresses[0].addr_spec for message in smtp.messages)


def statuses(app) -> Counter:
    with app.app_context():
        return Counter(db.session.scalars(select(Delivery.status)).all())


def test_each_of_300_emails_arrives_once_over_five_connections(many_app, smtp, clock):
    addresses = add_leads(many_app, 300)
    summary = tick(many_app)
    assert (summary.sent, summary.retried, summary.failed, summary.unknown) == (300, 0, 0, 0)
    assert received(smtp) == Counter({address: 1 for address in addresses})
    assert 2 <= smtp.greetings <= 5  # opened one by one, never more than the setting
    assert statuses(many_app) == {"sent": 300}
    with many_app.app_context():
        # Each lead moved on to its next step, due in two days.
        assert set(db.session.scalars(select(Enrollment.state))) == {"active"}
        assert set(db.session.scalars(select(Enrollment.last_step))) == {"welcome"}
    assert tick(many_app).sent == 0  # nothing twice


class CountsAtOnce(SmtpCollector):
    """Takes 50 ms to answer each message and notes the most messages it was
    answering at the same moment."""

    def __init__(self) -> None:
        super().__init__()
        self.stalls["DATA"] = 0.05
        self.now = self.most = 0

    async def handle_DATA(self, server, session, envelope):
        self.now += 1  # aiosmtpd runs every session in one event loop: no race
        self.most = max(self.most, self.now)
        try:
            return await super().handle_DATA(server, session, envelope)
        finally:
            self.now -= 1


def test_connections_send_side_by_side(make_app, tmp_path, clock):
    from aiosmtpd.controller import Controller

    from tests.conftest import _free_port

    handler = CountsAtOnce()
    server = Controller(handler, hostname="127.0.0.1", port=_free_port())
    server.start()
    try:
        folder = tmp_path / "sequences"
        folder.mkdir()
        app = make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=server.port,
                       SEQUENCES_DIR=str(folder), SMTP_CONNECTIONS=5)
        three_steps(app)
        addresses = add_leads(app, 60)
        assert tick(app).sent == 60
    finally:
        server.stop()
    assert handler.most >= 3  # several emails were on their way at the same moment
    assert handler.greetings == 5
    assert received(handler) == Counter({address: 1 for address in addresses})


def test_one_connection_sends_one_email_at_a_time(make_app, smtp, tmp_path, clock):
    folder = tmp_path / "sequences"
    folder.mkdir()
    app = make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port,
                   SEQUENCES_DIR=str(folder), SMTP_CONNECTIONS=1)
    three_steps(app)
    addresses = add_leads(app, 20)
    assert tick(app).sent == 20
    assert received(smtp) == Counter({address: 1 for address in addresses})
    assert smtp.greetings == 1


def test_the_rate_cap_holds_across_connections(many_app, smtp, clock):
    many_app.config["SEND_RATE_PER_MINUTE"] = 7
    add_leads(many_app, 20)
    assert tick(many_app).sent == 7
    assert tick(many_app).sent == 0  # the same minute: the cap is used up
    clock.advance(minutes=1)
    assert tick(many_app).sent == 7
    assert len(smtp.messages) == 14
    assert max(received(smtp).values()) == 1


class TroubleOnOneConnection(SmtpCollector):
    """After `after` messages, one connection has trouble once: `421` answers its next
    message (it is refused and the connection closed), or `drop` closes it as its next
    MAIL comes, before the message."""

    def __init__(self, kind: str, after: int = 10) -> None:
        super().__init__()
        self.kind, self.after, self.done = kind, after, False

    def _due(self) -> bool:
        with self.lock:
            due = not self.done and len(self.messages) >= self.after
            self.done = self.done or due
        return due

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.kind == "drop" and self._due():
            server.transport.close()
            return "421 4.3.2 going away"
        return await super().handle_MAIL(server, session, envelope, address, mail_options)

    async def handle_DATA(self, server, session, envelope):
        if self.kind == "421" and self._due():
            return "421 4.3.2 closing this connection"
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def troubled(make_app, tmp_path, request):
    from aiosmtpd.controller import Controller

    from tests.conftest import _free_port

    handler = TroubleOnOneConnection(request.param)
    server = Controller(handler, hostname="127.0.0.1", port=_free_port())
    server.start()
    folder = tmp_path / "sequences"
    folder.mkdir()
    app = make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=server.port,
                   SEQUENCES_DIR=str(folder), SMTP_CONNECTIONS=5, SEND_BATCH_SIZE=500)
    three_steps(app)
    yield app, handler
    server.stop()


@pytest.mark.parametrize("troubled", ["421"], indirect=True)
def test_a_421_on_one_connection_retries_that_email_and_the_others_go_on(troubled, clock):
    app, smtp = troubled
    addresses = add_leads(app, 40)
    summary = tick(app)
    assert (summary.sent, summary.retried, summary.unknown) == (39, 1, 0)
    assert not summary.errors  # the batch went on
    assert statuses(app) == {"sent": 39, "retry": 1}
    clock.advance(minutes=5)
    assert tick(app).sent == 1
    assert received(smtp) == Counter({address: 1 for address in addresses})


@pytest.mark.parametrize("troubled", ["drop"], indirect=True)
def test_a_dropped_connection_hands_its_email_to_a_new_one_and_none_goes_twice(troubled,
                                                                             clock):
    app, smtp = troubled
    addresses = add_leads(app, 40)
    summary = tick(app)
    assert (summary.sent, summary.retried, summary.unknown) == (40, 0, 0)
    assert received(smtp) == Counter({address: 1 for address in addresses})
    assert statuses(app) == {"sent": 40}
