"""The scheduler's tick: wake, reap, claim what is due, send it, count what happened.

Each (lead, sequence, step) has at most one delivery row per entry (a unique key; a
lead starts a `reenter: true` sequence again as a new entry). Due
enrollments are worked on in chunks, retries one by one, then the queued emails of
broadcasts (`broadcast_sending`) with what the rate cap leaves; `handover` hands each email
over, a chunk's emails over the connections of a `connections.Sender`. One item's
trouble never stops the others; a mail-server problem stops the batch and gives the
unsent claims back."""

import logging
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import raiseload

from capture import clock
from capture.db import db
from capture.mail import (
    backends,
    broadcast_sending,
    broadcast_tests,
    condition_checks,
    connections,
    handover,
    membership,
    recipients,
    subject_tests,
    timing,
    work_queue,
)
from capture.mail.outcomes import Outgoing, Summary
from capture.mail.library import Library
from capture.mail.sequences import Sequence, Step
from capture.models import Delivery, Enrollment, Upgrade
from capture.segments.words import describe
from capture.timeline import event_row, insert_events

log = logging.getLogger(__name__)


def tick() -> Summary:
    """One scheduler run: wake, reap, claim, render and send what is due, record
    outcomes. One item's trouble never stops the others; a mail-server problem
    stops the batch and gives the unsent claims back."""
    summary = Summary()
    now = clock.utcnow()
    work_queue.wake_changed_sequences(now)
    summary.unknown = work_queue.reap(now)
    broadcast_sending.start_due(now)
    broadcast_sending.take_all(now, current_app.config["SCHEDULER_INTERVAL_SECONDS"] / 2)
    budget = min(work_queue.rate_budget(now), current_app.config["SEND_BATCH_SIZE"])
    if budget <= 0:
        return summary
    # Priority: the confirmations (their own job) are already counted in the budget;
    # then retries and sequence steps; broadcasts get what is left.
    retries = work_queue.claim_retries(now, budget)
    enrollments = (work_queue.claim_enrollments(now, budget - len(retries))
                   if budget > len(retries) else [])
    broadcast_emails = broadcast_sending.claim_queued(
        now, budget - len(retries) - len(enrollments))
    backend = backends.open_backend()
    sender = connections.Sender(summary)
    try:
        for index, delivery_id in enumerate(retries):
            try:
                _retry(db.session.get(Delivery, delivery_id,
                                      options=work_queue.WITH_LEAD[Delivery]),
                       backend, summary)
            except handover.StopBatch:
                work_queue.give_back(retries=retries[index + 1:], enrollments=enrollments,
                                     unsent=broadcast_emails)
                raise
            except Exception:  # one bad item must not strand the rest of the batch
                log.exception("sending Delivery %s failed", delivery_id)
                db.session.rollback()
                work_queue.give_back(retries=[delivery_id], hold=True)
        for start in range(0, len(enrollments), CHUNK):
            try:
                _advance_chunk(enrollments[start:start + CHUNK], sender, summary)
            except handover.StopBatch:
                work_queue.give_back(enrollments=enrollments[start + CHUNK:],
                                     unsent=broadcast_emails)
                raise
        broadcast_sending.send_claimed(broadcast_emails, sender, summary)
        sender.close()
    except handover.StopBatch as error:
        summary.errors.append(str(error))
    finally:
        _close(sender, summary)
        backend.close()
    broadcast_tests.share_sent(clock.utcnow())
    broadcast_sending.finish(clock.utcnow())
    return summary


def _close(sender: connections.Sender, summary: Summary) -> None:
    """Wait for the emails still with the connections (after a stop, say)."""
    try:
        sender.close()
    except handover.StopBatch as error:
        summary.errors.append(str(error))


# Due enrollments are worked on in chunks: one query loads a chunk, one its leads (as
# rows), one transaction writes its decisions and claims its deliveries (one INSERT),
# the emails are rendered with no transaction open, one transaction stores their
# links; then the Sender marks them `sending` a few at a time (a commit for many
# emails, with the outcomes of those before), so a crash leaves at most those few
# `sending`.
CHUNK = 100
# A chunk's delivery rows, claimed: their ids in the order of the rows.
_CLAIMED = (insert(Delivery.__table__)
            .returning(Delivery.__table__.c.id, sort_by_parameter_order=True))


