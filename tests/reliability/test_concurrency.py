"""Real processes under concurrent load: several gunicorn workers on SQLite (or
PostgreSQL), several scheduler processes on one database."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.live import start_stack
from tests.reliability.conftest import Visitor

# Real gunicorn workers and scheduler processes under load: `make test-fast` leaves them out.
pytestmark = pytest.mark.slow

VISITORS = 300
FLOOD = 30


def visit_and_opt_in(base_url: str, number: int) -> int:
    """One visitor with its own cookies: view the page, submit the form."""
    visitor = Visitor(base_url)
    visitor.open_page()
    return visitor.submit(f"Visitor {number}", f"visitor{number}@example.com")


def send_confirmations(stack) -> None:
    """Send the queued confirmation emails, as the scheduler's fast lane would (a
    run sends at most CAPTURE_SEND_BATCH_SIZE)."""
    while "queued confirmations" in stack.flask("send-due"):
        pass


@pytest.fixture(scope="module")
def busy_stack(tmp_path_factory):
    """Four gunicorn workers, no scheduler, bot timing and rate limit off for load."""
    running, stop = start_stack(
        tmp_path_factory.mktemp("busy"), workers=4, scheduler=False,
        extra_env={"CAPTURE_MIN_FORM_SECONDS": "0", "CAPTURE_OPTIN_RATE_LIMIT": "0"},
    )
    yield running
    stop()


def test_hundreds_of_concurrent_opt_ins_are_each_stored_once(busy_stack):
    with ThreadPoolExecutor(max_workers=40) as pool:
        statuses = list(pool.map(lambda n: visit_and_opt_in(busy_stack.base_url, n),
                                 range(VISITORS)))
    assert statuses == [200] * VISITORS
    emails = [row["email"] for row in busy_stack.leads("launch")]
    assert sorted(emails) == sorted(f"visitor{n}@example.com" for n in range(VISITORS))
    assert busy_stack.smtp.messages == []  # queued: no request sends an email
    send_confirmations(busy_stack)
    confirmations = [m for m in busy_stack.smtp.messages if "confirm" in str(m["Subject"])]
    assert len(confirmations) == VISITORS


def test_flood_of_one_address_from_many_browsers_sends_one_confirmation(busy_stack):
    address = "flooded@example.com"
    visitors = [Visitor(busy_stack.base_url) for _ in range(FLOOD)]
    with ThreadPoolExecutor(max_workers=FLOOD) as pool:
        list(pool.map(Visitor.open_page, visitors))
        start = threading.Barrier(FLOOD)

        def submit(visitor: Visitor) -> int:
            start.wait(timeout=30)  # every copy of the form is posted at once
            return visitor.submit("Flood", address)

        statuses = list(pool.map(submit, visitors))
    assert statuses == [200] * FLOOD
    send_confirmations(busy_stack)
    send_confirmations(busy_stack)  # a second confirmation would go now
    assert len(busy_stack.smtp.to(address)) == 1
    assert [row["email"] for row in busy_stack.leads("launch")].count(address) == 1


def test_three_scheduler_processes_send_every_delivery_exactly_once(tmp_path):
    stack, stop = start_stack(tmp_path, workers=1, scheduler=False,
                              extra_env={"CAPTURE_SEND_RATE_PER_MINUTE": "100000",
                                         "CAPTURE_SEND_BATCH_SIZE": "100"})
    try:
        count = 2000
        stack.seed_leads(count)
        for _ in range(3):
            stack.start_scheduler()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(stack.smtp.messages) < count:
            time.sleep(0.5)
        time.sleep(3)  # anything sent twice would arrive now
        recipients = [m["To"].addresses[0].addr_spec for m in stack.smtp.messages]
        assert len(recipients) == count
        assert len(set(recipients)) == count
    finally:
        stop()
