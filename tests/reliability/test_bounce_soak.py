"""A soak of the bounce mailbox: 1,000 real bounce and complaint reports about emails
two real `flask --app wsgi scheduler` processes sent, read from a real IMAP server
(dovecot) by both schedulers at once. Each report acts exactly once, each is moved to
Processed exactly once, and the auto-replies beside them stay where they are."""

import re
import time
from collections import Counter

import pytest
import sqlalchemy as sa

from tests import bounce_samples as samples
from tests.conftest import SmtpCollector
from tests.dovecot import Dovecot
from tests.live import start_stack

# Real scheduler processes and a real IMAP server: `make test-fast` leaves them out.
pytestmark = pytest.mark.slow

LEADS = 1000
AUTO_REPLIES = 20
FOLDER = "Soak"


class EnvelopeSmtp(SmtpCollector):
    """Keeps each message's envelope: the sender is the VERP address its bounce
    goes back to."""

    def __init__(self) -> None:
        super().__init__()
        self.envelopes: list[tuple[str, str]] = []

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.envelopes.append((envelope.mail_from, envelope.rcpt_tos[0]))
        return await super().handle_DATA(server, session, envelope)


def _report(index: int, sender: str, recipient: str) -> tuple[str, bytes]:
    """Three in five a hard bounce, one a soft bounce, one a complaint."""
    if index % 5 < 3:
        return "bounce", samples.dsn(sender, recipient=recipient)
    if index % 5 == 3:
        return "soft_bounce", samples.dsn(sender, recipient=recipient, status="4.2.2",
                                          action="delayed",
                                          diagnostic="smtp; 452 4.2.2 Mailbox full")
    return "complaint", samples.arf(sender)


def _count(dovecot: Dovecot, folder: str) -> int:
    connection = dovecot.client()
    try:
        status, data = connection.status(folder, "(MESSAGES)")
        if status != "OK":
            return 0
        return int(re.search(rb"MESSAGES (\d+)", data[0]).group(1))
    finally:
        connection.logout()


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        time.sleep(0.5)


def test_two_schedulers_act_on_each_of_1000_reports_once(tmp_path):
    dovecot = Dovecot()
    smtp = EnvelopeSmtp()
    stack = stop = None
    try:
        client = dovecot.client()
        client.create(FOLDER)
        client.logout()
        stack, stop = start_stack(tmp_path, workers=1, scheduler=False, smtp=smtp, extra_env={
            "CAPTURE_BOUNCE_ADDRESS": "bounces@mail.example.com",
            "CAPTURE_BOUNCE_MAILBOX": dovecot.url(FOLDER),
            "CAPTURE_BOUNCE_INTERVAL_SECONDS": "10",
            "CAPTURE_BOUNCE_BATCH_SIZE": "2000",
            "CAPTURE_SEND_RATE_PER_MINUTE": "1000000"})
        stack.seed_leads(LEADS, prefix="soak")
        stack.start_scheduler()
        stack.start_scheduler()
        _wait(lambda: len(smtp.envelopes) >= LEADS, 120, f"sending {LEADS} welcome emails")
        with smtp.lock:
            envelopes = list(smtp.envelopes)
        assert len({sender for sender, _ in envelopes}) == LEADS  # one VERP address each

        expected = Counter()
        reports = []
        for index, (sender, recipient) in enumerate(envelopes):
            kind, message = _report(index, sender, recipient)
            expected[kind] += 1
            reports.append(message)
        replies = [samples.out_of_office(sender) for sender, _ in envelopes[:AUTO_REPLIES]]
        dovecot.append(*reports, *replies, folder=FOLDER)

        _wait(lambda: _count(dovecot, "Processed") >= LEADS, 240,
              f"{LEADS} reports moved to Processed")
        time.sleep(2)  # a pass still running would show here as a surplus

        assert _count(dovecot, "Processed") == LEADS
        assert _count(dovecot, FOLDER) == AUTO_REPLIES
        engine = stack.database()
        try:
            with engine.connect() as connection:
                events = connection.execute(sa.text(
                    "SELECT kind, delivery_id FROM events "
                    "WHERE kind IN ('bounce', 'soft_bounce', 'complaint')")).all()
                subscriptions = dict(connection.execute(sa.text(
                    "SELECT subscription, count(*) FROM leads GROUP BY subscription")).all())
                suppressed = connection.execute(sa.text(
                    "SELECT count(*) FROM suppressions")).scalar()
        finally:
            engine.dispose()
        per_email = Counter((kind, delivery) for kind, delivery in events)
        assert max(per_email.values()) == 1, [key for key, n in per_email.items() if n > 1]
        assert Counter(kind for kind, _ in events) == expected
        assert subscriptions.get("bounced") == expected["bounce"]
        assert subscriptions.get("unsubscribed") == expected["complaint"]
        assert subscriptions.get("subscribed") == expected["soft_bounce"]
        assert suppressed == expected["bounce"] + expected["complaint"]
    finally:
        if stop is not None:
            stop()
        dovecot.stop()
