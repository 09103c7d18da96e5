"""A broadcast sent by two real `flask --app wsgi scheduler` processes at once, against
a real SMTP server: each recipient gets it exactly once, and one of the processes
killed with SIGKILL mid-send and started again changes nothing of that."""

import signal
import time
from collections import Counter

import pytest
import sqlalchemy as sa

from capture.mail.connections import AHEAD
from config import Config
from tests.conftest import SmtpCollector
from tests.live import start_stack

# Real scheduler processes: `make test-fast` leaves them out.
pytestmark = pytest.mark.slow

LEADS = 300


class SlowishSmtp(SmtpCollector):
    """Answers each message after a short pause, so both processes are sending at
    once and a kill lands mid-batch."""

    def __init__(self) -> None:
        super().__init__()
        self.stalls["DATA"] = 0.01


def received(smtp) -> Counter:
    with smtp.lock:
        return Counter(m["To"].addresses[0].addr_spec for m in smtp.messages
                       if str(m["Subject"]) == "Big news")


def test_two_schedulers_send_a_broadcast_to_each_recipient_once(tmp_path):
    folder = tmp_path / "broadcasts"
    folder.mkdir()
    (folder / "news.md").write_text("---\nsubject: Big news\nsegment: {pages: [launch]}\n"
                                    "---\nHello {{ lead.first_name }}.\n", encoding="utf-8")
    smtp = SlowishSmtp()
    stack, stop = start_stack(tmp_path, workers=1, smtp=smtp, extra_env={
        "CAPTURE_BROADCASTS_DIR": str(folder), "CAPTURE_SEND_RATE_PER_MINUTE": "100000",
        "CAPTURE_SEND_BATCH_SIZE": "40", "CAPTURE_BROADCAST_TAKE_ROWS": "50",
        "CAPTURE_SENDING_TIMEOUT_MINUTES": "1"})
    try:
        stack.seed_leads(LEADS, prefix="fan")
        second = stack.start_scheduler()
        stack.flask("broadcasts", "send", "news")
        deadline = time.monotonic() + 60
        while len(received(smtp)) < LEADS // 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        second.send_signal(signal.SIGKILL)  # mid-send
        second.wait()
        stack.start_scheduler()
        engine = stack.database()
        deadline = time.monotonic() + 150
        state = None
        while time.monotonic() < deadline:
            with engine.connect() as connection:
                state = connection.execute(sa.text(
                    "SELECT state FROM broadcasts WHERE name = 'news'")).scalar()
            if state == "sent":
                break
            time.sleep(0.5)
        with engine.connect() as connection:
            rows = dict(connection.execute(sa.text(
                "SELECT status, count(*) FROM deliveries WHERE broadcast_id IS NOT NULL "
                "GROUP BY status")).all())
            total = connection.execute(sa.text(
                "SELECT count(DISTINCT lead_id), count(*) FROM deliveries "
                "WHERE broadcast_id IS NOT NULL")).one()
        engine.dispose()
        assert state == "sent", rows
        counts = received(smtp)
        assert max(counts.values()) == 1, [a for a, n in counts.items() if n > 1]
        # Every lead has one delivery; only those the kill left without an outcome
        # (`unknown`, never resent: at most what the process had marked) may be
        # missing from the SMTP server.
        assert tuple(total) == (LEADS, LEADS)
        assert rows.get("sent", 0) + rows.get("unknown", 0) == LEADS, rows
        assert rows.get("unknown", 0) <= Config.SMTP_CONNECTIONS * AHEAD, rows
        assert len(counts) >= LEADS - rows.get("unknown", 0)
    finally:
        stop()