def _advance_chunk(ids: list[int], sender: connections.Sender, summary: Summary) -> None:
    """Send each claimed enrollment its next step if it is due, else put it back."""
    now = clock.utcnow()
    try:
        enrollments = db.session.scalars(
            select(Enrollment).where(Enrollment.id.in_(ids)).options(raiseload("*"))
        ).all()
        leads = recipients.load(enrollment.lead_id for enrollment in enrollments)
        decided = Summary()  # counted only once the chunk's decisions are stored
        due = _due_steps(enrollments, leads, now, decided)
        # A subject test's subject is drawn as the row is made, and kept on it. One
        # INSERT for the chunk's rows (the unit of work took a tenth of the tick).
        rows = [{"lead_id": enrollment.lead_id, "enrollment_id": enrollment.id,
                 "sequence": sequence.name, "step": step.key, "entry": enrollment.entry,
                 "filename": step.filename, "status": "claimed", "claimed_at": now,
                 "subject_index": subject_tests.draw(step)}
                for enrollment, sequence, step in due]
        delivery_ids = (db.session.connection().execute(_CLAIMED, rows).scalars().all()
                        if rows else [])
        db.session.flush()  # the decisions about the others
    except IntegrityError:
        # A step of one of them already has a delivery row: one by one, so that
        # each lead is resolved on its own.
        db.session.rollback()
        if len(ids) > 1:
            for enrollment_id in ids:
                _advance_chunk([enrollment_id], sender, summary)
            return
        enrollment = db.session.get(Enrollment, ids[0])
        due = _due_steps([enrollment], recipients.load([enrollment.lead_id]), now, summary)
        if due:
            _resolve_existing(enrollment, due[0][2])
        db.session.commit()
        return
    except Exception:  # a bug must not strand the chunk: one by one, the bad one is held
        log.exception("sending: enrollments %s failed", ids)
        db.session.rollback()
        if len(ids) > 1:
            for enrollment_id in ids:
                _advance_chunk([enrollment_id], sender, summary)
            return
        work_queue.give_back(enrollments=ids, hold=True)
        return
    emails, by_delivery = [], {}
    for delivery_id, row, (enrollment, sequence, step) in zip(delivery_ids, rows, due,
                                                              strict=True):
        lead = leads[enrollment.lead_id]
        emails.append(Outgoing(delivery_id, enrollment.id, lead.id, lead.page_id, sequence,
                               subject_tests.chosen(step, row["subject_index"])))
        by_delivery[delivery_id] = lead
    # Everything is flushed: the rows leave the session before the commit, which
    # would otherwise expire them (and each later commit would expire them again).
    db.session.expunge_all()
    db.session.commit()
    summary.stopped += decided.stopped
    summary.held += decided.held
    summary.skipped += decided.skipped
    sender.submit(handover.render_all(emails, by_delivery, summary, between=sender.pump))


def _due_steps(enrollments, leads: dict[int, recipients.Recipient], now: datetime,
               summary: Summary) -> list:
    """(enrollment, sequence, step) for each enrollment whose next step is due now;
    the others are stopped, held, parked, given a later due time or moved past steps
    whose `when:` does not hold for them (uncommitted)."""
    # Each folder is looked at once per chunk (a look stats every file in it).
    sequences = {name: Library.current().get(name) for name in {e.sequence for e in enrollments}}
    stop_on_upgrade = {name for name, sequence in sequences.items()
                       if sequence is not None and "upgrade" in sequence.stop_on}
    upgraded = set(db.session.scalars(
        select(Upgrade.lead_id).where(Upgrade.lead_id.in_(
            [enrollment.lead_id for enrollment in enrollments
             if enrollment.sequence in stop_on_upgrade]))
    )) if stop_on_upgrade else set()
    # The leads' stop_on tags: one query for the chunk.
    stop_tags = {name: sequence.stop_tags for name, sequence in sequences.items()
                 if sequence is not None and sequence.stop_tags}
    tagged = condition_checks.stop_tags_of(
        [enrollment.lead_id for enrollment in enrollments if enrollment.sequence in stop_tags],
        {tag for names in stop_tags.values() for tag in names})
    due: list = []
    pending = list(enrollments)
    # A lead that skips a step looks again at its next one, which may be due at once
    # (and have a `when:` of its own): a round per step, never a query per lead.
    while pending:
        found = []
        for enrollment in pending:
            step = _due_step(enrollment, leads[enrollment.lead_id],
                             sequences[enrollment.sequence], now, upgraded, tagged, summary)
            if step is not None:
                found.append((enrollment, *step))
        due += [item for item in found if item[2].when is None]
        pending = _weigh_conditions([item for item in found if item[2].when is not None],
                                    leads, now, summary, due)
    return due


