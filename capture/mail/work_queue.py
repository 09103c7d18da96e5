"""The sending queue: the rate cap, claims, giving claims back, the reaper, waking leads.

Due enrollments and retries are rows with a state; a tick claims them (committed)
before it works on them, so any number of schedulers can run. Claimed work that is
not finished goes back here, at once or after HOLD_MINUTES; the reaper cleans up
after a sender that died; a changed sequence folder wakes its leads."""

import hashlib
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from capture import claims, clock
from capture.db import db
from capture.mail import membership, timing
from capture.mail.library import Library
from capture.mail.sequences import Sequence
from capture.models import Delivery, Enrollment, Event, Lead, SequenceVersion

log = logging.getLogger(__name__)

# A claimed item is loaded with its lead and the lead's page, in one query.
WITH_LEAD = {
    Enrollment: [joinedload(Enrollment.lead).joinedload(Lead.page)],
    Delivery: [joinedload(Delivery.lead).joinedload(Lead.page)],
}


def rate_budget(now: datetime) -> int:
    """How many more emails the rate cap allows in the current minute: every
    sequence email attempted in it counts (failed ones too), and every confirmation
    email sent in it (at opt-in, on a repeat opt-in or from the queue of imported
    and bulk-approved leads)."""
    since = now - timedelta(minutes=1)
    attempted = db.session.scalar(
        select(func.count()).select_from(Delivery).where(Delivery.claimed_at > since))
    confirmations = db.session.scalar(
        select(func.count()).select_from(Event)
        .where(Event.kind == "confirmation_sent", Event.created_at > since))
    return current_app.config["SEND_RATE_PER_MINUTE"] - (attempted or 0) - (confirmations or 0)


def claim_retries(now: datetime, limit: int) -> list[int]:
    """Take up to `limit` deliveries whose retry is due (their ids, oldest first)."""
    query = (select(Delivery.id)
             .where(Delivery.status == "retry", Delivery.retry_at <= now)
             .order_by(Delivery.retry_at).limit(limit))
    return claims.claim(Delivery, query, Delivery.status, "retry",
                        {"status": "claimed", "claimed_at": now})


def claim_enrollments(now: datetime, limit: int) -> list[int]:
    """Take up to `limit` enrollments that are due (their ids, longest due first)."""
    query = (select(Enrollment.id)
             .where(Enrollment.state == "active", Enrollment.next_due_at <= now)
             .order_by(Enrollment.next_due_at).limit(limit))
    return claims.claim(Enrollment, query, Enrollment.state, "active",
                        {"state": "sending", "claimed_at": now})


def give_back(*, retries: Iterable[int] = (), enrollments: Iterable[int] = (),
              unsent: Iterable[int] = (), hold: bool = False) -> None:
    """Return claimed but unprocessed items to the queue (`hold`: not before
    HOLD_MINUTES, for an item that just failed unexpectedly). `unsent` are the
    deliveries of a chunk that were claimed but never handed over: they go, so
    their leads are simply due again; a broadcast's go back to `queued` (its
    recipients were taken once, when it started), or with `hold` to `retry`."""
    now = clock.utcnow()
    later = now + timedelta(minutes=current_app.config["HOLD_MINUTES"]) if hold else now
    try:
        if unsent:
            unsent = list(unsent)
            db.session.execute(
                delete(Delivery).where(Delivery.id.in_(unsent), Delivery.broadcast_id.is_(None),
                                       Delivery.status == "claimed", Delivery.attempts == 0)
                .execution_options(synchronize_session=False)
            )
            back = ({"status": "retry", "retry_at": later} if hold
                    else {"status": "queued", "claimed_at": None})
            db.session.execute(
                update(Delivery).where(Delivery.id.in_(unsent),
                                       Delivery.broadcast_id.is_not(None),
                                       Delivery.status == "claimed", Delivery.attempts == 0)
                .values(**back).execution_options(synchronize_session=False)
            )
        if retries:
            db.session.execute(
                update(Delivery).where(Delivery.id.in_(list(retries)),
                                       Delivery.status == "claimed")
                .values(status="retry", retry_at=later)
            )
        if enrollments:
            _release_enrollments(Enrollment.id.in_(list(enrollments)), later)
        db.session.commit()
    except Exception:  # the reaper puts them back later
        log.exception("could not give back claimed work")
        db.session.rollback()


def _in_flight():
    """Deliveries of an enrollment that are still being worked on."""
    return (select(Delivery.id)
            .where(Delivery.enrollment_id == Enrollment.id,
                   Delivery.status.in_(("claimed", "sending", "retry")))
            .exists())


