"""Sending: enrolment, due steps, claims before the SMTP call, outcomes and retries.

Each (lead, sequence, step) has at most one delivery row (a unique key). The row is
committed as `sending` before the message is handed to the mail backend and updated
after, so a crash in between leaves it `sending`, which turns `unknown` after
SENDING_TIMEOUT_MINUTES: visible to the owner, never resent silently.
"""

import hashlib
import logging
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from capture import clock, engagement, mail, rendering, tokens
from capture.extensions import db
from capture.models import (
    Delivery,
    Enrollment,
    Lead,
    SequenceVersion,
    Suppression,
    Upgrade,
)
from capture.sequences import Library, Sequence, Step
from capture.timeline import record_event

log = logging.getLogger(__name__)


def library() -> Library:
    """The app's sequence library (re-reads folders when their files change)."""
    return current_app.extensions["capture.sequences"]


def init_app(app) -> None:
    """Give the app its sequence library."""
    app.extensions["capture.sequences"] = Library(app.config["SEQUENCES_DIR"])


# --- timing -----------------------------------------------------------------------

def _local(moment: datetime, sequence: Sequence) -> datetime:
    return moment.replace(tzinfo=UTC).astimezone(sequence.timezone)


def _utc(local: datetime) -> datetime:
    return local.astimezone(UTC).replace(tzinfo=None)


def due_time(sequence: Sequence, step: Step, after: datetime) -> datetime:
    """When a step is due: `after` plus its delay, moved to its `at` time of day and
    then into the sequence's send window (both in the sequence's timezone)."""
    due = after + step.delay
    if step.at is not None:
        # A delay in whole days counts days of the local calendar: `delay: 1d, at: 09:00`
        # after a step sent at 09:00:05 is the next day at 09:00, also across a clock
        # change (not the day after, as "first 09:00 after 24 hours" would make it).
        days, rest = divmod(step.delay, timedelta(days=1))
        local = _local(due if rest else after, sequence)
        day = local.date() + timedelta(days=0 if rest else days)
        candidate = datetime.combine(day, step.at, tzinfo=sequence.timezone)
        if candidate < local:
            candidate = datetime.combine(day + timedelta(days=1), step.at,
                                         tzinfo=sequence.timezone)
        due = _utc(candidate)
    return into_send_window(sequence, due)


def into_send_window(sequence: Sequence, due: datetime) -> datetime:
    """The first moment at or after `due` inside the send window (if there is one)."""
    if sequence.send_window is None:
        return due
    start, end = sequence.send_window
    local = _local(due, sequence)
    now = local.time()
    inside = start <= now < end if start < end else (now >= start or now < end)
    if inside:
        return due
    day = local.date()
    if start < end and now >= end:
        day += timedelta(days=1)
    return _utc(datetime.combine(day, start, tzinfo=sequence.timezone))


# --- enrolment --------------------------------------------------------------------

def enroll(lead: Lead) -> Enrollment | None:
    """Put an approved, subscribed lead into its page's sequence (once).

    Called whenever a lead's state changes; the caller commits."""
    if lead.review != "approved" or lead.subscription != "subscribed":
        return None
    page = lead.page
    if page is None or not page.sequence:
        return None
    existing = db.session.scalar(
        select(Enrollment).where(Enrollment.lead_id == lead.id,
                                 Enrollment.sequence == page.sequence)
    )
    if existing is not None:
        return existing
    now = clock.utcnow()
    enrollment = Enrollment(lead_id=lead.id, sequence=page.sequence, started_at=now,
                            state="active", next_due_at=now)
    sequence = library().get(page.sequence)
    if sequence is not None and sequence.steps:
        enrollment.next_due_at = due_time(sequence, sequence.steps[0], now)
    db.session.add(enrollment)
    record_event(lead, "enroll", sequence=page.sequence)
    return enrollment


