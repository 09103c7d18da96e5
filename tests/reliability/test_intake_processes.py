"""The queued sign-up under SIGKILL: a sign-up the visitor saw accepted survives the
web server killed at once, and scheduler processes killed mid-batch, again and again,
while another folds in beside them, store each sign-up exactly once."""

import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from tests.live import start_stack
from tests.reliability.conftest import Visitor

# Real gunicorn and scheduler processes, killed: `make test-fast` leaves them out.
pytestmark = pytest.mark.slow

SIGN_UPS = 300


def _sign_up(base_url: str, number: int) -> int:
    visitor = Visitor(base_url)
    visitor.open_page()
    return visitor.submit(f"Person {number}", f"person{number}@example.com")


def _sign_ups(stack, count: int) -> None:
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(lambda n: _sign_up(stack.base_url, n), range(count)))
    assert statuses == [200] * count  # each answered (the 303 followed to thanks)


def _counts(stack) -> dict:
    engine = stack.database()
    try:
        with engine.connect() as connection:
            return {
                "leads": connection.execute(sa.text(
                    "SELECT count(*), count(DISTINCT email) FROM leads")).one(),
                "optin events": connection.execute(sa.text(
                    "SELECT count(*), count(DISTINCT lead_id) FROM events "
                    "WHERE kind = 'optin'")).one(),
                # Queued, or already sent by a scheduler's fast lane.
                "confirmations": connection.execute(sa.text(
                    "SELECT count(*) FROM leads WHERE confirmation_due_at IS NOT NULL "
                    "OR confirmation_sent_at IS NOT NULL")).scalar(),
                "waiting": connection.execute(sa.text(
                    "SELECT count(*) FROM intake")).scalar(),
            }
    finally:
        engine.dispose()


def _each_once(stack, count: int) -> None:
    counts = _counts(stack)
    assert tuple(counts["leads"]) == (count, count), counts
    assert tuple(counts["optin events"]) == (count, count), counts
    assert counts["confirmations"] == count, counts
    with stack.smtp.lock:
        sent = Counter(str(message["To"]) for message in stack.smtp.messages)
    assert max(sent.values(), default=1) == 1, sent
    assert counts["waiting"] == 0, counts


@pytest.fixture
def stack(tmp_path):
    running, stop = start_stack(tmp_path, workers=2, scheduler=False, extra_env={
        "CAPTURE_OPTIN_PROCESSING": "queued", "CAPTURE_MIN_FORM_SECONDS": "0",
        "CAPTURE_OPTIN_RATE_LIMIT": "0", "CAPTURE_INTAKE_BATCH_SIZE": "20"})
    yield running
    stop()


def test_accepted_sign_ups_survive_the_web_server_killed(stack):
    _sign_ups(stack, 100)
    server = stack.processes[0]
    server.send_signal(signal.SIGKILL)  # no clean shutdown, nothing flushed
    server.wait()
    assert _counts(stack)["waiting"] == 100
    stack.fold_in()
    _each_once(stack, 100)


def test_schedulers_killed_mid_batch_store_each_sign_up_once(stack):
    _sign_ups(stack, SIGN_UPS)
    steady = stack.start_scheduler()  # folds in beside the ones killed
    for _ in range(4):
        victim = stack.start_scheduler()
        deadline = time.monotonic() + 30
        before = _counts(stack)["waiting"]
        while _counts(stack)["waiting"] == before and time.monotonic() < deadline:
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)  # mid-batch, or between two
        victim.wait()
    deadline = time.monotonic() + 60
    while _counts(stack)["waiting"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert steady.poll() is None
    _each_once(stack, SIGN_UPS)
