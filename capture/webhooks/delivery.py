"""Webhook deliveries, posted by the scheduler: signed, claimed, retried with back-off.

The scheduler's run posts the due rows and retries a failure for WEBHOOK_RETRY_HOURS.
Rows are claimed like sequence emails (`FOR UPDATE SKIP LOCKED` on PostgreSQL, and a
conditional update that only one process wins), so several scheduler processes never
post a row twice at once. Delivery is at least once: a process that dies mid-post leaves
a `sending` row that is given back after STALE_CLAIM, so receivers de-duplicate on the
event `id`. The URL check, the SSRF guard and the HTTP itself are `outbound`'s.
"""

import hashlib
import hmac
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select, update

from capture import claims, clock
from capture.db import db
from capture.models import Webhook, WebhookDelivery
from capture.webhooks import outbound
from capture.wording import counted

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Capture-Signature"
# A claimed row whose outcome was not written this long after its attempt started
# belongs to a process that died: it is given back. Far above the longest attempt
# (WEBHOOK_TIMEOUT_SECONDS is at most 60, and a run stops starting attempts after
# RUN_SECONDS, so no claim waits longer than that for its attempt).
STALE_CLAIM = timedelta(minutes=5)
RUN_SECONDS = 60
# Back-off between attempts: 1, 2, 4 … minutes, at most an hour, ±20 % jitter.
FIRST_BACKOFF_SECONDS = 60
MAX_BACKOFF_SECONDS = 3600


# --- signing ------------------------------------------------------------------------