def stop(lead: Lead, reason: str) -> None:
    """Stop every sequence of a lead (unsubscribed, bounced, rejected …)."""
    db.session.execute(
        update(Enrollment)
        .where(Enrollment.lead_id == lead.id, Enrollment.state.in_(("active", "waiting")))
        .values(state="stopped", stop_reason=reason, next_due_at=None)
    )


# --- the tick ---------------------------------------------------------------------

@dataclass
class Summary:
    """What one tick did."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    bounced: int = 0
    held: int = 0
    unknown: int = 0
    stopped: int = 0
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        """The one-line summary `send-due` prints."""
        return (f"sent {self.sent}, retrying {self.retried}, failed {self.failed}, "
                f"bounced {self.bounced}, held {self.held}, stopped {self.stopped}, "
                f"unknown {self.unknown}")


def tick() -> Summary:
    """One scheduler run: wake, claim, render and send what is due, record outcomes."""
    summary = Summary()
    now = clock.utcnow()
    _wake_changed_sequences(now)
    summary.unknown = _mark_unknown(now)
    budget = min(_budget(now), current_app.config["SEND_BATCH_SIZE"])
    if budget <= 0:
        return summary
    backend = mail.open_backend()
    try:
        for delivery_id in _claim_retries(now, budget):
            _resend(db.session.get(Delivery, delivery_id), backend, summary)
            budget -= 1
        if budget > 0:
            for enrollment_id in _claim_enrollments(now, budget):
                _advance(db.session.get(Enrollment, enrollment_id), backend, summary)
    finally:
        backend.close()
    return summary


def _budget(now: datetime) -> int:
    """How many messages the rate cap still allows in the current minute."""
    sent = db.session.scalar(
        select(func.count()).select_from(Delivery)
        .where(Delivery.sent_at > now - timedelta(minutes=1))
    )
    return current_app.config["SEND_RATE_PER_MINUTE"] - (sent or 0)


def _wake_changed_sequences(now: datetime) -> None:
    """When a folder changed, leads that had every step so far look again: a step
    added at the end reaches them, one added before their position does not."""
    for sequence in library().all():
        signature = hashlib.sha256(repr(sequence.signature).encode()).hexdigest()
        row = db.session.get(SequenceVersion, sequence.name)
        if row is not None and row.signature == signature:
            continue
        try:
            if row is None:
                db.session.add(SequenceVersion(name=sequence.name, signature=signature))
            else:
                row.signature, row.updated_at = signature, now
            db.session.execute(
                update(Enrollment)
                .where(Enrollment.sequence == sequence.name, Enrollment.state == "waiting")
                .values(state="active", next_due_at=now)
            )
            db.session.commit()
        except IntegrityError:  # another process recorded it at the same moment
            db.session.rollback()


def _mark_unknown(now: datetime) -> int:
    """Deliveries claimed long ago with no outcome: the process died mid-send."""
    timeout = timedelta(minutes=current_app.config["SENDING_TIMEOUT_MINUTES"])
    result = db.session.execute(
        update(Delivery)
        .where(Delivery.status == "sending", Delivery.claimed_at < now - timeout)
        .values(status="unknown", error="no outcome recorded: the sender stopped mid-send")
    )
    db.session.commit()
    return result.rowcount or 0


def _claim(model, ids_query, state_column, from_state: str, values: dict) -> list[int]:
    """Take rows for this process: locked rows are skipped on PostgreSQL, and the
    conditional update makes a row ours only if nobody took it first."""
    candidates = db.session.scalars(ids_query.with_for_update(skip_locked=True)).all()
    if not candidates:
        db.session.commit()
        return []
    claimed = db.session.scalars(
        update(model)
        .where(model.id.in_(candidates), state_column == from_state)
        .values(**values)
        .returning(model.id)
    ).all()
    db.session.commit()
    return sorted(claimed, key=candidates.index)


def _claim_retries(now: datetime, limit: int) -> list[int]:
    query = (select(Delivery.id)
             .where(Delivery.status == "retry", Delivery.retry_at <= now)
             .order_by(Delivery.retry_at).limit(limit))
    return _claim(Delivery, query, Delivery.status, "retry",
                  {"status": "sending", "claimed_at": now})


def _claim_enrollments(now: datetime, limit: int) -> list[int]:
    query = (select(Enrollment.id)
             .where(Enrollment.state == "active", Enrollment.next_due_at <= now)
             .order_by(Enrollment.next_due_at).limit(limit))
    return _claim(Enrollment, query, Enrollment.state, "active", {"state": "sending"})


def _should_stop(lead: Lead, sequence: Sequence) -> str:
    """Why this lead must get nothing more from the sequence, or ''."""
    if lead.subscription != "subscribed":
        return lead.subscription
    if lead.review != "approved":
        return lead.review
    if "upgrade" in sequence.stop_on:
        upgraded = db.session.scalar(
            select(Upgrade.id).where(Upgrade.lead_id == lead.id).limit(1)
        )
        if upgraded:
            return "upgrade"
    return ""


def _advance(enrollment: Enrollment, backend, summary: Summary) -> None:
    """Send the lead its next step if it is due, else put it back in the queue."""
    now = clock.utcnow()
    lead = enrollment.lead
    sequence = library().get(enrollment.sequence)
    reason = "sequence folder missing" if sequence is None else _should_stop(lead, sequence)
    if reason:
        enrollment.state, enrollment.stop_reason, enrollment.next_due_at = "stopped", reason, None
        summary.stopped += 1
        db.session.commit()
        return
    remaining = sequence.steps_after(enrollment.last_step, enrollment.last_filename)
    if not remaining:
        enrollment.state, enrollment.next_due_at = "waiting", None
        db.session.commit()
        return
    step = remaining[0]
    due = due_time(sequence, step, enrollment.last_sent_at or enrollment.started_at)
    if not step.ok or due > now:
        if not step.ok:
            summary.held += 1
            due = now + timedelta(minutes=current_app.config["HOLD_MINUTES"])
        enrollment.state, enrollment.next_due_at = "active", due
        db.session.commit()
        return
    delivery = Delivery(lead_id=lead.id, enrollment_id=enrollment.id, sequence=sequence.name,
                        step=step.key, filename=step.filename, status="sending",
                        claimed_at=now)
    db.session.add(delivery)
    try:
        db.session.commit()  # the claim: committed before any SMTP traffic
    except IntegrityError:
        db.session.rollback()
        _resolve_existing(enrollment, step, summary)
        return
    _deliver(delivery, enrollment, sequence, step, backend, summary)


def _resolve_existing(enrollment: Enrollment, step: Step, summary: Summary) -> None:
    """The step already has a delivery row: move on if it was sent, else wait on it."""
    existing = db.session.scalar(
        select(Delivery).where(Delivery.lead_id == enrollment.lead_id,
                               Delivery.sequence == enrollment.sequence,
                               Delivery.step == step.key)
    )
    if existing is not None and existing.status in ("sent", "failed"):
        _move_past(enrollment, step, existing.sent_at or clock.utcnow())
    db.session.commit()


def _resend(delivery: Delivery, backend, summary: Summary) -> None:
    """Try a delivery again after a temporary failure."""
    lead = delivery.lead
    enrollment = (db.session.get(Enrollment, delivery.enrollment_id)
                  if delivery.enrollment_id else None)
    sequence = library().get(delivery.sequence)
    step = sequence.step(delivery.step) if sequence is not None else None
    reason = "" if sequence is None else _should_stop(lead, sequence)
    if step is None or not step.ok or reason:
        delivery.status = "failed"
        delivery.error = reason and f"lead {reason}" or "the step is missing or broken"
        if enrollment is not None:
            if reason:
                enrollment.state, enrollment.stop_reason = "stopped", reason
            elif sequence is not None:
                _move_past(enrollment, None, clock.utcnow(), filename=delivery.filename,
                           key=delivery.step, sequence=sequence)
        summary.failed += 1
        db.session.commit()
        return
    _deliver(delivery, enrollment, sequence, step, backend, summary)


def _deliver(delivery: Delivery, enrollment: Enrollment | None, sequence: Sequence,
             step: Step, backend, summary: Summary) -> None:
    """Render and hand over one message, then record what happened."""
    lead = delivery.lead
    now = clock.utcnow()
    delivery.attempts += 1
    try:
        message = rendering.step_message(
            sequence, step, lead, lead.page, delivery_id=delivery.id,
            unsubscribe_url=tokens.unsubscribe_url(lead.public_ref),
            track_link=engagement.link_tracker(delivery.id),
            pixel_url=engagement.pixel_url(delivery.id),
        )
        delivery.subject = str(message["Subject"])[:300]
        delivery.message_id = str(message["Message-ID"])
        backend.send(message)
    except rendering.RenderError as error:
        _fail(delivery, enrollment, sequence, step, str(error), summary)
        return
    except mail.MailError as error:
        _mail_error(delivery, enrollment, sequence, step, error, summary)
        return
    delivery.status, delivery.sent_at, delivery.error, delivery.retry_at = "sent", now, "", None
    record_event(lead, "send", delivery_id=delivery.id, sequence=sequence.name,
                 step=step.key, subject=delivery.subject)
    if enrollment is not None:
        _move_past(enrollment, step, now, sequence=sequence)
    summary.sent += 1
    db.session.commit()


def _move_past(enrollment: Enrollment, step: Step | None, sent_at: datetime, *,
               sequence: Sequence | None = None, key: str | None = None,
               filename: str | None = None) -> None:
    """Record the step as done and schedule the next one (or wait for new steps)."""
    enrollment.last_step = step.key if step else key
    enrollment.last_filename = step.filename if step else filename
    enrollment.last_sent_at = sent_at
    sequence = sequence or library().get(enrollment.sequence)
    remaining = (sequence.steps_after(enrollment.last_step, enrollment.last_filename)
                 if sequence else [])
    if remaining:
        enrollment.state = "active"
        enrollment.next_due_at = due_time(sequence, remaining[0], sent_at)
    else:
        enrollment.state, enrollment.next_due_at = "waiting", None


def _fail(delivery, enrollment, sequence, step, error: str, summary: Summary) -> None:
    """A permanent failure of this message: record it and let the lead move on."""
    delivery.status, delivery.error, delivery.retry_at = "failed", error[:500], None
    if enrollment is not None:
        _move_past(enrollment, step, clock.utcnow(), sequence=sequence)
    summary.failed += 1
    db.session.commit()


def _mail_error(delivery, enrollment, sequence, step, error: mail.MailError,
                summary: Summary) -> None:
    now = clock.utcnow()
    config = current_app.config
    if error.temporary:
        give_up_at = delivery.created_at + timedelta(hours=config["RETRY_HOURS"])
        if now < give_up_at:
            # Exponential back-off with jitter so many retries do not come back at once.
            backoff = min(60 * 2 ** (delivery.attempts - 1), 3600) * random.uniform(0.8, 1.2)
            delivery.status, delivery.error = "retry", str(error)[:500]
            delivery.retry_at = now + timedelta(seconds=backoff)
            summary.retried += 1
            db.session.commit()
            return
        _fail(delivery, enrollment, sequence, step, f"gave up retrying: {error}", summary)
        return
    if error.recipient:
        lead = delivery.lead
        delivery.status, delivery.error = "failed", str(error)[:500]
        lead.subscription = "bounced"
        if not db.session.scalar(select(Suppression.id).where(Suppression.email == lead.email)):
            db.session.add(Suppression(email=lead.email, reason=f"bounce: {error}"[:200]))
        record_event(lead, "bounce", delivery_id=delivery.id, error=str(error)[:200])
        stop(lead, "bounced")
        if enrollment is not None:
            enrollment.state, enrollment.stop_reason = "stopped", "bounced"
            enrollment.next_due_at = None
        summary.bounced += 1
        summary.failed += 1
        db.session.commit()
        return
    _fail(delivery, enrollment, sequence, step, str(error), summary)
