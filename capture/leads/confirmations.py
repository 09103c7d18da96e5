"""The confirmation email queue: every double opt-in email is sent from here, by the
scheduler, never inside a request (how long an opt-in takes must not tell whether the
address was new, known or suppressed).

A lead is queued (`Lead.confirmation_due_at`, see `lifecycle.queued_confirmation`) at its
opt-in, at a repeat opt-in (at most once in CONFIRM_RESEND_MINUTES), when it is
imported without consent and when the owner approves a lead that never got the email.
The scheduler's fast lane (CAPTURE_CONFIRM_INTERVAL_SECONDS) sends what is due, within
what the sending rate cap leaves of the current minute. A failed attempt is recorded
on the lead (the reason, and a `confirmation_failed` event) and tried again later; a
lead still waiting CONFIRM_WITHIN_DAYS after it was queued is left alone.
"""

import logging
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select, update

from capture import claims, clock
from capture.leads import lifecycle
from capture.mail import backends
from capture.mail import compose
from capture.mail import work_queue
from capture.db import db
from capture.models import Lead
from capture.timeline import insert_event

log = logging.getLogger(__name__)

# Leads still waiting this long after they were queued are left alone.
CONFIRM_WITHIN_DAYS = 7
# Confirmation emails failing one after the other before a run stops (the next run
# tries again).
CONFIRM_FAILURES_IN_A_ROW = 3
# A failed attempt is tried again after as long as the lead has waited so far (so the
# waits double), within these bounds.
RETRY_MIN_SECONDS = 30
RETRY_MAX_SECONDS = 3600


def send_queued() -> int:
    """Email the confirmation link to the leads whose turn it is, within what the
    rate cap leaves this minute; return how many went out. Safe in several schedulers
    at once: each lead is claimed (a conditional update on its due time) before
    sending. One lead's failure, expected or not, never stops the others; a failure
    of the mail server itself ends the run and moves the due leads to its retry time."""
    now = clock.utcnow()
    # The queue first: most runs find it empty, and then cost this one indexed read.
    due = db.session.execute(
        select(Lead.id, Lead.confirmation_due_at)
        .where(Lead.confirmation_due_at <= now)
        .order_by(Lead.confirmation_due_at, Lead.id)
        .limit(current_app.config["SEND_BATCH_SIZE"])
    ).all()
    due = due[:max(work_queue.rate_budget(now), 0)] if due else due
    if not due:
        return 0
    sent = failures = 0
    backend = backends.open_backend()
    try:
        for lead_id, due_at in due:
            try:
                outcome = _attempt(lead_id, due_at, now, backend)
            except Exception as error:  # the database, say: this lead only
                log.exception("confirmation email to lead %s failed unexpectedly", lead_id)
                db.session.rollback()
                _after_unexpected(lead_id, due_at, now, error)
                outcome = "failed"
            if outcome == "sent":
                sent, failures = sent + 1, 0
            elif outcome == "server":
                break
            elif outcome == "failed":
                failures += 1
                if failures >= CONFIRM_FAILURES_IN_A_ROW:
                    log.warning("queued confirmation emails stopped after %s failures in "
                                "a row; the next run tries again", failures)
                    break
    finally:
        backend.close()
    return sent