def _weigh_conditions(found: list, leads: dict[int, recipients.Recipient], now: datetime,
                      summary: Summary, due: list) -> list:
    """Due steps with a `when:`: one query per step says for which of its leads it
    holds; those are added to `due`, the others skip it (a `skip` event; the next
    step's delay counts from now) and are returned, to look at their next step. A
    `when:` naming what does not exist holds its leads, as a broken step does."""
    groups: dict[tuple[str, str], list] = {}
    for item in found:
        groups.setdefault((item[1].name, item[2].key), []).append(item)
    again, events = [], []
    for items in groups.values():
        _, sequence, step = items[0]
        if condition_checks.reference_problems(sequence, step):
            # Looked at again after HOLD_MINUTES: the page (or tag) may appear.
            later = now + timedelta(minutes=current_app.config["HOLD_MINUTES"])
            for enrollment, _, _ in items:
                enrollment.state, enrollment.next_due_at = "active", later
                summary.held += 1
            continue
        holds = condition_checks.matching(step, [item[0].lead_id for item in items])
        for item in items:
            enrollment = item[0]
            if enrollment.lead_id in holds:
                due.append(item)
                continue
            events.append(event_row(
                enrollment.lead_id, leads[enrollment.lead_id].page_id, "skip",
                sequence=sequence.name, step=step.key,
                reason=f"when: not matched ({describe(step.when)})",
                **({"entry": enrollment.entry} if enrollment.entry > 1 else {})))
            membership.move_past(enrollment, step, now, sequence=sequence)
            enrollment.state = "sending"  # still this tick's claim
            summary.skipped += 1
            again.append(enrollment)
    insert_events(events)
    return again


def _due_step(enrollment: Enrollment, lead: recipients.Recipient, sequence: Sequence | None,
              now: datetime, upgraded: set[int], tagged: dict[int, set[str]],
              summary: Summary) -> tuple[Sequence, Step] | None:
    """The step of `sequence` (the enrollment's) to send its `lead` now, or None after
    putting the enrollment where it belongs (stopped, held, waiting, or due later)."""
    reason = ("sequence folder missing" if sequence is None
              else membership.should_stop(lead, sequence, upgraded, tagged))
    if reason:
        enrollment.state, enrollment.stop_reason, enrollment.next_due_at = "stopped", reason, None
        summary.stopped += 1
        return None
    step, due = timing.next_step(sequence, enrollment.last_step, enrollment.last_filename,
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


def _hold(enrollment: Enrollment, summary: Summary) -> None:
    """Park a lead whose next step (or the settings file) is broken: it waits, and
    is woken when the folder's steps change, so a fix reaches it."""
    enrollment.state, enrollment.next_due_at = "waiting", None
    summary.held += 1


def _resolve_existing(enrollment: Enrollment, step: Step) -> None:
    """The step already has a delivery row: move on if it is settled, else leave
    the lead with it (the delivery's own outcome moves it on)."""
    existing = db.session.scalar(
        select(Delivery).where(Delivery.lead_id == enrollment.lead_id,
                               Delivery.sequence == enrollment.sequence,
                               Delivery.step == step.key,
                               Delivery.entry == enrollment.entry)
    )
    if existing is not None and existing.status in ("sent", "failed", "unknown"):
        membership.move_past(enrollment, step, existing.sent_at or clock.utcnow())
    db.session.commit()


def _retry(delivery: Delivery, backend: backends.Backend, summary: Summary) -> None:
    """Try a delivery again after a temporary failure (inside the send window)."""
    if delivery.broadcast_id is not None:
        broadcast_sending.retry(delivery, backend, summary)
        return
    now = clock.utcnow()
    lead = delivery.lead
    enrollment = work_queue.enrollment_of(delivery)
    sequence = Library.current().get(delivery.sequence)
    step = sequence.step(delivery.step) if sequence is not None else None
    reason = ("sequence folder missing" if sequence is None
              else membership.should_stop(lead, sequence))
    if not reason and enrollment is not None and enrollment.state == "stopped":
        # Stopped while the email waited: the lead left the sequence, or a stop tag.
        reason = enrollment.stop_reason or "stopped"
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
    opens = timing.into_send_window(sequence, now)
    if opens > now:
        delivery.status, delivery.retry_at = "retry", opens
        db.session.commit()
        return
    handover.deliver(delivery, enrollment, sequence,
                     subject_tests.chosen(step, delivery.subject_index), backend, summary)
