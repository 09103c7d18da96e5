"""A buyer's (or the owner's) decision on a lead, however it arrives: the API's
`POST /api/v1/leads/<ref>/review`, the signed `/postback/review`. One function for
both, so that they answer and record alike: the lead's own review (its first
opt-in: `capture.leads.lifecycle`) or, naming a page, the review of the person's
later opt-in there (`capture.leads.optins`). Idempotent: the same decision again
changes nothing; an approved lead (or opt-in) rejected later is a return."""

from dataclasses import dataclass

from sqlalchemy import select

from capture.db import db
from capture.leads import lifecycle, optins
from capture.models import Lead, Optin, Page

# The values of `review`, and the decision each one is.
DECISIONS = {"approved": "approve", "rejected": "reject"}


class DecisionError(ValueError):
    """A decision that cannot be taken: `status` is how a door answers (400 bad value,
    404 unknown lead or opt-in, 409 an erased person)."""

    def __init__(self, message: str, status: int = 400, field: str = "review") -> None:
        super().__init__(message)
        self.status = status
        self.field = field


@dataclass(frozen=True)
class Outcome:
    """What a decision did: `changed` False for a replay (or no change)."""

    lead: Lead
    changed: bool
    returned: bool
    page: str | None


def decide(public_ref: str, review: str, reason: str = "", *, by: str,
           page: str | None = None) -> Outcome:
    """Take the decision (committed). Raises DecisionError."""
    if review not in DECISIONS:
        raise DecisionError("review must be approved or rejected")
    reason = " ".join((reason or "").split())[:lifecycle.REASON_MAX_LENGTH]
    if review == "rejected" and not reason:
        raise DecisionError("give a reason for rejecting", field="reason")
    lead = db.session.scalar(select(Lead).where(Lead.public_ref == public_ref))
    if lead is None:
        raise DecisionError("unknown lead", status=404, field="lead")
    if lead.subscription == "erased":
        raise DecisionError("this person was erased: nothing is left to review", status=409,
                            field="lead")
    optin = _later_optin(lead, page) if page else None
    if optin is None:
        was = lead.review
        changed = (lifecycle.approve(lead, by=by) if review == "approved"
                   else lifecycle.reject(lead, reason, by=by))
        return Outcome(lead, changed, changed and was == "approved" and review == "rejected",
                       lead.page.slug if lead.page is not None else None)
    was = optin.review
    decision = optins.review(optin, DECISIONS[review], reason, by=by)
    return Outcome(lead, decision.changed,
                   decision.changed and was == "approved" and review == "rejected", page)


def _later_optin(lead: Lead, slug: str) -> Optin | None:
    """The person's opt-in on the page `slug`: None when it is their first (the lead's
    own review); DecisionError when they never opted in there."""
    row = db.session.execute(
        select(Optin).join(Page, Page.id == Optin.page_id)
        .where(Optin.lead_id == lead.id, Page.slug == slug)).scalar_one_or_none()
    if row is None:
        raise DecisionError(f"this lead has no opt-in on page {slug[:64]!r}", status=404,
                            field="page")
    return None if row.first else row
