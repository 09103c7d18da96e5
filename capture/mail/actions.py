"""What the owner does with sequence and broadcast email: resend, see what needs them,
preview, test."""

from email.utils import make_msgid
from types import SimpleNamespace

from flask import current_app
from sqlalchemy import case, func, select, update
from sqlalchemy.orm import joinedload

from capture import clock
from capture.db import db
from capture import suppression
from capture.timeline import record_event
from capture.mail import backends, compose, membership, mime
from capture.mail.library import Library
from capture.mail.sequences import Sequence, Step
from capture.models import Broadcast, Delivery, Page

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
    suppressed = suppression.is_suppressed(lead.email)
    if delivery.broadcast_id is not None:
        _may_resend_broadcast(delivery, lead, suppressed)
    else:
        _may_resend_step(delivery, lead, suppressed)
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


def _may_resend_step(delivery: Delivery, lead, suppressed: bool) -> None:
    """ValueError when a sequence step must not be resent to this lead now."""
    sequence = Library.current().get(delivery.sequence)
    if sequence is None:
        raise ValueError(f"The sequence folder {delivery.sequence!r} no longer exists.")
    reason = membership.should_stop(lead, sequence) or ("bounced" if suppressed else "")
    if reason:
        why = _WHY_NOT.get(reason, "{email} cannot be mailed (" + reason + ")")
        raise ValueError(why.format(email=lead.email, sequence=sequence.name) + ".")
    step = sequence.step(delivery.step)
    if step is None:
        raise ValueError(f"The step {delivery.step!r} is no longer in sequence {sequence.name}.")
    problems = sequence.problems + step.problems
    if problems:
        raise ValueError(f"Fix the sequence file first: {problems[0]}")


def _may_resend_broadcast(delivery: Delivery, lead, suppressed: bool) -> None:
    """ValueError when a broadcast email must not be resent to this lead now (its
    content is the frozen one: there is no file to fix)."""
    broadcast = db.session.get(Broadcast, delivery.broadcast_id)
    if broadcast.state == "cancelled":
        raise ValueError(f"The broadcast {broadcast.name} was cancelled.")
    reason = lead.subscription if lead.subscription != "subscribed" else (
        "bounced" if suppressed else "")
    if reason:
        why = _WHY_NOT.get(reason, "{email} cannot be mailed (" + reason + ")")
        raise ValueError(why.format(email=lead.email, sequence="") + ".")


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


def sample_lead(page: Page | None = None, email: str = "jane@example.com") -> SimpleNamespace:
    """The made-up lead a preview is rendered for: each of the page's own fields holds
    its name in brackets, so the preview shows where a `lead.fields` value goes."""
    fields = {str(field.get("name")): f"[{field.get('name')}]"
              for field in (page.fields if page is not None else None) or []
              if isinstance(field, dict) and field.get("name")}
    return SimpleNamespace(name="Jane Doe", first_name="Jane", email=email,
                           public_ref="sample-ref", page=page, id=0, country="",
                           fields=fields)


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
