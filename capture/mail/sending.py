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
from email.utils import make_msgid
from types import SimpleNamespace

from flask import current_app
from sqlalchemy import bindparam, case, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from capture import claims, clock
from capture.leads import engagement
from capture.mail import backends
from capture.mail import mime
from capture.mail import compose
from capture import links as tokens
from capture.db import db
from capture.models import (
    Delivery,
    Enrollment,
    Event,
    Lead,
    Page,
    SequenceVersion,
    Suppression,
    Upgrade,
)
from capture.mail.sequences import Library, Sequence, Step, step_order
from capture.leads.timeline import INSERT_EVENTS, event_row, insert_event, record_event

log = logging.getLogger(__name__)


def library() -> Library:
    """The app's sequence library (re-reads folders when their files change)."""
    return current_app.extensions["capture.mail.sequences"]


def init_app(app) -> None:
    """Give the app its sequence library."""
    app.extensions["capture.mail.sequences"] = Library(app.config["SEQUENCES_DIR"])


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


def next_step(sequence: Sequence, last_step: str | None, last_filename: str | None,
              since: datetime, now: datetime) -> tuple[Step | None, datetime | None]:
    """The step a lead gets next and when a tick at `now` or later sends it: the
    step after the one it had last (`since` is when; for a lead that had none, when
    it was enrolled), `delay` after `since`, or at once if that moment has passed,
    always inside the send window. (None, None) when the lead had every step;
    (step, None) when that step or the folder's settings are broken (it is held).

    The one rule of timing: the scheduler sends by it and `sequences plan` shows it.
    A step added before a lead's last email is never sent to that lead."""
    remaining = sequence.steps_after(last_step, last_filename)
    if not remaining:
        return None, None
    step = remaining[0]
    if not step.ok or sequence.problems:
        return step, None
    due = due_time(sequence, step, since)
    # Overdue (the scheduler was down, or a step was added): still only inside the
    # send window.
    return step, (due if due > now else into_send_window(sequence, now))


# --- enrolment --------------------------------------------------------------------

def enroll(lead: Lead, page: Page | None = None, *, new: bool = False) -> Enrollment | None:
    """Put an approved, subscribed lead into its page's sequence (once).

    Called whenever a lead's state changes, with the lead's page when the caller has
    it and `new` for a lead just created (it cannot be enrolled yet); the caller
    commits. A new lead given as the plain row of a lead just inserted without the
    ORM (the opt-in) gets its enrolment and event written the same way, at once."""
    if lead.review != "approved" or lead.subscription != "subscribed":
        return None
    page = page or lead.page
    if page is None or not page.sequence:
        return None
    existing = None if new else db.session.scalar(
        select(Enrollment).where(Enrollment.lead_id == lead.id,
                                 Enrollment.sequence == page.sequence)
    )
    if existing is not None:
        if existing.state == "stopped" and existing.stop_reason in ("rejected", "pending"):
            # Approved after all: the lead goes on from where it stood.
            existing.state, existing.stop_reason = "active", ""
            existing.next_due_at = clock.utcnow()
        return existing
    now = clock.utcnow()
    enrollment = Enrollment(lead_id=lead.id, sequence=page.sequence, started_at=now,
                            state="active", next_due_at=now)
    sequence = library().get(page.sequence)
    if sequence is not None and sequence.steps:
        enrollment.next_due_at = due_time(sequence, sequence.steps[0], now)
    if new and not isinstance(lead, Lead):
        db.session.connection().execute(Enrollment.__table__.insert(), {
            "lead_id": lead.id, "sequence": page.sequence, "started_at": now,
            "state": "active", "next_due_at": enrollment.next_due_at})
        insert_event(lead.id, lead.page_id, "enroll", sequence=page.sequence)
        return enrollment
    db.session.add(enrollment)
    record_event(lead, "enroll", sequence=page.sequence)
    return enrollment


