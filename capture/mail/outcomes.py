"""What became of each email (sent, retry, failed, bounced, unknown) and the tick's Summary.

"Sent" is recorded in one place, `sent_writes`, for the emails of a chunk (many at
once) and for retries alike."""

import logging
import random
from dataclasses import dataclass, field
from datetime import timedelta

from flask import current_app
from sqlalchemy import bindparam, case, update

from capture import claims, clock
from capture.db import db
from capture import suppression
from capture.timeline import INSERT_EVENTS, event_row, record_event
from capture.mail import backends, membership, mime, timing
from capture.mail.sequences import Sequence, Step
from capture.models import Delivery, Enrollment

log = logging.getLogger(__name__)


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
    # Steps not sent because their `when:` did not hold (said only when some were).
    skipped: int = 0
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        """The one-line summary `send-due` prints."""
        text = (f"sent {self.sent}, retrying {self.retried}, failed {self.failed}, "
                f"bounced {self.bounced}, held {self.held}, stopped {self.stopped}, "
                f"unknown {self.unknown}")
        text += f", skipped {self.skipped}" if self.skipped else ""
        return text + (f"; stopped early: {self.errors[-1]}" if self.errors else "")


@dataclass
class Outgoing:
    """One email being sent, as plain values (the commits expire the ORM rows)."""

    delivery_id: int
    enrollment_id: int | None
    lead_id: int
    page_id: int | None
    sequence: Sequence
    step: Step
    message: mime.Email | None = None
    subject: str = ""


_DELIVERIES = Delivery.__table__
_ENROLLMENTS = Enrollment.__table__
_SENT = (update(_DELIVERIES).where(_DELIVERIES.c.id.in_(bindparam("b_ids", expanding=True)))
         .values(status="sent", sent_at=bindparam("b_now"), error="", retry_at=None))
# The leads have had the step; a stop that came meanwhile (an unsubscribe) stays.
_MOVED = (update(_ENROLLMENTS).where(_ENROLLMENTS.c.id.in_(bindparam("b_ids", expanding=True)))
          .values(last_step=bindparam("b_step"), last_filename=bindparam("b_filename"),
                  last_sent_at=bindparam("b_now"),
                  state=case((_ENROLLMENTS.c.state == "stopped", _ENROLLMENTS.c.state),
                             else_=bindparam("b_state", type_=_ENROLLMENTS.c.state.type)),
                  next_due_at=case((_ENROLLMENTS.c.state == "stopped", None),
                                   else_=bindparam("b_due",
                                                   type_=_ENROLLMENTS.c.next_due_at.type))))


def sent_writes(emails: list[Outgoing], summary: Summary, *, move_on: bool = True) -> list:
    """The emails went: their deliveries are sent, the leads' timelines have them,
    and (with `move_on`, for the emails of enrollments) each lead's next step is
    scheduled. Returns the writes that say so, as (statement, parameters) pairs for
    `write`: one UPDATE of the deliveries, one INSERT of the `send` events and one
    UPDATE of the enrollments per step (one `now` for all), whatever their number."""
    if not emails:
        return []
    now = clock.utcnow()
    summary.sent += len(emails)
    writes = [
        (_SENT, {"b_ids": [email.delivery_id for email in emails], "b_now": now}),
        (INSERT_EVENTS, [event_row(email.lead_id, email.page_id, "send",
                                   delivery_id=email.delivery_id,
                                   **_about(email.sequence, email.step), subject=email.subject)
                         for email in emails]),
    ]
    steps: dict[tuple, tuple] = {}
    for email in emails:
        if move_on and email.enrollment_id is not None:
            key = (id(email.sequence), email.step.key, email.step.filename)
            steps.setdefault(key, (email.sequence, email.step, []))[2].append(
                email.enrollment_id)
    for sequence, step, enrollments in steps.values():
        remaining = sequence.steps_after(step.key, step.filename)
        state, due = (("active", timing.due_time(sequence, remaining[0], now)) if remaining
                      else ("waiting", None))
        writes.append((_MOVED, {"b_ids": enrollments, "b_step": step.key,
                                "b_filename": step.filename, "b_now": now,
                                "b_state": state, "b_due": due}))
    return writes


def _about(sequence, step) -> dict[str, str]:
    """What the `send` event says the email was: a step of a sequence, or a broadcast
    (whose content says so itself, `capture.mail.broadcasts.Content`)."""
    details = getattr(step, "event_details", None)
    return details if details is not None else {"sequence": sequence.name, "step": step.key}


def write(connection, statements: list) -> None:
    """Run (statement, parameters) pairs prepared beforehand, back to back: on SQLite
    the write lock, taken by the first, is held for the statements only, not for
    the Python that prepared them."""
    for statement, parameters in statements:
        connection.execute(statement, parameters)


def fail(delivery: Delivery, enrollment: Enrollment | None, sequence: Sequence, step: Step,
         error: str, summary: Summary) -> None:
    """A permanent failure of this message: record it and let the lead move on."""
    delivery.status, delivery.error, delivery.retry_at = "failed", error[:500], None
    if enrollment is not None:
        membership.move_past(enrollment, step, clock.utcnow(), sequence=sequence)
    summary.failed += 1
    db.session.commit()


def unexpected_send_error(error: Exception, delivery_id: int, enrollment_id: int | None,
                          sequence: Sequence, step: Step, summary: Summary) -> None:
    """The backend raised something other than a MailError (a bug, an address it
    cannot write): that email fails with the error as its reason, the rest of the
    batch goes on. (The caller closes the connection: its state is unknown.)"""
    log.error("sending delivery %s failed: %s", delivery_id, claims.unexpected(error))
    db.session.rollback()
    delivery = db.session.get(Delivery, delivery_id)
    enrollment = db.session.get(Enrollment, enrollment_id) if enrollment_id else None
    fail(delivery, enrollment, sequence, step, claims.unexpected(error), summary)


def mail_error(delivery: Delivery, enrollment: Enrollment | None, sequence: Sequence,
               step: Step, error: backends.MailError, summary: Summary) -> None:
    """The backend refused the email: it may have arrived (unknown), is tried again
    with back-off (temporary, within RETRY_HOURS), bounced (the address itself was
    refused: the lead is suppressed and stopped) or failed."""
    now = clock.utcnow()
    config = current_app.config
    if error.unknown:
        # The server had the whole message and never answered: it may have arrived.
        # Never resent by itself; the lead goes on; the owner sees it.
        delivery.status, delivery.error, delivery.retry_at = "unknown", str(error)[:500], None
        if enrollment is not None:
            membership.move_past(enrollment, step, now, sequence=sequence)
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
        fail(delivery, enrollment, sequence, step, f"gave up retrying: {error}", summary)
        return
    if error.recipient:
        lead = delivery.lead
        delivery.status, delivery.error = "failed", str(error)[:500]
        lead.subscription = "bounced"
        suppression.suppress(lead.email, f"bounce: {error}")
        record_event(lead, "bounce", delivery_id=delivery.id, error=str(error)[:200])
        membership.stop(lead, "bounced")
        summary.bounced += 1
        summary.failed += 1
        db.session.commit()
        return
    fail(delivery, enrollment, sequence, step, str(error), summary)
