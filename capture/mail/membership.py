"""Who gets which sequence and where each lead stands in it: enrol, stop, move past a step."""

from datetime import datetime

from sqlalchemy import select, update

from capture import clock
from capture.db import db
from capture.timeline import insert_event, record_event
from capture.mail import timing
from capture.mail.sequences import Library, Sequence, Step, step_order
from capture.models import Enrollment, Lead, LeadTag, Page, Upgrade


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
    sequence = Library.current().get(page.sequence)
    if sequence is not None and sequence.steps:
        enrollment.next_due_at = timing.due_time(sequence, sequence.steps[0], now)
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


def should_stop(lead: Lead, sequence: Sequence, upgraded: set[int] | None = None,
                tagged: dict[int, set[str]] | None = None) -> str:
    """Why this lead must get nothing more from the sequence, or ''. `upgraded`: the
    leads known to have bought an upgrade; `tagged`: the leads' tags among the
    stop_on tags (`condition_checks.stop_tags_of`); else the database is asked."""
    if lead.subscription != "subscribed":
        return lead.subscription
    if lead.review != "approved":
        return lead.review
    if "upgrade" in sequence.stop_on:
        if upgraded is not None:
            if lead.id in upgraded:
                return "upgrade"
        elif db.session.scalar(select(Upgrade.id).where(Upgrade.lead_id == lead.id).limit(1)):
            return "upgrade"
    names = sequence.stop_tags
    if names:
        has = tagged.get(lead.id, set()) if tagged is not None else set(db.session.scalars(
            select(LeadTag.tag).where(LeadTag.lead_id == lead.id, LeadTag.tag.in_(names))))
        for name in names:
            if name in has:
                return f"tag:{name}"
    return ""


def move_past(enrollment: Enrollment, step: Step | None, sent_at: datetime, *,
              sequence: Sequence | None = None, key: str | None = None,
              filename: str | None = None) -> None:
    """Record the step as done and schedule the next one (or wait for new steps).
    A stopped enrollment stays stopped; an enrollment already at or past the step
    (the owner resent an earlier email) is left where it is, never moved back."""
    sequence = sequence or Library.current().get(enrollment.sequence)
    key, filename = (step.key, step.filename) if step else (key, filename)
    if is_past(enrollment, key, filename, sequence):
        return
    enrollment.last_step, enrollment.last_filename = key, filename
    enrollment.last_sent_at = sent_at
    if enrollment.state == "stopped":
        return
    remaining = (sequence.steps_after(enrollment.last_step, enrollment.last_filename)
                 if sequence else [])
    if remaining:
        enrollment.state = "active"
        enrollment.next_due_at = timing.due_time(sequence, remaining[0], sent_at)
    else:
        enrollment.state, enrollment.next_due_at = "waiting", None


def is_past(enrollment: Enrollment, key: str | None, filename: str | None,
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