def stop(lead: Lead, reason: str) -> None:
    """Stop every sequence of a lead (unsubscribed, bounced, rejected …)."""
    db.session.execute(
        update(Enrollment)
        .where(Enrollment.lead_id == lead.id,
               Enrollment.state.in_(("active", "waiting", "sending")))
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
        text = (f"sent {self.sent}, retrying {self.retried}, failed {self.failed}, "
                f"bounced {self.bounced}, held {self.held}, stopped {self.stopped}, "
                f"unknown {self.unknown}")
        return text + (f"; stopped early: {self.errors[-1]}" if self.errors else "")


class _StopBatch(Exception):
    """The mail server or our account failed: the rest of the batch would too."""


def tick() -> Summary:
    """One scheduler run: wake, reap, claim, render and send what is due, record
    outcomes. One item's trouble never stops the others; a mail-server problem
    stops the batch and gives the unsent claims back."""
    summary = Summary()
    now = clock.utcnow()
    _wake_changed_sequences(now)
    summary.unknown = _reap(now)
    budget = min(rate_budget(now), current_app.config["SEND_BATCH_SIZE"])
    if budget <= 0:
        return summary
    retries = _claim_retries(now, budget)
    enrollments = _claim_enrollments(now, budget - len(retries)) if budget > len(retries) else []
    backend = backends.open_backend()
    try:
        for index, delivery_id in enumerate(retries):
            try:
                _resend(db.session.get(Delivery, delivery_id, options=_WITH_LEAD[Delivery]),
                        backend, summary)
            except _StopBatch:
                _give_back(retries=retries[index + 1:], enrollments=enrollments)
                raise
            except Exception:  # one bad item must not strand the rest of the batch
                log.exception("sending Delivery %s failed", delivery_id)
                db.session.rollback()
                _give_back(retries=[delivery_id], hold=True)
        for start in range(0, len(enrollments), CHUNK):
            try:
                _advance_chunk(enrollments[start:start + CHUNK], backend, summary)
            except _StopBatch:
                _give_back(enrollments=enrollments[start + CHUNK:])
                raise
    except _StopBatch as error:
        summary.errors.append(str(error))
    finally:
        backend.close()
    return summary


# A claimed item is loaded with its lead and the lead's page, in one query.
_WITH_LEAD = {
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


def _give_back(*, retries=(), enrollments=(), unsent=(), hold: bool = False) -> None:
    """Return claimed but unprocessed items to the queue (`hold`: not before
    HOLD_MINUTES, for an item that just failed unexpectedly). `unsent` are the
    deliveries of a chunk that were claimed but never handed over: they go, so
    their leads are simply due again."""
    now = clock.utcnow()
    later = now + timedelta(minutes=current_app.config["HOLD_MINUTES"]) if hold else now
    try:
        if unsent:
            db.session.execute(
                delete(Delivery).where(Delivery.id.in_(list(unsent)),
                                       Delivery.status == "claimed", Delivery.attempts == 0)
                .execution_options(synchronize_session=False)
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


def _wake_signature(sequence: Sequence) -> str:
    """What must change for leads to look again: the steps (added, removed,
    reordered, broken or fixed), their timing (`delay`, `at`, the send window and
    timezone) and whether the settings file is broken. Editing the text of a healthy
    step wakes nobody."""
    shape = ([(step.key, step.ok, step.delay, step.at) for step in sequence.steps],
             bool(sequence.problems), sequence.send_window, sequence.timezone.key)
    return hashlib.sha256(repr(shape).encode()).hexdigest()


def _wake_pending(sequence: Sequence) -> bool:
    """True when the folder changed since the scheduler last woke its leads."""
    row = db.session.get(SequenceVersion, sequence.name)
    return row is None or row.signature != _wake_signature(sequence)


def _wake_changed_sequences(now: datetime) -> None:
    """When a folder's steps or timing changed, its leads look again: waiting leads
    (who had every step, or wait on a broken file) are due now, and each active
    lead's due time is worked out again by next_step, so a step added after its last
    email reaches it `delay` after that email, one added before it never does."""
    for sequence in library().all():
        if not _wake_pending(sequence):
            continue
        signature = _wake_signature(sequence)
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
        _, due = next_step(sequence, row.last_step, row.last_filename,
                           row.last_sent_at or row.started_at, now)
        due = due or now
        overdue = due <= now and row.next_due_at is not None and row.next_due_at <= now
        if due != row.next_due_at and not overdue:
            changes.append({"b_id": row.id, "b_due": due})
    if changes:
        db.session.connection().execute(_RESCHEDULED, changes)


def _reap(now: datetime) -> int:
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
        enrollment = (db.session.get(Enrollment, delivery.enrollment_id)
                      if delivery.enrollment_id else None)
        if enrollment is not None and enrollment.state == "sending":
            _move_past(enrollment, None, delivery.claimed_at, key=delivery.step,
                       filename=delivery.filename)
    db.session.execute(
        update(Delivery).where(Delivery.status == "claimed", Delivery.claimed_at < cutoff)
        .values(status="retry", retry_at=now)
    )
    _release_enrollments(Enrollment.claimed_at < cutoff, now)
    db.session.commit()
    return len(stale)


def _claim_retries(now: datetime, limit: int) -> list[int]:
    query = (select(Delivery.id)
             .where(Delivery.status == "retry", Delivery.retry_at <= now)
             .order_by(Delivery.retry_at).limit(limit))
    return claims.claim(Delivery, query, Delivery.status, "retry",
                        {"status": "claimed", "claimed_at": now})


def _claim_enrollments(now: datetime, limit: int) -> list[int]:
    query = (select(Enrollment.id)
             .where(Enrollment.state == "active", Enrollment.next_due_at <= now)
             .order_by(Enrollment.next_due_at).limit(limit))
    return claims.claim(Enrollment, query, Enrollment.state, "active",
                        {"state": "sending", "claimed_at": now})


def _should_stop(lead: Lead, sequence: Sequence, upgraded: set[int] | None = None) -> str:
    """Why this lead must get nothing more from the sequence, or ''. `upgraded`: the
    leads known to have bought an upgrade (else the database is asked)."""
    if lead.subscription != "subscribed":
        return lead.subscription
    if lead.review != "approved":
        return lead.review
    if "upgrade" in sequence.stop_on:
        if upgraded is not None:
            return "upgrade" if lead.id in upgraded else ""
        upgraded_id = db.session.scalar(
            select(Upgrade.id).where(Upgrade.lead_id == lead.id).limit(1)
        )
        if upgraded_id:
            return "upgrade"
    return ""


def _hold(enrollment: Enrollment, summary: Summary) -> None:
    """Park a lead whose next step (or the settings file) is broken: it waits, and
    is woken when the folder's steps change, so a fix reaches it."""
    enrollment.state, enrollment.next_due_at = "waiting", None
    summary.held += 1


# Due enrollments are worked on in chunks: one query loads a chunk with its leads,
# one transaction writes its decisions and claims its deliveries, the emails are
# rendered with no transaction open, one transaction stores their links; then each
# email is handed over with one commit before it (the `sending` mark, with the
# previous email's outcome), so a crash leaves at most one email `sending`.
CHUNK = 100


@dataclass
class _Email:
    """One email of a chunk, as plain values (the commits expire the ORM rows)."""

    delivery_id: int
    enrollment_id: int
    lead_id: int
    page_id: int | None
    sequence: Sequence
    step: Step
    message: mime.Email | None = None
    subject: str = ""


def _advance_chunk(ids: list[int], backend, summary: Summary) -> None:
    """Send each claimed enrollment its next step if it is due, else put it back."""
    now = clock.utcnow()
    try:
        enrollments = db.session.scalars(
            select(Enrollment).where(Enrollment.id.in_(ids))
            .options(*_WITH_LEAD[Enrollment])
        ).all()
        decided = Summary()  # counted only once the chunk's decisions are stored
        due = _due_steps(enrollments, now, decided)
        deliveries = [Delivery(lead_id=enrollment.lead_id, enrollment_id=enrollment.id,
                               sequence=sequence.name, step=step.key, filename=step.filename,
                               status="claimed", claimed_at=now)
                      for enrollment, sequence, step in due]
        db.session.add_all(deliveries)
        db.session.flush()
    except IntegrityError:
        # A step of one of them already has a delivery row: one by one, so that
        # each lead is resolved on its own.
        db.session.rollback()
        if len(ids) > 1:
            for enrollment_id in ids:
                _advance_chunk([enrollment_id], backend, summary)
            return
        enrollment = db.session.get(Enrollment, ids[0], options=_WITH_LEAD[Enrollment])
        due = _due_steps([enrollment], now, summary)
        if due:
            _resolve_existing(enrollment, due[0][2])
        db.session.commit()
        return
    except Exception:  # a bug must not strand the chunk: one by one, the bad one is held
        log.exception("sending: enrollments %s failed", ids)
        db.session.rollback()
        if len(ids) > 1:
            for enrollment_id in ids:
                _advance_chunk([enrollment_id], backend, summary)
            return
        _give_back(enrollments=ids, hold=True)
        return
    emails = [_Email(delivery.id, enrollment.id, enrollment.lead_id, enrollment.lead.page_id,
                     sequence, step)
              for delivery, (enrollment, sequence, step) in zip(deliveries, due, strict=True)]
    leads = {enrollment.id: enrollment.lead for enrollment, _, _ in due}
    # Everything is flushed: the rows leave the session before the commit, which
    # would otherwise expire them (and each later commit would expire them again),
    # and stay readable, loaded as they are, for rendering.
    db.session.expunge_all()
    db.session.commit()
    summary.stopped += decided.stopped
    summary.held += decided.held
    emails = _render_all(emails, leads, summary)
    _hand_over_all(emails, backend, summary)


def _due_steps(enrollments, now: datetime, summary: Summary) -> list:
    """(enrollment, sequence, step) for each enrollment whose next step is due now;
    the others are stopped, held, parked or given a later due time (uncommitted)."""
    # Each folder is looked at once per chunk (a look stats every file in it).
    sequences = {name: library().get(name) for name in {e.sequence for e in enrollments}}
    stop_on_upgrade = {name for name, sequence in sequences.items()
                       if sequence is not None and "upgrade" in sequence.stop_on}
    upgraded = set(db.session.scalars(
        select(Upgrade.lead_id).where(Upgrade.lead_id.in_(
            [enrollment.lead_id for enrollment in enrollments
             if enrollment.sequence in stop_on_upgrade]))
    )) if stop_on_upgrade else set()
    due = []
    for enrollment in enrollments:
        found = _due_step(enrollment, sequences[enrollment.sequence], now, upgraded, summary)
        if found is not None:
            due.append((enrollment, *found))
    return due


def _due_step(enrollment: Enrollment, sequence: Sequence | None, now: datetime,
              upgraded: set[int], summary: Summary) -> tuple[Sequence, Step] | None:
    """The step of `sequence` (the enrollment's) to send this lead now, or None after
    putting the enrollment where it belongs (stopped, held, waiting, or due later)."""
    lead = enrollment.lead
    reason = ("sequence folder missing" if sequence is None
              else _should_stop(lead, sequence, upgraded))
    if reason:
        enrollment.state, enrollment.stop_reason, enrollment.next_due_at = "stopped", reason, None
        summary.stopped += 1
        return None
    step, due = next_step(sequence, enrollment.last_step, enrollment.last_filename,
                          enrollment.last_sent_at or enrollment.started_at, now)
    if step is None:
        enrollment.state, enrollment.next_due_at = "waiting", None
        return None
    if due is None:
        _hold(enrollment, summary)
        return None
    if due > now:
        enrollment.state, enrollment.next_due_at = "active", due
        return None
    return sequence, step


def _render_all(emails: list[_Email], leads: dict, summary: Summary) -> list[_Email]:
    """Render the chunk's emails and store their links and subjects in one
    transaction. A step that cannot be rendered for its lead fails, also for an
    unexpected error (its class and message are the reason; the lead moves on).
    Returns the emails to send."""
    links: list[dict] = []
    ready, failed, broken = [], [], []
    # `broken`: the links could not be stored; the emails go back unsent.
    for email in emails:
        lead = leads[email.enrollment_id]
        try:
            email.message = compose.step_message(
                email.sequence, email.step, lead, lead.page, delivery_id=email.delivery_id,
                unsubscribe_url=tokens.unsubscribe_url(lead.public_ref, email.delivery_id),
                track_link=engagement.link_tracker(email.delivery_id, new=True, into=links),
                pixel_url=engagement.pixel_url(email.delivery_id),
            )
        except compose.RenderError as error:
            failed.append((email, str(error)))
            continue
        except Exception as error:
            log.exception("rendering delivery %s failed", email.delivery_id)
            failed.append((email, claims.unexpected(error)))
            continue
        email.subject = str(email.message["Subject"])[:300]
        ready.append(email)
    try:
        engagement.insert_links(links)
        if ready:
            db.session.connection().execute(_RENDERED, [
                {"b_id": email.delivery_id, "b_subject": email.subject,
                 "b_message_id": str(email.message["Message-ID"])} for email in ready])
        db.session.commit()
    except Exception:
        log.exception("storing the links of deliveries %s failed",
                      [email.delivery_id for email in emails])
        db.session.rollback()
        broken, ready = emails, []
        failed = []
    for email, error in failed:
        delivery = db.session.get(Delivery, email.delivery_id)
        enrollment = db.session.get(Enrollment, email.enrollment_id)
        _fail(delivery, enrollment, email.sequence, email.step, error, summary)
    if broken:
        _give_back(unsent=[email.delivery_id for email in broken],
                   enrollments=[email.enrollment_id for email in broken], hold=True)
    return ready


_DELIVERIES = Delivery.__table__
_ENROLLMENTS = Enrollment.__table__
_RENDERED = (update(_DELIVERIES).where(_DELIVERIES.c.id == bindparam("b_id"))
             .values(subject=bindparam("b_subject"), message_id=bindparam("b_message_id")))
_SENDING = (update(_DELIVERIES)
            .where(_DELIVERIES.c.id == bindparam("b_id"), _DELIVERIES.c.status == "claimed")
            .values(status="sending", attempts=_DELIVERIES.c.attempts + 1,
                    claimed_at=bindparam("b_now")))
_SENT = (update(_DELIVERIES).where(_DELIVERIES.c.id == bindparam("b_id"))
         .values(status="sent", sent_at=bindparam("b_now"), error="", retry_at=None))
# The lead has had the step; a stop that came meanwhile (an unsubscribe) stays.
_MOVED = (update(_ENROLLMENTS).where(_ENROLLMENTS.c.id == bindparam("b_id"))
          .values(last_step=bindparam("b_step"), last_filename=bindparam("b_filename"),
                  last_sent_at=bindparam("b_now"),
                  state=case((_ENROLLMENTS.c.state == "stopped", _ENROLLMENTS.c.state),
                             else_=bindparam("b_state", type_=_ENROLLMENTS.c.state.type)),
                  next_due_at=case((_ENROLLMENTS.c.state == "stopped", None),
                                   else_=bindparam("b_due",
                                                   type_=_ENROLLMENTS.c.next_due_at.type))))


def _hand_over_all(emails: list[_Email], backend, summary: Summary) -> None:
    """Hand each email to the mail backend: marked `sending` (committed with the
    previous email's outcome) before, its outcome recorded after.

    The marks and outcomes go through one connection of their own, held for the
    chunk: the session would return its connection to the pool at each commit and
    take it again for the next email. The session, empty here, handles a failure."""
    outcome: list = []  # the previous email's writes, committed with the next mark
    with db.engine.connect() as connection:
        for index, email in enumerate(emails):
            try:
                _write(connection, outcome)
                outcome = []
                marked = connection.execute(_SENDING, {"b_id": email.delivery_id,
                                                       "b_now": clock.utcnow()}).rowcount
                connection.commit()
            except Exception:
                log.exception("sending delivery %s failed", email.delivery_id)
                connection.rollback()
                _give_back(unsent=[e.delivery_id for e in emails[index:]],
                           enrollments=[e.enrollment_id for e in emails[index:]], hold=True)
                return
            if not marked:
                continue  # given back meanwhile (it cannot be, but never send it then)
            try:
                backend.send(email.message)
            except backends.MailError as error:
                delivery = db.session.get(Delivery, email.delivery_id,
                                          options=_WITH_LEAD[Delivery])
                enrollment = db.session.get(Enrollment, email.enrollment_id)
                _mail_error(delivery, enrollment, email.sequence, email.step, error, summary)
                if error.transport:
                    rest = emails[index + 1:]
                    _give_back(unsent=[e.delivery_id for e in rest],
                               enrollments=[e.enrollment_id for e in rest])
                    raise _StopBatch(str(error)) from error
                continue
            except Exception as error:
                _unexpected_send_error(backend, error, email.delivery_id, email.enrollment_id,
                                       email.sequence, email.step, summary)
                continue
            outcome = _sent_writes(email, summary)
        _write(connection, outcome)
        connection.commit()


def _write(connection, statements: list) -> None:
    """Run (statement, parameters) pairs prepared beforehand, back to back: on SQLite
    the write lock, taken by the first, is held for the statements only, not for
    the Python that prepared them."""
    for statement, parameters in statements:
        connection.execute(statement, parameters)


def _sent_writes(email: _Email, summary: Summary) -> list:
    """The email went: the delivery is sent, the lead's timeline has it, and the
    lead's next step is scheduled; the writes that say so, run with the next mark."""
    now = clock.utcnow()
    sequence, step = email.sequence, email.step
    remaining = sequence.steps_after(step.key, step.filename)
    state, due = (("active", due_time(sequence, remaining[0], now)) if remaining
                  else ("waiting", None))
    summary.sent += 1
    return [
        (_SENT, {"b_id": email.delivery_id, "b_now": now}),
        (INSERT_EVENTS, [event_row(email.lead_id, email.page_id, "send",
                                   delivery_id=email.delivery_id, sequence=sequence.name,
                                   step=step.key, subject=email.subject)]),
        (_MOVED, {"b_id": email.enrollment_id, "b_step": step.key,
                  "b_filename": step.filename, "b_now": now, "b_state": state, "b_due": due}),
    ]


def _resolve_existing(enrollment: Enrollment, step: Step) -> None:
    """The step already has a delivery row: move on if it is settled, else leave
    the lead with it (the delivery's own outcome moves it on)."""
    existing = db.session.scalar(
        select(Delivery).where(Delivery.lead_id == enrollment.lead_id,
                               Delivery.sequence == enrollment.sequence,
                               Delivery.step == step.key)
    )
    if existing is not None and existing.status in ("sent", "failed", "unknown"):
        _move_past(enrollment, step, existing.sent_at or clock.utcnow())
    db.session.commit()


def _resend(delivery: Delivery, backend, summary: Summary) -> None:
    """Try a delivery again after a temporary failure (inside the send window)."""
    now = clock.utcnow()
    lead = delivery.lead
    enrollment = (db.session.get(Enrollment, delivery.enrollment_id)
                  if delivery.enrollment_id else None)
    sequence = library().get(delivery.sequence)
    step = sequence.step(delivery.step) if sequence is not None else None
    reason = "sequence folder missing" if sequence is None else _should_stop(lead, sequence)
    if reason:
        delivery.status, delivery.error = "failed", f"not sent: {reason}"
        if enrollment is not None:
            enrollment.state, enrollment.stop_reason = "stopped", reason
            enrollment.next_due_at = None
        summary.failed += 1
        db.session.commit()
        return
    if step is None or not step.ok or sequence.problems:
        # Wait for the file to be fixed; the attempt is not used up.
        delivery.status = "retry"
        delivery.retry_at = now + timedelta(minutes=current_app.config["HOLD_MINUTES"])
        summary.held += 1
        db.session.commit()
        return
    opens = into_send_window(sequence, now)
    if opens > now:
        delivery.status, delivery.retry_at = "retry", opens
        db.session.commit()
        return
    _deliver(delivery, enrollment, sequence, step, backend, summary)


def _deliver(delivery: Delivery, enrollment: Enrollment | None, sequence: Sequence,
             step: Step, backend, summary: Summary) -> None:
    """Render, commit the claim with the email's links, hand the message over with
    no transaction open (an SMTP wait never holds a database lock), then record
    what happened."""
    lead = delivery.lead
    try:
        message = compose.step_message(
            sequence, step, lead, lead.page, delivery_id=delivery.id,
            unsubscribe_url=tokens.unsubscribe_url(lead.public_ref, delivery.id),
            track_link=engagement.link_tracker(delivery.id),
            pixel_url=engagement.pixel_url(delivery.id),
        )
    except compose.RenderError as error:
        _fail(delivery, enrollment, sequence, step, str(error), summary)
        return
    except Exception as error:
        log.exception("rendering delivery %s failed", delivery.id)
        db.session.rollback()  # the links it may have added
        _fail(delivery, enrollment, sequence, step, claims.unexpected(error), summary)
        return
    delivery.status, delivery.claimed_at = "sending", clock.utcnow()
    delivery.attempts += 1
    delivery.subject = subject = str(message["Subject"])[:300]
    delivery.message_id = str(message["Message-ID"])
    # Kept for after the commit, which expires the rows (reloading them costs more).
    delivery_id, lead_id, page_id = delivery.id, lead.id, lead.page_id
    db.session.commit()
    try:
        backend.send(message)
    except backends.MailError as error:
        _mail_error(delivery, enrollment, sequence, step, error, summary)
        if error.transport:
            raise _StopBatch(str(error)) from error
        return
    except Exception as error:
        _unexpected_send_error(backend, error, delivery_id,
                               enrollment.id if enrollment is not None else None,
                               sequence, step, summary)
        return
    now = clock.utcnow()
    delivery.status, delivery.sent_at, delivery.error, delivery.retry_at = "sent", now, "", None
    insert_event(lead_id, page_id, "send", delivery_id=delivery_id, sequence=sequence.name,
                 step=step.key, subject=subject)
    if enrollment is not None:
        _move_past(enrollment, step, now, sequence=sequence)
    summary.sent += 1
    db.session.commit()


def _move_past(enrollment: Enrollment, step: Step | None, sent_at: datetime, *,
               sequence: Sequence | None = None, key: str | None = None,
               filename: str | None = None) -> None:
    """Record the step as done and schedule the next one (or wait for new steps).
    A stopped enrollment stays stopped; an enrollment already at or past the step
    (the owner resent an earlier email) is left where it is, never moved back."""
    sequence = sequence or library().get(enrollment.sequence)
    key, filename = (step.key, step.filename) if step else (key, filename)
    if _is_past(enrollment, key, filename, sequence):
        return
    enrollment.last_step, enrollment.last_filename = key, filename
    enrollment.last_sent_at = sent_at
    if enrollment.state == "stopped":
        return
    remaining = (sequence.steps_after(enrollment.last_step, enrollment.last_filename)
                 if sequence else [])
    if remaining:
        enrollment.state = "active"
        enrollment.next_due_at = due_time(sequence, remaining[0], sent_at)
    else:
        enrollment.state, enrollment.next_due_at = "waiting", None


def _is_past(enrollment: Enrollment, key: str | None, filename: str | None,
             sequence: Sequence | None) -> bool:
    """True when the enrollment already stands at or after this step."""
    if enrollment.last_step is None or key is None:
        return False
    if key == enrollment.last_step:
        return True
    if sequence is not None:
        ahead = sequence.steps_after(enrollment.last_step, enrollment.last_filename)
        if any(step.key == key for step in ahead):
            return False
        if sequence.step(key) is not None:
            return True
    # The step is gone from the folder: its file name tells where it stood.
    return bool(filename and enrollment.last_filename
                and step_order(filename) <= step_order(enrollment.last_filename))


def _fail(delivery, enrollment, sequence, step, error: str, summary: Summary) -> None:
    """A permanent failure of this message: record it and let the lead move on."""
    delivery.status, delivery.error, delivery.retry_at = "failed", error[:500], None
    if enrollment is not None:
        _move_past(enrollment, step, clock.utcnow(), sequence=sequence)
    summary.failed += 1
    db.session.commit()


def _unexpected_send_error(backend, error: Exception, delivery_id: int,
                           enrollment_id: int | None, sequence: Sequence, step: Step,
                           summary: Summary) -> None:
    """The backend raised something other than a MailError (a bug, an address it
    cannot write): that email fails with the error as its reason, the rest of the
    batch goes on. The connection is closed: its state is unknown."""
    log.exception("sending delivery %s failed", delivery_id)
    backend.close()
    db.session.rollback()
    delivery = db.session.get(Delivery, delivery_id)
    enrollment = db.session.get(Enrollment, enrollment_id) if enrollment_id else None
    _fail(delivery, enrollment, sequence, step, claims.unexpected(error), summary)


def _mail_error(delivery, enrollment, sequence, step, error: backends.MailError,
                summary: Summary) -> None:
    now = clock.utcnow()
    config = current_app.config
    if error.unknown:
        # The server had the whole message and never answered: it may have arrived.
        # Never resent by itself; the lead goes on; the owner sees it.
        delivery.status, delivery.error, delivery.retry_at = "unknown", str(error)[:500], None
        if enrollment is not None:
            _move_past(enrollment, step, now, sequence=sequence)
        summary.unknown += 1
        db.session.commit()
        return
    if error.temporary:
        # The retry window starts with the delivery, or again with an owner's resend.
        since = delivery.retry_since or delivery.created_at
        give_up_at = since + timedelta(hours=config["RETRY_HOURS"])
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
        summary.bounced += 1
        summary.failed += 1
        db.session.commit()
        return
    _fail(delivery, enrollment, sequence, step, str(error), summary)


# --- the plan: what the coming ticks will send ----------------------------------------

@dataclass(frozen=True, order=True)
class Planned:
    """One email the scheduler will send: when (the minute of the tick that sends it
    is at or after it), to whom, which step; `retry` for a delivery tried again."""

    when: datetime
    email: str
    sequence: str
    step: str
    retry: bool = False


def plan(now: datetime, horizon: datetime, name: str | None = None,
         limit: int = 200) -> list[Planned]:
    """The emails the ticks from `now` to `horizon` will send, by the scheduler's
    own rules (next_step, the send window, the stored due times, stop_on), as if
    every email were accepted and the rate cap never reached. Reads only."""
    sequences = {s.name: s for s in library().all() if name is None or s.name == name}
    woken = {n for n, sequence in sequences.items() if _wake_pending(sequence)}
    enrollments = db.session.scalars(
        select(Enrollment).options(joinedload(Enrollment.lead))
        .where(Enrollment.sequence.in_(list(sequences)),
               # A changed folder may make any of its leads due sooner than stored.
               Enrollment.sequence.in_(list(woken))
               | ((Enrollment.state == "active") & (Enrollment.next_due_at <= horizon)),
               Enrollment.state.in_(("active", "waiting")))
        .order_by(Enrollment.next_due_at).limit(limit)
    ).all()
    retries = db.session.scalars(
        select(Delivery).options(joinedload(Delivery.lead))
        .where(Delivery.sequence.in_(list(sequences)), Delivery.status == "retry",
               Delivery.retry_at <= horizon)
        .order_by(Delivery.retry_at).limit(limit)
    ).all()
    upgraded = set(db.session.scalars(select(Upgrade.lead_id).where(Upgrade.lead_id.in_(
        [row.lead_id for row in [*enrollments, *retries]]))))
    rows: list[Planned] = []
    for enrollment in enrollments:
        sequence = sequences[enrollment.sequence]
        if _should_stop(enrollment.lead, sequence, upgraded):
            continue
        # The scheduler looks at a lead at its due time; a change of the folder
        # makes it work that time out again at the next tick.
        look = now if enrollment.sequence in woken else max(now, enrollment.next_due_at or now)
        rows += _planned_steps(enrollment.lead.email, sequence, enrollment.last_step,
                               enrollment.last_filename,
                               enrollment.last_sent_at or enrollment.started_at, look, horizon)
    for delivery in retries:
        sequence = sequences[delivery.sequence]
        step = sequence.step(delivery.step)
        if step is None or not step.ok or sequence.problems or _should_stop(
                delivery.lead, sequence, upgraded):
            continue
        when = into_send_window(sequence, max(now, delivery.retry_at))
        rows.append(Planned(when, delivery.lead.email, sequence.name, step.key, retry=True))
        enrollment = (db.session.get(Enrollment, delivery.enrollment_id)
                      if delivery.enrollment_id else None)
        if (enrollment is not None and enrollment.state == "sending"
                and not _is_past(enrollment, step.key, step.filename, sequence)):
            rows += _planned_steps(delivery.lead.email, sequence, step.key, step.filename,
                                   when, when, horizon)
    return sorted(row for row in rows if row.when <= horizon)[:limit]


def _planned_steps(email: str, sequence: Sequence, last_step: str | None,
                   last_filename: str | None, since: datetime, look: datetime,
                   horizon: datetime) -> list[Planned]:
    """The steps one lead gets by `horizon`, each sent when next_step says."""
    rows = []
    while True:
        step, due = next_step(sequence, last_step, last_filename, since, look)
        if due is None or due > horizon:
            return rows
        rows.append(Planned(due, email, sequence.name, step.key))
        last_step, last_filename, since = step.key, step.filename, due
        look = due


# --- the owner's own actions: resend on purpose, previews, test emails ---------------

# Deliveries the owner is shown, and may resend: may or may not have gone out, gave
# up, waiting for the next try.
NEEDS_OWNER = ("unknown", "failed", "retry")
_WHY_NOT = {
    "unsubscribed": "{email} unsubscribed: nothing more is sent to them",
    "bounced": "{email} bounced (their mail server refused the address): it is not mailed again",
    "unconfirmed": "{email} has not confirmed their address yet",
    "rejected": "{email} was rejected in review: approve them first",
    "pending": "{email} is waiting for review: approve them first",
    "upgrade": "{email} bought an upgrade, and sequence {sequence} stops on upgrade",
}


def resend(delivery: Delivery) -> None:
    """Send an email again on purpose (the owner's button): the row goes back to
    `retry`, due now, so the next tick sends it once. The lead's place in its
    sequence stays where it is. Each resend is kept on the lead's timeline; the
    attempts count goes on from the earlier tries.

    ValueError with a sentence for the owner when it must not be sent."""
    lead = delivery.lead
    if delivery.status == "sent":
        raise ValueError(f"This email was already sent to {lead.email}: it is never sent twice.")
    if delivery.status not in NEEDS_OWNER:
        raise ValueError("This email is being sent right now: wait a minute for the outcome.")
    sequence = library().get(delivery.sequence)
    if sequence is None:
        raise ValueError(f"The sequence folder {delivery.sequence!r} no longer exists.")
    suppressed = db.session.scalar(select(Suppression.id).where(Suppression.email == lead.email))
    reason = _should_stop(lead, sequence) or ("bounced" if suppressed else "")
    if reason:
        why = _WHY_NOT.get(reason, "{email} cannot be mailed (" + reason + ")")
        raise ValueError(why.format(email=lead.email, sequence=sequence.name) + ".")
    step = sequence.step(delivery.step)
    if step is None:
        raise ValueError(f"The step {delivery.step!r} is no longer in sequence {sequence.name}.")
    problems = sequence.problems + step.problems
    if problems:
        raise ValueError(f"Fix the sequence file first: {problems[0]}")
    now = clock.utcnow()
    note = f"resent by the owner after: {delivery.status}"
    if delivery.error:
        note += f" ({delivery.error})"
    # Only if nobody changed it since it was read: a tick that took the retry in
    # between keeps it, so it still goes out once.
    changed = db.session.execute(
        update(Delivery)
        .where(Delivery.id == delivery.id, Delivery.status == delivery.status)
        .values(status="retry", retry_at=now, retry_since=now, error=note[:500])
        .execution_options(synchronize_session=False)
    ).rowcount
    if not changed:
        db.session.rollback()
        raise ValueError("This email changed state meanwhile: reload the page and look again.")
    record_event(lead, "resend", delivery_id=delivery.id, sequence=delivery.sequence,
                 step=delivery.step, previous=delivery.status, error=delivery.error[:200],
                 attempts=delivery.attempts)
    db.session.commit()


def needing_owner(status: str | None = None, *, offset: int = 0,
                  limit: int = 50) -> tuple[list[Delivery], int]:
    """Deliveries in `unknown`, `failed` or `retry` (or just `status`): unknown
    first, then failed, then retry, newest first; and how many there are."""
    statuses = (status,) if status in NEEDS_OWNER else NEEDS_OWNER
    condition = Delivery.status.in_(statuses)
    total = db.session.scalar(select(func.count()).select_from(Delivery).where(condition))
    rank = case({"unknown": 0, "failed": 1}, value=Delivery.status, else_=2)
    rows = db.session.scalars(
        select(Delivery).where(condition).options(joinedload(Delivery.lead))
        .order_by(rank, Delivery.created_at.desc(), Delivery.id.desc())
        .offset(offset).limit(limit)
    ).all()
    return list(rows), total or 0


def sample_lead(page=None, email: str = "jane@example.com") -> SimpleNamespace:
    """The made-up lead a preview is rendered for."""
    return SimpleNamespace(name="Jane Doe", first_name="Jane", email=email,
                           public_ref="sample-ref", page=page, id=0)


def preview_unsubscribe_url() -> str:
    """The unsubscribe link of previews and test emails (unsubscribes nobody)."""
    return f"{current_app.config['BASE_URL']}/u/preview"


def send_test(sequence: Sequence, step: Step, to: str, lead=None) -> mime.Email:
    """Send one step to `to` (the owner), rendered for `lead` (the sample lead when
    None), with "[Test] " before the subject. No delivery, enrolment, link or event
    is recorded, and the links are not tracked. Raises compose.RenderError and
    backends.MailError."""
    lead = lead or sample_lead()
    message = compose.step_message(sequence, step, lead, getattr(lead, "page", None),
                                     delivery_id=0, unsubscribe_url=preview_unsubscribe_url())
    message.replace_header("To", mime.address("", to))
    message.recipient = to
    message.replace_header("Subject", compose.header_text(f"[Test] {message['Subject']}", 300))
    message.replace_header("Message-ID", make_msgid(domain=compose.message_id_domain()))
    backends.send(message)
    return message
