"""Outgoing webhooks: the events, their JSON payload and signature, the delivery rows
written in the same transaction as the change they report (an outbox), and their
delivery by the scheduler with retries.

A visitor's request only inserts rows; the scheduler posts them. Rows are claimed like
sequence emails (`FOR UPDATE SKIP LOCKED` on PostgreSQL, and a conditional update that
only one process wins), so several scheduler processes never post a row twice at once.
Delivery is at least once: a process that dies mid-post leaves a `sending` row that is
given back after STALE_CLAIM, so receivers de-duplicate on the event `id`.
"""

import hashlib
import hmac
import json
import logging
import random
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from flask import current_app
from sqlalchemy import func, insert, select, true, update
from sqlalchemy.orm import joinedload

from capture import claims, clock
from capture.webhooks import outbound
from capture.db import db
from capture.models import UTM_KEYS, Lead, Webhook, WebhookDelivery

log = logging.getLogger(__name__)

EVENTS = ("lead.created", "lead.confirmed", "lead.approved", "lead.rejected",
          "lead.unsubscribed", "upgrade.recorded")
# Sent only by the dashboard's "Send a test event", to one endpoint.
TEST_EVENT = "webhook.test"
STATUSES = ("pending", "sending", "delivered", "failed")
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


# --- emission (inside the caller's transaction) -----------------------------------

# Built once: emit() runs in every opt-in, and a ready Core statement costs a
# quarter of the equivalent ORM query.
_WEBHOOKS = Webhook.__table__
_ACTIVE_WEBHOOKS = (select(_WEBHOOKS.c.id, _WEBHOOKS.c.events, _WEBHOOKS.c.page_id)
                    .where(_WEBHOOKS.c.active == true()))
_INSERT_DELIVERY = insert(WebhookDelivery.__table__)


def emit(event: str, lead: Lead, page_id: int | None = None,
         extra: dict[str, Any] | None = None) -> int:
    """Queue `event` about `lead` for every active webhook that wants it (the event
    is subscribed and the page filter, if any, is the lead's page or `page_id`).

    Writes rows in the session's transaction only: they commit, or roll back, with
    the change they report. Returns how many were queued. `extra`: more top-level
    payload keys."""
    return emit_many((event,), lead, page_id, extra)


def emit_many(events: Sequence[str], lead: Any, page_id: int | None = None,
              extra: dict[str, Any] | None = None) -> int:
    """`emit` for several events about one lead, in order, with one look-up of the
    endpoints (an auto-approved opt-in is `lead.created` and `lead.approved`).
    `lead` is a Lead or any object with its attributes (see `lead_data`)."""
    for event in events:
        if event not in EVENTS:
            raise ValueError(f"unknown webhook event {event!r}")
    page_id = lead.page_id if page_id is None else page_id
    db.session.flush()  # an endpoint added in this transaction counts (as autoflush did)
    connection = db.session.connection()
    hooks = connection.execute(_ACTIVE_WEBHOOKS).all()
    rows = []
    now = clock.utcnow()
    for event in events:
        targets = [hook.id for hook in hooks if event in (hook.events or [])
                   and hook.page_id in (None, page_id)]
        if targets:
            body = encode(payload(event, lead, now, extra))
            rows += [{"webhook_id": webhook_id, "event": event, "body": body,
                      "status": "pending", "created_at": now, "next_attempt_at": now}
                     for webhook_id in targets]
    if rows:
        connection.execute(_INSERT_DELIVERY, rows)
    return len(rows)


