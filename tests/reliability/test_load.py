"""A bounded burst of opt-ins, opens and clicks at a 4-worker gunicorn while the
scheduler process sends: every accepted lead stored once, every open and click
recorded, no 5xx, and the sending goes on."""

import http.client
import random
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from tests.live import start_stack
from tests.reliability.conftest import BROWSER, Visitor

# A real stack under a burst of load: `make test-fast` leaves them out.
pytestmark = pytest.mark.slow

READERS = 60  # leads whose welcome email is opened and clicked during the burst
QUEUED = 300  # leads the scheduler sends to during the burst
OPT_INS = 150
HITS_PER_READER = 2  # opens and clicks each


def get(base_url: str, path: str) -> int:
    """One GET like a mail client or browser; the status (redirects not followed)."""
    host = urlsplit(base_url).netloc
    connection = http.client.HTTPConnection(host, timeout=30)
    try:
        connection.request("GET", path, headers=BROWSER)
        response = connection.getresponse()
        response.read()
        if path.startswith("/o/"):
            assert response.getheader("Content-Type") == "image/gif"
        return response.status
    finally:
        connection.close()


def links_in(message, base_url: str) -> tuple[str, str]:
    """The open pixel's path and the first tracked link's path of a sent email."""
    html = message.get_body(("html",)).get_content()
    pixel = re.search(re.escape(base_url) + r"(/o/[\w.-]+)", html).group(1)
    click = re.search(re.escape(base_url) + r"(/c/[\w-]+)", html).group(1)
    return pixel, click


def opt_in(base_url: str, number: int) -> int:
    visitor = Visitor(base_url)
    visitor.open_page()
    return visitor.submit(f"Load {number}", f"load{number}@example.com")


def test_burst_of_opt_ins_opens_and_clicks_while_sending_loses_nothing(tmp_path):
    stack, stop = start_stack(
        tmp_path, workers=4, scheduler=True,
        extra_env={"CAPTURE_MIN_FORM_SECONDS": "0", "CAPTURE_OPTIN_RATE_LIMIT": "0",
                   "CAPTURE_SEND_RATE_PER_MINUTE": "100000"})
    engine = stack.database()
    try:
        stack.seed_leads(READERS, prefix="reader")
        tracked = [links_in(stack.wait_for_mail(f"reader{n}@example.com", timeout=60)[0],
                            stack.base_url) for n in range(READERS)]
        stack.seed_leads(QUEUED, prefix="queued")

        hits = [("open", pixel) for pixel, _ in tracked] * HITS_PER_READER
        hits += [("click", click) for _, click in tracked] * HITS_PER_READER
        work = [("optin", n) for n in range(OPT_INS)] + hits
        random.Random(8).shuffle(work)

        def run(item):
            kind, value = item
            if kind == "optin":
                return kind, opt_in(stack.base_url, value)
            return kind, get(stack.base_url, value)

        def queued_sent() -> int:
            return sum(1 for m in list(stack.smtp.messages) if "queued" in str(m["To"]))

        before = queued_sent()
        rounds = 1
        with ThreadPoolExecutor(max_workers=32) as pool:
            outcomes = Counter(pool.map(run, work))
            # The burst can end within one scheduler tick (about half a second here):
            # opens and clicks go on until the scheduler has sent meanwhile, or 30 s.
            deadline = time.monotonic() + 30
            while queued_sent() == before and time.monotonic() < deadline:
                outcomes.update(pool.map(run, hits))
                rounds += 1
        during = queued_sent() - before
        assert before < QUEUED and during > 0  # the scheduler was sending meanwhile
        hits_each = READERS * HITS_PER_READER * rounds
        assert outcomes == {("optin", 200): OPT_INS, ("open", 200): hits_each,
                            ("click", 302): hits_each}

        emails = [row["email"] for row in stack.leads("launch")]
        assert Counter(e for e in emails if e.startswith("load")) == {
            f"load{n}@example.com": 1 for n in range(OPT_INS)}
        with engine.connect() as connection:
            events = dict(connection.execute(sa.text(
                "SELECT kind, COUNT(*) FROM events WHERE kind IN ('open', 'click') "
                "GROUP BY kind")).all())
        assert events == {"open": hits_each, "click": hits_each}

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            queued = [m for m in stack.smtp.messages if "queued" in str(m["To"])]
            if len(queued) >= QUEUED:
                break
            time.sleep(0.5)
        time.sleep(2)  # anything sent twice would arrive now
        per_recipient = Counter(str(m["To"].addresses[0].addr_spec)
                                for m in stack.smtp.messages)
        assert max(per_recipient.values()) == 1
        assert sum(1 for address in per_recipient if address.startswith("queued")) == QUEUED
    finally:
        engine.dispose()
        stop()