def _release_enrollments(condition, due: datetime) -> int:
    """Put claimed enrollments that have no delivery in flight back to active."""
    result = db.session.execute(
        update(Enrollment)
        .where(condition, Enrollment.state == "sending", ~_in_flight())
        .values(state="active", next_due_at=due)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


def enrollment_of(delivery: Delivery) -> Enrollment | None:
    """The enrollment a delivery moves on, if it belongs to its current entry: an
    email of an earlier time through the sequence never moves a lead that started
    it again."""
    enrollment = (db.session.get(Enrollment, delivery.enrollment_id)
                  if delivery.enrollment_id else None)
    if enrollment is None or enrollment.entry != delivery.entry:
        return None
    return enrollment


def reap(now: datetime) -> int:
    """Clean up after a sender that died: a delivery handed to SMTP with no outcome
    becomes `unknown` (never resent; the lead moves on to its next step), a claimed
    retry that was never tried goes back to `retry`, a claimed lead with nothing in
    flight goes back to the queue. Returns how many became unknown."""
    cutoff = now - timedelta(minutes=current_app.config["SENDING_TIMEOUT_MINUTES"])
    stale = db.session.scalars(
        select(Delivery).where(Delivery.status == "sending", Delivery.claimed_at < cutoff)
    ).all()
    for delivery in stale:
        delivery.status = "unknown"
        delivery.error = "no outcome recorded: the sender stopped while sending"
        enrollment = enrollment_of(delivery)
        if enrollment is not None and enrollment.state == "sending":
            membership.move_past(enrollment, None, delivery.claimed_at, key=delivery.step,
                                 filename=delivery.filename)
    db.session.execute(
        update(Delivery).where(Delivery.status == "claimed", Delivery.claimed_at < cutoff)
        .values(status="retry", retry_at=now)
    )
    _release_enrollments(Enrollment.claimed_at < cutoff, now)
    db.session.commit()
    return len(stale)


# --- waking the leads of a changed folder ------------------------------------------

def wake_signature(sequence: Sequence) -> str:
    """What must change for leads to look again: the steps (added, removed,
    reordered, broken or fixed), their timing (`delay`, `at`, the send window and
    timezone) and whether the settings file is broken. Editing the text of a healthy
    step wakes nobody."""
    shape = ([(step.key, step.ok, step.delay, step.at) for step in sequence.steps],
             bool(sequence.problems), sequence.send_window, sequence.timezone.key)
    return hashlib.sha256(repr(shape).encode()).hexdigest()


def wake_pending(sequence: Sequence) -> bool:
    """True when the folder changed since the scheduler last woke its leads."""
    row = db.session.get(SequenceVersion, sequence.name)
    return row is None or row.signature != wake_signature(sequence)


def wake_changed_sequences(now: datetime) -> None:
    """When a folder's steps or timing changed, its leads look again: waiting leads
    (who had every step, or wait on a broken file) are due now, and each active
    lead's due time is worked out again by next_step, so a step added after its last
    email reaches it `delay` after that email, one added before it never does."""
    for sequence in Library.current().all():
        if not wake_pending(sequence):
            continue
        signature = wake_signature(sequence)
        row = db.session.get(SequenceVersion, sequence.name)
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
            _reschedule_active(sequence, now)
            db.session.commit()
        except IntegrityError:  # another process recorded it at the same moment
            db.session.rollback()


_RESCHEDULED = (update(Enrollment.__table__)
                .where(Enrollment.__table__.c.id == bindparam("b_id"),
                       Enrollment.__table__.c.state == "active")
                .values(next_due_at=bindparam("b_due")))


def _reschedule_active(sequence: Sequence, now: datetime) -> None:
    """Each active lead of the sequence due when next_step says (a lead whose next
    step is broken or gone is due now: the tick then holds it or lets it wait)."""
    rows = db.session.execute(
        select(Enrollment.id, Enrollment.last_step, Enrollment.last_filename,
               Enrollment.last_sent_at, Enrollment.started_at, Enrollment.next_due_at)
        .where(Enrollment.sequence == sequence.name, Enrollment.state == "active")
    ).all()
    changes = []
    for row in rows:
        _, due = timing.next_step(sequence, row.last_step, row.last_filename,
                                  row.last_sent_at or row.started_at, now)
        due = due or now
        overdue = due <= now and row.next_due_at is not None and row.next_due_at <= now
        if due != row.next_due_at and not overdue:
            changes.append({"b_id": row.id, "b_due": due})
    if changes:
        db.session.connection().execute(_RESCHEDULED, changes)
