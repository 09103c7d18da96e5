"""A lead's life after its opt-in: confirmation, unsubscribe, the owner's review
decisions (approve, reject, several at once). Erasing a person: `capture.leads.erasure`.

Plain functions over the database session, no request objects: a view, a CLI
command, the scheduler and a test call them alike. The opt-in itself is
`capture.leads.optin`; the review rules `capture.leads.review`.
"""

from typing import Any

from flask import current_app
from sqlalchemy import select, update

from capture import clock, links
from capture.db import db
from capture.leads import optins
from capture.timeline import record_event
from capture.mail import membership
from capture.models import Delivery, Enrollment, Event, Lead
from capture.webhooks import events


def queued_confirmation(now) -> dict[str, Any]:
    """The values that put a lead in the confirmation queue, due at once."""
    return {"confirmation_queued_at": now, "confirmation_due_at": now}


def confirm_url(lead: Lead) -> str:
    """The absolute double opt-in link for a lead."""
    token = links.make("confirm", lead.public_ref)
    return f"{current_app.config['BASE_URL']}/confirm/{token}"


def lead_for_confirm_token(token: str) -> Lead | None:
    """The lead a confirmation token belongs to, or None when it is not genuine."""
    ref = links.read("confirm", token)
    if ref is None:
        return None
    return db.session.scalar(select(Lead).where(Lead.public_ref == ref))


def confirm(lead: Lead, client_ip: str | None) -> bool:
    """Mark an unconfirmed lead subscribed. Idempotent: True only the first time."""
    if lead.subscription != "unconfirmed":
        return False
    lead.subscription = "subscribed"
    lead.confirmed_at = clock.utcnow()
    lead.confirm_ip = client_ip
    record_event(lead, "confirm", ip=client_ip)
    events.emit("lead.confirmed", lead)
    optins.enroll_everywhere(lead)
    db.session.commit()
    return True


def unsubscribe(lead: Lead, source: str, delivery_id: int | None = None) -> bool:
    """Unsubscribe a lead and stop its sequences. Idempotent: True the first time.
    `delivery_id`: the email whose link was used, when known."""
    if lead.subscription in ("unsubscribed", "bounced", "erased"):
        return False
    lead.subscription = "unsubscribed"
    if delivery_id is not None and db.session.get(Delivery, delivery_id) is None:
        delivery_id = None
    record_event(lead, "unsubscribe", delivery_id=delivery_id, source=source)
    membership.stop(lead, "unsubscribed")
    events.emit("lead.unsubscribed", lead)
    db.session.commit()
    return True


# The stop reason of a sequence the lead left from an email's unsubscribe page.
LEFT_BY_LEAD = "left by the lead"


def email_enrollment(lead: Lead, delivery_id: int | None) -> Enrollment | None:
    """The lead's place in the sequence the email `delivery_id` came from: None for a
    broadcast's email, an email unknown (or not this lead's) and a token without one."""
    if delivery_id is None:
        return None
    delivery = db.session.get(Delivery, delivery_id)
    if delivery is None or delivery.lead_id != lead.id or not delivery.sequence:
        return None
    return db.session.scalar(select(Enrollment).where(
        Enrollment.lead_id == lead.id, Enrollment.sequence == delivery.sequence))


def may_leave(lead: Lead, enrollment: Enrollment | None) -> bool:
    """True when the unsubscribe page offers to stop only this sequence: the lead is
    subscribed and still in it."""
    return (enrollment is not None and lead.subscription == "subscribed"
            and enrollment.state != "stopped")