def _attempt(lead_id: int, due_at: datetime, now: datetime, backend) -> str:
    """Send one lead's confirmation: 'sent', 'failed' (this email), 'server' (the mail
    server or our account failed: the rest would fail too) or 'skipped' (no longer
    waiting, or taken by another scheduler)."""
    lead = db.session.get(Lead, lead_id)
    if lead is None:
        return "skipped"
    if not _still_waiting(lead, now):
        _leave_queue(lead_id, due_at)
        return "skipped"
    previous, queued_at, page_id = (lead.confirmation_sent_at, lead.confirmation_queued_at,
                                    lead.page_id)
    # Taken until SENDING_TIMEOUT_MINUTES from now: a scheduler that dies while
    # sending leaves the lead to be tried again after that.
    lease = now + timedelta(minutes=current_app.config["SENDING_TIMEOUT_MINUTES"])
    claimed = db.session.execute(
        update(Lead).where(Lead.id == lead_id, Lead.confirmation_due_at == due_at)
        .values(confirmation_due_at=lease, confirmation_sent_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    if not claimed:
        return "skipped"
    try:
        message = compose.confirmation_message(lead, lead.page, lifecycle.confirm_url(lead))
        backend.send(message)
    except backends.MailError as error:
        log.warning("confirmation email to lead %s not sent: %s", lead_id, error)
        retry_at = _retry_at(queued_at, now) if error.temporary else None
        _failed(lead_id, page_id, lease, str(error), retry_at,
                sent_at=now if error.unknown else previous)
        if not error.transport:
            return "failed"
        if retry_at is not None:
            _postpone_due(now, retry_at)
        return "server"
    except Exception as error:  # a message that cannot be built, a broken connection
        log.exception("confirmation email to lead %s failed unexpectedly", lead_id)
        db.session.rollback()
        backend.close()  # the connection may be mid-dialogue; the next email reopens it
        _failed(lead_id, page_id, lease, _unexpected(error), _retry_at(queued_at, now),
                sent_at=previous)
        return "failed"
    db.session.execute(
        update(Lead).where(Lead.id == lead_id, Lead.confirmation_due_at == lease)
        .values(confirmation_due_at=None, confirmation_error=None)
        .execution_options(synchronize_session=False))
    insert_event(lead_id, page_id, "confirmation_sent")
    db.session.commit()
    return "sent"


def _still_waiting(lead: Lead, now: datetime) -> bool:
    """True while the lead still needs its confirmation email."""
    queued_at = lead.confirmation_queued_at or lead.confirmation_due_at
    return (lead.subscription == "unconfirmed" and lead.review != "rejected"
            and lead.page is not None and queued_at is not None
            and queued_at >= now - timedelta(days=CONFIRM_WITHIN_DAYS))


def _leave_queue(lead_id: int, due_at: datetime) -> None:
    db.session.execute(
        update(Lead).where(Lead.id == lead_id, Lead.confirmation_due_at == due_at)
        .values(confirmation_due_at=None).execution_options(synchronize_session=False))
    db.session.commit()


def _retry_at(queued_at: datetime | None, now: datetime) -> datetime:
    """When a failed attempt is tried again: after as long as the lead has waited."""
    waited = (now - queued_at).total_seconds() if queued_at is not None else 0
    return now + timedelta(seconds=min(max(waited, RETRY_MIN_SECONDS), RETRY_MAX_SECONDS))


def _failed(lead_id: int, page_id: int | None, lease: datetime, reason: str,
            retry_at: datetime | None, *, sent_at: datetime | None) -> None:
    """Record a failed attempt: the reason on the lead and on its timeline. The lead
    waits for `retry_at`, or with None (the server refused this email for good, or
    may have kept it) leaves the queue. `sent_at`: the time the resend rule reads,
    the earlier one again unless the server may have kept the message."""
    reason = reason[:300]
    changed = db.session.execute(
        update(Lead).where(Lead.id == lead_id, Lead.confirmation_due_at == lease)
        .values(confirmation_error=reason, confirmation_due_at=retry_at,
                confirmation_sent_at=sent_at)
        .execution_options(synchronize_session=False)).rowcount
    if changed:
        insert_event(lead_id, page_id, "confirmation_failed", error=reason)
    db.session.commit()


def _postpone_due(now: datetime, until: datetime) -> None:
    """The mail server failed: every lead due now waits until `until` too (each would
    fail the same way, and a failing server is not asked again every few seconds)."""
    db.session.execute(
        update(Lead).where(Lead.confirmation_due_at <= now)
        .values(confirmation_due_at=until).execution_options(synchronize_session=False))
    db.session.commit()


def _after_unexpected(lead_id: int, due_at: datetime, now: datetime, error: Exception) -> None:
    """A lead whose attempt failed outside the sending itself waits for a retry, so
    it does not come first in every run."""
    try:
        queued_at = db.session.scalar(
            select(Lead.confirmation_queued_at).where(Lead.id == lead_id))
        db.session.execute(
            update(Lead).where(Lead.id == lead_id, Lead.confirmation_due_at == due_at)
            .values(confirmation_due_at=_retry_at(queued_at, now),
                    confirmation_error=_unexpected(error)[:300])
            .execution_options(synchronize_session=False))
        db.session.commit()
    except Exception:
        log.exception("could not record the failed confirmation of lead %s", lead_id)
        db.session.rollback()


def _unexpected(error: Exception) -> str:
    """An unexpected error as the owner reads it."""
    return f"unexpected error: {claims.unexpected(error)}"
