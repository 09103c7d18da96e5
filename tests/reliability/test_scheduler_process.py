"""The scheduler as the real `flask --app wsgi scheduler` process against a real
SMTP server on loopback: killed with SIGKILL in the middle of a batch and started
again, and a sequence file broken while it runs."""

import http.cookiejar
import json
import re
import signal
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from capture.mail.connections import AHEAD
from config import Config
from tests.conftest import SmtpCollector
from tests.live import OWNER_EMAIL, OWNER_PASSWORD, start_stack

# Real scheduler processes, killed mid-batch: `make test-fast` leaves them out.
pytestmark = pytest.mark.slow


class SlowSmtp(SmtpCollector):
    """Keeps each message, then takes `pause` seconds to answer (a slow server), so
    a kill can land while an email is on the wire; `receiving` is set on each DATA."""

    def __init__(self, pause: float) -> None:
        super().__init__()
        self.stalls["DATA"] = pause
        self.receiving = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        self.receiving.set()
        return await super().handle_DATA(server, session, envelope)


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.1)


def received(smtp) -> Counter:
    """How many messages each (recipient, subject) got."""
    with smtp.lock:
        return Counter((m["To"].addresses[0].addr_spec, str(m["Subject"]))
                       for m in smtp.messages)


def statuses(engine) -> dict[str, str]:
    """Each lead's welcome delivery status, by address."""
    with engine.connect() as connection:
        return dict(connection.execute(sa.text(
            "SELECT leads.email, deliveries.status FROM deliveries "
            "JOIN leads ON leads.id = deliveries.lead_id")).all())


def admin_page(base_url: str, path: str) -> str:
    """A dashboard page, fetched after logging in through the real form."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with opener.open(f"{base_url}/admin/login", timeout=30) as response:
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]*)"',
                          response.read().decode()).group(1)
    form = urllib.parse.urlencode({"csrf_token": token, "email": OWNER_EMAIL,
                                   "password": OWNER_PASSWORD}).encode()
    opener.open(f"{base_url}/admin/login", data=form, timeout=30).close()
    with opener.open(f"{base_url}{path}", timeout=30) as response:
        return response.read().decode()


LEADS = 40
# The most emails a scheduler process has marked `sending` without an outcome: its
# connections (CAPTURE_SMTP_CONNECTIONS, by default) times what each has in hand.
IN_FLIGHT_MOST = Config.SMTP_CONNECTIONS * AHEAD


def test_scheduler_killed_mid_batch_sends_each_email_at_most_once_and_shows_unknown(
    tmp_path
):
    smtp = SlowSmtp(pause=0.3)
    stack, stop = start_stack(tmp_path, workers=1, scheduler=False, smtp=smtp)
    engine = stack.database()
    try:
        stack.seed_leads(LEADS)
        first = stack.start_scheduler()
        wait_until(lambda: len(smtp.messages) >= 10, 60, "ten emails from the first scheduler")
        smtp.receiving.clear()
        wait_until(smtp.receiving.is_set, 10, "the next email on the wire")
        first.send_signal(signal.SIGKILL)  # mid-batch, while the server holds an email
        first.wait(timeout=10)
        in_flight = [email for email, status in statuses(engine).items()
                     if status == "sending"]
        assert 1 <= len(in_flight) <= IN_FLIGHT_MOST, statuses(engine)

        # CAPTURE_SENDING_TIMEOUT_MINUTES (10) pass: the claims of the dead process age.
        long_ago = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=11)
        with engine.begin() as connection:
            connection.execute(sa.text("UPDATE deliveries SET claimed_at = :t "
                                       "WHERE status IN ('sending', 'claimed')"),
                               {"t": long_ago})
            connection.execute(sa.text("UPDATE enrollments SET claimed_at = :t "
                                       "WHERE state = 'sending'"), {"t": long_ago})
        stack.start_scheduler()
        wait_until(lambda: len(statuses(engine)) == LEADS
                   and set(statuses(engine).values()) <= {"sent", "unknown"}, 90,
                   "every lead's email settled after the restart")
        time.sleep(2)  # anything sent twice would arrive now

        counts = received(smtp)
        assert max(counts.values()) == 1  # no email twice
        settled = statuses(engine)
        # Every email sent arrived; of the unknown ones (marked when the process was
        # killed), those on the wire arrived, the others never left: none is resent.
        arrived = {email for email, _ in counts}
        assert {email for email, status in settled.items() if status == "sent"} <= arrived
        assert arrived <= {f"bulk{n}@example.com" for n in range(LEADS)}
        assert [email for email, status in settled.items() if status == "unknown"] == in_flight
        assert Counter(settled.values()) == {"sent": LEADS - len(in_flight),
                                             "unknown": len(in_flight)}
        shown = admin_page(stack.base_url, "/admin/deliveries?status=unknown")
        for email in sorted(in_flight, key=len, reverse=True):  # bulk12 before bulk1
            assert email in shown
            shown = shown.replace(email, "")
        assert "bulk" not in shown  # only the unknown ones
    finally:
        engine.dispose()
        stop()


def test_sequence_broken_while_the_scheduler_runs_holds_it_and_others_go_on(tmp_path):
    stack, stop = start_stack(tmp_path, workers=1, scheduler=False)
    engine = stack.database()
    course = tmp_path / "sequences" / "course"
    course.mkdir()
    step = course / "01-first.md"
    step.write_text("---\nsubject: First lesson\ndelay: 0\n---\nLesson one.\n")
    pages = tmp_path / "course.json"
    pages.write_text(json.dumps([{
        "slug": "course", "title": "Course", "sequence": "course", "double_opt_in": False,
        "fields": [{"name": "email", "label": "Email", "type": "email", "required": True}],
    }]))
    stack.flask("pages", "import", str(pages))
    try:
        stack.start_scheduler()
        stack.seed_leads(3, prefix="early", page="course")
        wait_until(lambda: len(received(stack.smtp)) == 3, 30, "the course's first lesson")

        step.write_text("---\nsubject: [unclosed\n---\nLesson one.\n")  # broken now
        stack.seed_leads(3, prefix="held", page="course")
        stack.seed_leads(3, prefix="other", page="launch")
        for n in range(3):
            stack.wait_for_mail(f"other{n}@example.com")  # the other sequence goes on
        time.sleep(3)  # several ticks
        assert not any(stack.smtp.to(f"held{n}@example.com") for n in range(3))
        assert "01-first.md" in stack.flask("sequences", "check", check=False)

        step.write_text("---\nsubject: First lesson\ndelay: 0\n---\nLesson one.\n")
        for n in range(3):
            stack.wait_for_mail(f"held{n}@example.com")
        time.sleep(2)
        counts = received(stack.smtp)
        assert max(counts.values()) == 1
        assert len(counts) == 9
    finally:
        engine.dispose()
        stop()