def leave_sequence(lead: Lead, delivery_id: int | None) -> Enrollment | None:
    """Stop only the sequence the email `delivery_id` came from; the lead stays
    subscribed to everything else (other sequences, broadcasts). Idempotent: the
    enrollment stopped, the first time; None when there was nothing to leave.

    Not an unsubscribe: the timeline gets a `leave` event naming the email, which no
    unsubscribe number counts, and no webhook is sent (the subscription is unchanged)."""
    enrollment = email_enrollment(lead, delivery_id)
    if not may_leave(lead, enrollment):
        return None
    # One UPDATE that only a running enrollment matches: a tick or a second press
    # of the button at the same moment cannot stop it twice.
    stopped = db.session.execute(
        update(Enrollment)
        .where(Enrollment.id == enrollment.id, Enrollment.state != "stopped")
        .values(state="stopped", stop_reason=LEFT_BY_LEAD, next_due_at=None)
    ).rowcount
    if not stopped:
        db.session.rollback()
        return None
    record_event(lead, "leave", delivery_id=delivery_id, sequence=enrollment.sequence,
                 source="page")
    db.session.commit()
    return enrollment


# --- the owner's decisions ----------------------------------------------------------

REASON_MAX_LENGTH = 300


def approve(lead: Lead, by: str = "owner") -> bool:
    """Approve a lead and enrol it in its page's sequence. True when it changed.

    A lead the rules rejected on a double opt-in page (or in an import) never got
    the confirmation email: it is queued, so the lead can become subscribed."""
    if lead.review == "approved" or lead.subscription == "erased":
        return False
    lead.review = "approved"
    lead.review_reason = ""
    lead.reviewed_at = clock.utcnow()
    if _never_asked_to_confirm(lead):
        for name, value in queued_confirmation(lead.reviewed_at).items():
            setattr(lead, name, value)
    record_event(lead, "approve", by=by, reason="")
    events.emit("lead.approved", lead)
    optins.enroll_everywhere(lead)
    db.session.commit()
    return True


def _never_asked_to_confirm(lead: Lead) -> bool:
    """An unconfirmed lead that never got the confirmation email, of a page that still
    asks for one (or imported: an import asks whatever the page)."""
    if lead.subscription != "unconfirmed" or lead.confirmation_sent_at is not None:
        return False
    if lead.page is not None and lead.page.double_opt_in:
        return True
    return db.session.scalar(
        select(Event.id).where(Event.lead_id == lead.id, Event.kind == "import").limit(1)
    ) is not None


def reject(lead: Lead, reason: str, by: str = "owner") -> bool:
    """Reject a lead with a reason and stop its sequences. True when it changed. An
    approved lead rejected later is a **return**: its payout goes (the reports count
    its review as it is now), the timeline says `return` and `lead.returned` is sent
    with `lead.rejected`.

    Raises ValueError when the reason is empty."""
    reason = " ".join((reason or "").split())[:REASON_MAX_LENGTH]
    if not reason:
        raise ValueError("Give a reason for rejecting.")
    if (lead.review == "rejected" and lead.review_reason == reason
            or lead.subscription == "erased"):  # its numbers stay as they were
        return False
    returned = lead.review == "approved"
    lead.review = "rejected"
    lead.review_reason = reason
    lead.reviewed_at = clock.utcnow()
    record_event(lead, "return" if returned else "reject", by=by, reason=reason)
    events.emit_many(["lead.rejected", "lead.returned"] if returned else ["lead.rejected"],
                     lead)
    membership.stop(lead, "rejected")
    db.session.commit()
    return True


def review_many(lead_ids: list[int], decision: str, reason: str = "",
                by: str = "owner") -> int:
    """Approve or reject several leads at once; return how many changed. The
    confirmation emails approved leads still need are queued for the scheduler, as
    every confirmation email is.

    Raises ValueError for an unknown decision or a rejection without a reason."""
    if decision not in ("approve", "reject"):
        raise ValueError(f"unknown decision {decision!r}")
    if decision == "reject" and not (reason or "").strip():
        raise ValueError("Give a reason for rejecting.")
    # Fetched first: each decision commits on its own.
    chosen = db.session.scalars(select(Lead).where(Lead.id.in_(lead_ids)).order_by(Lead.id)).all()
    changed = 0
    for lead in chosen:
        done = (approve(lead, by=by) if decision == "approve"
                else reject(lead, reason, by=by))
        changed += done
    return changed

