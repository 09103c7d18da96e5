"""What a bounce or a complaint read from the bounce mailbox does to its lead.

- hard bounce (the address does not exist): event `bounce`, the lead `bounced`, its
  sequences stopped, its address suppressed;
- soft bounce (a full mailbox, a server down): event `soft_bounce`; the lead becomes
  `bounced` as above once it has CAPTURE_SOFT_BOUNCE_LIMIT of them within 7 days;
- complaint (the person pressed "spam"): event `complaint`, the lead unsubscribed and
  suppressed, webhook `lead.complained`.

Each is idempotent per (email, kind): a report read twice (a restart between the
database commit and the move to `Processed`) changes nothing the second time. An
email is a delivery, or a lead's confirmation email (which has no delivery row: there,
one event of a kind per lead; for soft bounces, per lead within the 7 days).
"""

from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select, update

from capture import clock, suppression
from capture.db import db
from capture.mail import membership
from capture.mail.verp import Origin
from capture.models import Delivery, Event, Lead
from capture.timeline import record_event
from capture.webhooks import events

SOFT_BOUNCE_DAYS = 7


@dataclass
class Target:
    """The lead an email went to, and the delivery when it was one (None for a
    confirmation email)."""

    lead: Lead
    delivery: Delivery | None = None

    @property
    def delivery_id(self) -> int | None:
        return self.delivery.id if self.delivery is not None else None


def target_of(origin: Origin) -> Target | None:
    """The lead (and delivery) a VERP origin names, or None when it is gone (deleted,
    or a delivery id of a test email) or the lead was erased. The lead stays locked
    until the action commits: two schedulers (or two webhook calls) acting on the same
    report act once."""
    delivery = db.session.get(Delivery, origin.id) if origin.kind == "delivery" else None
    lead_id = delivery.lead_id if delivery is not None else (
        origin.id if origin.kind == "confirmation" else None)
    if lead_id is not None:
        _lock(lead_id)
    lead = db.session.get(Lead, lead_id, populate_existing=True) \
        if lead_id is not None else None
    if lead is None or lead.subscription == "erased":
        db.session.rollback()
        return None
    return Target(lead, delivery)


def _lock(lead_id: int) -> None:
    """Lock the lead for this transaction by writing its row (unchanged): a row lock on
    PostgreSQL, and on SQLite, which has no row locks and whose reads take none, the
    database's write lock. Either way a second process acting on the same lead waits
    here and then sees what the first recorded (`_recorded`)."""
    db.session.execute(update(Lead).where(Lead.id == lead_id).values(id=Lead.id)
                       .execution_options(synchronize_session=False))


def _recorded(target: Target, kind: str, since=None) -> bool:
    """Whether this email already has an event of this kind (for a confirmation
    email: the lead has one with no delivery, since `since` when given)."""
    query = select(Event.id).where(Event.lead_id == target.lead.id, Event.kind == kind)
    if target.delivery is not None:
        query = query.where(Event.delivery_id == target.delivery.id)
    else:
        query = query.where(Event.delivery_id.is_(None))
        if since is not None:
            query = query.where(Event.created_at >= since)
    return db.session.scalar(query.limit(1)) is not None


def _make_bounced(lead: Lead, reason: str) -> None:
    lead.subscription = "bounced"
    membership.stop(lead, "bounced")
    suppression.suppress(lead.email, reason)


def hard_bounce(target: Target, diagnostic: str) -> bool:
    """The address does not exist: the lead is `bounced` and suppressed. True when
    this changed something (False for a report already recorded)."""
    if _recorded(target, "bounce"):
        return False
    lead = target.lead
    record_event(lead, "bounce", delivery_id=target.delivery_id, source="report",
                 error=diagnostic[:200])
    _make_bounced(lead, f"bounce: {diagnostic}")
    db.session.commit()
    return True


def soft_bounce(target: Target, diagnostic: str) -> bool:
    """A temporary failure: counted; the lead is `bounced` at the limit within 7
    days. True when this changed something."""
    since = clock.utcnow() - timedelta(days=SOFT_BOUNCE_DAYS)
    if _recorded(target, "soft_bounce", since) or _recorded(target, "bounce"):
        return False
    lead = target.lead
    record_event(lead, "soft_bounce", delivery_id=target.delivery_id, error=diagnostic[:200])
    db.session.flush()
    count = db.session.scalar(select(func.count(Event.id)).where(
        Event.lead_id == lead.id, Event.kind == "soft_bounce", Event.created_at >= since))
    limit = current_app.config["SOFT_BOUNCE_LIMIT"]
    if count >= limit and lead.subscription != "bounced":
        record_event(lead, "bounce", delivery_id=target.delivery_id, source="soft bounces",
                     error=f"{count} soft bounces within {SOFT_BOUNCE_DAYS} days: "
                           f"{diagnostic}"[:200])
        _make_bounced(lead, f"{count} soft bounces within {SOFT_BOUNCE_DAYS} days")
    db.session.commit()
    return True


def complaint(target: Target, feedback: str) -> bool:
    """The person reported the email as spam: unsubscribed (a bounced lead stays
    bounced), suppressed, event `complaint`, webhook `lead.complained`. True when
    this changed something."""
    if _recorded(target, "complaint"):
        return False
    lead = target.lead
    record_event(lead, "complaint", delivery_id=target.delivery_id,
                 feedback=feedback[:200])
    if lead.subscription != "bounced":
        lead.subscription = "unsubscribed"
    membership.stop(lead, "unsubscribed")
    suppression.suppress(lead.email, "complaint")
    events.emit("lead.complained", lead)
    db.session.commit()
    return True
