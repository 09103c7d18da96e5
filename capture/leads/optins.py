"""A person's opt-ins: one row per (lead, page). The first is written with the lead and
mirrors its columns (kept in step at every flush); a later one, on another page, is
its own opt-in with its own consent evidence, attribution, review by that page's
rules and payout, and starts that page's sequence. The owner reviews a later opt-in here; the lead's own review (the
first opt-in's) stays in `capture.leads.lifecycle`.

Rules a person follows whatever page they opted in on (`docs/use/leads.md`):
subscription and confirmation are the person's, so a later opt-in of a subscribed
person needs no new confirmation, and an unsubscribed or bounced person stays so; the
sequence of a later opt-in starts when that opt-in is approved and the person may be
mailed (subscribed, and not rejected on their first opt-in).
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Flask
from sqlalchemy import event, insert, inspect, select, update
from sqlalchemy.orm import Session

from capture import clock
from capture.db import db
from capture.mail import membership
from capture.models import ATTRIBUTION_KEYS, Lead, Optin, Page
from capture.timeline import record_event
from capture.webhooks import events

# The values an opt-in row copies from a new lead's row (its first opt-in).
COPIED = ("page_id", "visit_id", "imported", "created_at", *ATTRIBUTION_KEYS, "referrer",
          "landing_url", "consent_text", "consent_at", "consent_ip", "review",
          "review_reason", "reviewed_at", "variant")
INSERT = insert(Optin.__table__)
REASON_MAX_LENGTH = 300
# The stop reason of a page's sequence when its (later) opt-in is rejected.
OPTIN_REJECTED = "optin rejected"


def first_row(lead_id: int, lead_values: dict[str, Any]) -> dict[str, Any]:
    """The first opt-in's row of a lead inserted with `lead_values`."""
    return {"lead_id": lead_id, "first": True,
            **{key: lead_values.get(key) for key in COPIED},
            "imported": bool(lead_values.get("imported", False))}


def init_app(app: Flask) -> None:
    """Give every lead the ORM inserts (the list import, the dashboard's tools) its
    first opt-in in the same flush (`_first_optins`); the opt-in itself writes its
    rows with plain INSERTs and calls `first_row`. Registered once per process."""
    if not event.contains(Session, "after_flush", _first_optins):
        event.listen(Session, "after_flush", _first_optins)


def _first_optins(session: Session, flush_context) -> None:
    """Insert the first opt-in of the leads this flush inserted; give the first opt-in
    of the leads it changed their new values (a review, an erasure)."""
    new = [obj for obj in session.new if isinstance(obj, Lead)]
    if new:
        session.connection().execute(INSERT, [
            first_row(lead.id, {key: getattr(lead, key) for key in COPIED}) for lead in new])
    for lead in session.dirty:
        if isinstance(lead, Lead):
            state = inspect(lead)
            changed = {key: getattr(lead, key) for key in COPIED
                       if state.attrs[key].history.has_changes()}
            if changed:
                session.connection().execute(
                    update(Optin).where(Optin.lead_id == lead.id, Optin.first.is_(True))
                    .values(**changed).execution_options(synchronize_session=False))


def enroll_everywhere(lead: Lead) -> int:
    """`membership.enroll` for the lead's first opt-in and for each approved later one
    (the person just became mailable: confirmed, or approved on their first page)."""
    started = membership.enroll(lead)
    if lead.review != "approved" or lead.subscription != "subscribed":
        return started
    pages = db.session.scalars(
        select(Page).join(Optin, Optin.page_id == Page.id)
        .where(Optin.lead_id == lead.id, Optin.first.is_(False), Optin.review == "approved")
        .order_by(Optin.id)).all()
    return started + sum(membership.enroll(lead, page) for page in pages)


def of_lead(lead_id: int) -> list[Optin]:
    """The lead's opt-ins, oldest first (the first one first)."""
    return list(db.session.scalars(
        select(Optin).where(Optin.lead_id == lead_id)
        .order_by(Optin.first.desc(), Optin.created_at, Optin.id)))


def data(optin: Any, page: Page | None) -> dict[str, Any]:
    """An opt-in as the API, webhooks and the personal-data export show it."""
    return {
        "page": page.slug if page is not None else None,
        "first": bool(optin.first),
        "created_at": _time(optin.created_at),
        "review": optin.review,
        "review_reason": optin.review_reason or "",
        "payout": (f"{page.payout:.2f}" if page is not None and optin.review == "approved"
                   else "0.00"),
        "currency": page.currency if page is not None else None,
        "attribution": {key: getattr(optin, key) for key in (*ATTRIBUTION_KEYS, "referrer")},
        # The page test's variant it was made on (None: no test then).
        "variant": getattr(optin, "variant", None),
        "consent": {"text": optin.consent_text or "", "at": _time(optin.consent_at),
                    "ip": optin.consent_ip},
    }


@dataclass
class Decision:
    """What reviewing a later opt-in did."""

    changed: bool
    message: str


def review(optin: Optin, decision: str, reason: str = "", by: str = "owner") -> Decision:
    """Approve or reject a later opt-in (committed here). Its payout counts when
    approved; approving it starts its page's sequence when the person may be mailed,
    rejecting it stops that sequence. The first opt-in is the lead's own review:
    `lifecycle.approve` / `reject`.

    Raises ValueError for an unknown decision, a rejection without a reason or the
    first opt-in."""
    if decision not in ("approve", "reject"):
        raise ValueError(f"unknown decision {decision!r}")
    if optin.first:
        raise ValueError("This is the lead's first opt-in: review the lead itself.")
    reason = " ".join((reason or "").split())[:REASON_MAX_LENGTH]
    if decision == "reject" and not reason:
        raise ValueError("Give a reason for rejecting.")
    lead = db.session.get(Lead, optin.lead_id)
    slug = optin.page.slug if optin.page is not None else "(deleted page)"
    state = "approved" if decision == "approve" else "rejected"
    if lead.subscription == "erased" or (optin.review == state
                                         and (optin.review_reason or "") == reason):
        return Decision(False, f"The opt-in on {slug} is already {state}.")
    returned = state == "rejected" and optin.review == "approved"
    optin.review, optin.review_reason = state, reason
    optin.reviewed_at = clock.utcnow()
    record_event(lead, "return" if returned else decision, optin.page_id, by=by,
                 reason=reason, page=slug)
    events.emit_many([f"lead.{state}", *(["lead.returned"] if returned else [])], lead,
                     optin.page_id, extra={"optin": data(optin, optin.page)})
    sequence = optin.page.sequence if optin.page is not None else None
    if state == "approved" and optin.page is not None:
        if sequence:
            membership.resume_sequence(lead.id, sequence, OPTIN_REJECTED)
        membership.enroll(lead, optin.page, again=True)
    elif state == "rejected" and sequence:
        membership.stop_sequence(lead.id, sequence, OPTIN_REJECTED)
    db.session.commit()
    return Decision(True, f"The opt-in on {slug} is {state}.")


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="milliseconds") + "Z"