def payload(event: str, lead: Any, occurred_at: datetime,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON document posted for an event (its shape is documented in
    docs/integrate/webhooks.md and only ever grows)."""
    return {"id": f"evt_{secrets.token_hex(12)}", "event": event,
            "occurred_at": _time(occurred_at), "lead": lead_data(lead), **(extra or {})}


def lead_data(lead: Any) -> dict[str, Any]:
    """A lead as webhooks describe it: its public ref as `id`, never the row id."""
    page = lead.page
    return {
        "id": lead.public_ref,
        "email": lead.email,
        "name": lead.name,
        "country": lead.country,
        "page": page.slug if page is not None else None,
        "review": lead.review,
        "review_reason": lead.review_reason or "",
        "subscription": lead.subscription,
        "attribution": {key: getattr(lead, key) for key in (*UTM_KEYS, "ref", "referrer")},
        "fields": dict(lead.fields or {}),
        "consent": {"text": lead.consent_text or "", "at": _time(lead.consent_at)},
        "created_at": _time(lead.created_at),
        "confirmed_at": _time(lead.confirmed_at),
    }


def upgrade_data(upgrade: Any) -> dict[str, Any]:
    """The `upgrade` key of an `upgrade.recorded` payload."""
    return {"upgrade": {"amount": f"{Decimal(upgrade.amount):.2f}",
                        "currency": upgrade.currency, "txn": upgrade.txn,
                        "source": upgrade.source}}


def encode(document: dict[str, Any]) -> str:
    """The exact body that is stored, signed and posted (ASCII JSON)."""
    return json.dumps(document, separators=(",", ":"))


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="milliseconds") + "Z"


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


def new_secret() -> str:
    """A signing secret for a new endpoint."""
    return "whsec_" + secrets.token_urlsafe(32)


# --- delivery (the scheduler) -------------------------------------------------------

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
            tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
            values["error"] = f"gave up after {tries}: {error_text}"[:500]
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


# --- the owner's actions ------------------------------------------------------------

def check_url(url: str) -> str:
    """The URL cleaned when it can receive webhooks; outbound.UrlError otherwise."""
    return outbound.check_url(url, current_app.config["WEBHOOK_ALLOW_PRIVATE"])


def resend(delivery: WebhookDelivery) -> None:
    """Queue a delivery again (the owner's button): pending, due now. Its attempts
    count goes on; after WEBHOOK_RETRY_HOURS a failed attempt is final at once.
    ValueError with a sentence for the owner when it is being posted right now."""
    if delivery.status == "sending":
        raise ValueError("This delivery is being posted right now: reload in a moment.")
    changed = db.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery.id, WebhookDelivery.status == delivery.status)
        .values(status="pending", next_attempt_at=clock.utcnow(), claimed_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    if not changed:
        raise ValueError("This delivery changed state meanwhile: reload the page.")


def send_test(webhook: Webhook) -> WebhookDelivery:
    """Post a `webhook.test` event about a made-up lead to this endpoint now (even
    when it is disabled), without retries; return the delivery with its outcome."""
    now = clock.utcnow()
    attribution = {key: None for key in (*UTM_KEYS, "ref", "referrer")}
    sample = SimpleNamespace(
        public_ref="sample-ref", email="jane@example.com", name="Jane Doe", country=None,
        page=webhook.page or SimpleNamespace(slug="sample-page"), review="approved",
        review_reason="", subscription="subscribed", fields={"company": "Example Ltd"},
        consent_text="Send me the guide and occasional emails.", consent_at=now,
        created_at=now, confirmed_at=now, **{**attribution, "utm_source": "test"})
    body = encode(payload(TEST_EVENT, sample, now))
    delivery = WebhookDelivery(webhook_id=webhook.id, event=TEST_EVENT, body=body,
                               status="sending", created_at=now, claimed_at=now,
                               next_attempt_at=None)
    db.session.add(delivery)
    db.session.commit()
    attempt(delivery, retry=False)
    db.session.refresh(delivery)
    return delivery


def deliveries_of(webhook_id: int, status: str | None = None, *, offset: int = 0,
                  limit: int = 50) -> tuple[list[WebhookDelivery], int]:
    """A webhook's deliveries, newest first (or only those in `status`), and how
    many there are."""
    condition = WebhookDelivery.webhook_id == webhook_id
    if status in STATUSES:
        condition = condition & (WebhookDelivery.status == status)
    total = db.session.scalar(select(func.count()).select_from(WebhookDelivery)
                              .where(condition))
    rows = db.session.scalars(select(WebhookDelivery).where(condition)
                              .order_by(WebhookDelivery.id.desc())
                              .offset(offset).limit(limit)).all()
    return list(rows), total or 0


def overview() -> list[tuple[Webhook, dict[str, int], WebhookDelivery | None]]:
    """Every webhook with its count of pending and failed deliveries and its latest."""
    hooks = db.session.scalars(select(Webhook).options(joinedload(Webhook.page))
                               .order_by(Webhook.id)).all()
    counts: dict[int, dict[str, int]] = {hook.id: {} for hook in hooks}
    for webhook_id, status, number in db.session.execute(
        select(WebhookDelivery.webhook_id, WebhookDelivery.status, func.count())
        .where(WebhookDelivery.status.in_(("pending", "sending", "failed")))
        .group_by(WebhookDelivery.webhook_id, WebhookDelivery.status)
    ):
        counts.setdefault(webhook_id, {})[status] = number
    rows = []
    for hook in hooks:
        latest = db.session.scalar(select(WebhookDelivery)
                                   .where(WebhookDelivery.webhook_id == hook.id)
                                   .order_by(WebhookDelivery.id.desc()).limit(1))
        rows.append((hook, counts[hook.id], latest))
    return rows


def delete(webhook: Webhook) -> None:
    """Remove an endpoint and its deliveries."""
    db.session.execute(
        WebhookDelivery.__table__.delete().where(WebhookDelivery.webhook_id == webhook.id))
    db.session.delete(webhook)
    db.session.commit()