def sign(secret: str, timestamp: int, body: str) -> str:
    """Hex HMAC-SHA256 of "<timestamp>.<body>" keyed by the webhook's secret."""
    message = f"{timestamp}.{body}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def request_headers(delivery_id: int, event: str, secret: str, body: str,
                    timestamp: int) -> dict[str, str]:
    """The headers of one attempt (the signature is made afresh for each)."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "Capture-Webhooks/1",
        "Capture-Event": event,
        "Capture-Delivery": str(delivery_id),
        SIGNATURE_HEADER: f"t={timestamp},v1={sign(secret, timestamp, body)}",
    }


# --- the scheduler's run ---------------------------------------------------------

@dataclass
class Summary:
    """What one delivery run did."""

    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    given_back: int = 0

    def line(self) -> str:
        """The one-line summary `webhooks send-due` prints."""
        return (f"webhooks: delivered {self.delivered}, retrying {self.retrying}, "
                f"failed {self.failed}, given back {self.given_back}")

    def busy(self) -> bool:
        """True when the run did anything worth logging."""
        return bool(self.delivered or self.retrying or self.failed or self.given_back)


def deliver_due(limit: int | None = None) -> Summary:
    """Post every due delivery of an active webhook (at most `limit`, default
    WEBHOOK_BATCH_SIZE). An endpoint that gave no answer is not tried again in this
    run (its other rows wait for the next); one row's unexpected error fails that
    row alone, with the error as its reason."""
    summary = Summary()
    now = clock.utcnow()
    summary.given_back = _give_back_stale(now)
    claimed = _claim(now, limit or current_app.config["WEBHOOK_BATCH_SIZE"])
    started = time.monotonic()
    unreachable: set[int] = set()
    for index, delivery_id in enumerate(claimed):
        if time.monotonic() - started > RUN_SECONDS:
            _release(claimed[index:])
            break
        delivery = db.session.get(WebhookDelivery, delivery_id)
        if delivery is None:  # its webhook was deleted meanwhile
            continue
        webhook_id = delivery.webhook_id
        if webhook_id in unreachable:
            _release([delivery_id])
            continue
        try:
            outcome = attempt(delivery)
        except Exception as error:  # a bug must not strand the rest of the run
            log.exception("webhook delivery %s failed unexpectedly", delivery_id)
            db.session.rollback()
            _fail_unexpected(delivery_id, error)
            summary.failed += 1
            continue
        setattr(summary, outcome, getattr(summary, outcome) + 1)
        if outcome != "delivered" and _no_answer(delivery_id):
            unreachable.add(webhook_id)
    return summary


def _give_back_stale(now: datetime) -> int:
    """Rows left `sending` by a process that died go back to the queue."""
    result = db.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.status == "sending",
               WebhookDelivery.claimed_at < now - STALE_CLAIM)
        .values(status="pending", next_attempt_at=now)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return result.rowcount or 0


def _claim(now: datetime, limit: int) -> list[int]:
    """Take due rows of active webhooks for this process (see `claims.claim`)."""
    query = (
        select(WebhookDelivery.id)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now,
               Webhook.active.is_(True))
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    )
    return claims.claim(WebhookDelivery, query, WebhookDelivery.status, "pending",
                        {"status": "sending", "claimed_at": now})


def _release(delivery_ids: list[int], later: bool = False) -> None:
    """Give claimed rows back unattempted (`later`: not before HOLD_MINUTES)."""
    now = clock.utcnow()
    due = now + timedelta(minutes=current_app.config["HOLD_MINUTES"]) if later else now
    db.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(delivery_ids), WebhookDelivery.status == "sending")
        .values(status="pending", claimed_at=None, next_attempt_at=due)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def _fail_unexpected(delivery_id: int, error: Exception) -> None:
    """A row whose attempt raised (a bug, not an answer): failed with the error as
    its reason, for the owner to see and resend; the run goes on."""
    db.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == "sending")
        .values(status="failed", error=claims.unexpected(error)[:500], next_attempt_at=None)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def _no_answer(delivery_id: int) -> bool:
    """True when the last attempt got no HTTP answer at all (down, timed out)."""
    return db.session.scalar(
        select(WebhookDelivery.status_code).where(WebhookDelivery.id == delivery_id)
    ) is None


def attempt(delivery: WebhookDelivery, retry: bool = True) -> str:
    """Post one claimed (`sending`) delivery and record the outcome; return
    'delivered', 'retrying' or 'failed'. No transaction is open during the POST.
    `retry=False` (test events): a failure is final."""
    config = current_app.config
    webhook = delivery.webhook
    delivery_id, url, event = delivery.id, webhook.url, delivery.event
    body, created_at, attempts = delivery.body, delivery.created_at, delivery.attempts + 1
    timestamp = int(clock.utcnow().replace(tzinfo=UTC).timestamp())
    headers = request_headers(delivery_id, event, webhook.secret, body, timestamp)
    db.session.commit()  # end the read: the POST may take WEBHOOK_TIMEOUT_SECONDS
    status_code = response_ms = None
    final = False
    try:
        response = outbound.post(url, body.encode(), headers,
                                 timeout=config["WEBHOOK_TIMEOUT_SECONDS"],
                                 allow_private=config["WEBHOOK_ALLOW_PRIVATE"])
    except (outbound.Refused, outbound.UrlError) as error:
        error_text, final = str(error), True
    except outbound.ConnectError as error:
        error_text = str(error)
    else:
        status_code, response_ms = response.status, response.elapsed_ms
        error_text = _answer_error(response)
    now = clock.utcnow()
    values: dict[str, Any] = {"attempts": attempts, "status_code": status_code,
                              "response_ms": response_ms, "error": error_text[:500]}
    if not error_text:
        outcome = "delivered"
        values.update(status="delivered", delivered_at=now, next_attempt_at=None)
    elif final or not retry or now >= created_at + timedelta(hours=config["WEBHOOK_RETRY_HOURS"]):
        outcome = "failed"
        if not final and retry:
            values["error"] = (f"gave up after {counted(attempts, 'attempt')}: "
                               f"{error_text}")[:500]
        values.update(status="failed", next_attempt_at=None)
    else:
        outcome = "retrying"
        values.update(status="pending", next_attempt_at=now + _backoff(attempts))
    db.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == "sending")
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return outcome


def _answer_error(response: outbound.Response) -> str:
    """'' for a 2xx answer, else what to show the owner."""
    if 200 <= response.status < 300:
        return ""
    if 300 <= response.status < 400:
        where = f" to {response.location}" if response.location else ""
        return f"HTTP {response.status}: redirect{where} not followed (use the final URL)"
    excerpt = " ".join(response.excerpt.split())[:200]
    return f"HTTP {response.status}" + (f": {excerpt}" if excerpt else "")


def _backoff(attempts: int) -> timedelta:
    """Wait before the next attempt: doubles from a minute up to an hour, with
    jitter so that many failures do not all come back at the same moment."""
    seconds = min(FIRST_BACKOFF_SECONDS * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)
    return timedelta(seconds=seconds * random.uniform(0.8, 1.2))
