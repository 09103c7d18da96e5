"""Erasing a person (the owner's button, `leads erase`, the API, the retention of
unconfirmed leads): every personal value goes, the rows the reports count stay.

The lead row, its events, deliveries, upgrades and enrolments are kept, so every past
number (leads, approved, confirmed, payout, opens, clicks, upgrades …) stays as it was;
what they held about the person is blanked: the address (a placeholder unique per row
that is no address anyone can type), name, fields, country, consent and confirmation
addresses, the visit's user agent and pages, event details, email subjects and errors,
tags, queued webhook bodies, the sign-ups and clicks the intake holds for the person
(after the retention's erasure a sign-up that waits, or failed within the retention
days, stays: it is the person signing up anew). The public ref is replaced, so links
in the person's old emails and postbacks no longer reach the row. The address stays
only as a keyed hash in the suppression list (`capture.suppression`): a new sign-up
from it is ignored as any suppressed one is (not after the retention of unconfirmed
leads, which nobody asked for: such a person may sign up again).
"""

import secrets
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import bindparam, delete, select, update

from capture import clock, suppression
from capture.db import db
from capture.leads import intake
from capture.leads.personal_data import optin_visits
from capture.mail import membership
from capture.models import (
    ATTRIBUTION_KEYS,
    Delivery,
    Event,
    Lead,
    LeadTag,
    Optin,
    Visit,
    WebhookDelivery,
)
from capture.timeline import record_event

ERASED = "erased"
# The event details that say nothing about the person and that the numbers read (a
# duplicate counts where it came from): every other key goes.
KEPT_EVENT_KEYS = frozenset((*ATTRIBUTION_KEYS, "sequence", "step", "source", "by",
                             "amount", "currency", "txn"))
# Leads the retention job erases per transaction.
RETENTION_BATCH = 200


def placeholder(lead_id: int) -> str:
    """The erased lead's `email`: unique per row, never an address (`.invalid` is
    reserved, and the opt-in refuses it)."""
    return f"erased-{lead_id}@erased.invalid"


def is_erased(lead: Lead) -> bool:
    """Whether the lead's person was erased."""
    return lead.subscription == ERASED


def erase(lead: Lead, by: str = "owner", *, suppress: bool = True,
          if_subscription: str | None = None) -> bool:
    """Erase the person behind a lead (committed here). True when it changed; an
    erased lead stays as it is. `by`: owner, api or retention (on the timeline).
    `suppress`: keep the address's keyed hash on the suppression list (the person or
    the owner asked for the erasure; not for retention: a person who never confirmed
    asked for nothing, and may sign up again). `if_subscription`: erase only a lead
    still in this state, decided by the database (a lead who confirms meanwhile, or
    another scheduler process's erasure, wins)."""
    if is_erased(lead):
        return False
    if if_subscription is not None:
        claimed = db.session.execute(
            update(Lead).where(Lead.id == lead.id, Lead.subscription == if_subscription)
            .values(subscription=ERASED).execution_options(synchronize_session=False)
        ).rowcount
        if not claimed:
            db.session.rollback()
            return False
    if suppress:
        suppression.suppress_erased(lead.email)
    intake.forget(lead.email, lead.id, older_than=None if suppress else retention_start())
    _forget_rows(lead)
    membership.stop(lead, ERASED)
    lead.email = placeholder(lead.id)
    lead.name, lead.country, lead.fields = "", None, {}
    lead.public_ref = secrets.token_urlsafe(12)
    lead.visitor_id = lead.referrer = lead.landing_url = None
    lead.consent_text, lead.consent_ip, lead.confirm_ip = "", None, None
    lead.confirmation_queued_at = lead.confirmation_due_at = None
    lead.confirmation_error = None
    lead.review_reason = ""
    lead.subscription = ERASED
    record_event(lead, "erase", by=by)
    db.session.commit()
    return True


def _forget_rows(lead: Lead) -> None:
    """Blank what the lead's other rows hold about the person, with plain statements
    (the rows stay: the reports count them)."""
    session = db.session
    # Queued webhook bodies (and the log of posted ones) carry the lead's values.
    session.execute(delete(WebhookDelivery).where(
        WebhookDelivery.body.contains(f'"lead":{{"id":"{lead.public_ref}"', autoescape=True)))
    session.execute(delete(LeadTag).where(LeadTag.lead_id == lead.id))
    changed = [{"event_id": event_id,
                "kept": {key: value for key, value in (data or {}).items()
                         if key in KEPT_EVENT_KEYS}}
               for event_id, data in session.execute(
                   select(Event.id, Event.data).where(Event.lead_id == lead.id))]
    if changed:
        session.execute(update(Event.__table__).where(Event.__table__.c.id == bindparam("event_id"))
                        .values(data=bindparam("kept")), changed)
    session.execute(
        update(Delivery).where(Delivery.lead_id == lead.id, Delivery.status == "queued")
        .values(status="skipped").execution_options(synchronize_session=False))
    session.execute(
        update(Delivery).where(Delivery.lead_id == lead.id, Delivery.status == "retry")
        .values(status="failed", retry_at=None).execution_options(synchronize_session=False))
    session.execute(
        update(Delivery).where(Delivery.lead_id == lead.id)
        .values(subject="", message_id=None, error="")
        .execution_options(synchronize_session=False))
    # The later opt-ins' evidence, as the lead's own is blanked below (the first
    # opt-in follows the lead at the flush); their page, time, attribution and review
    # stay for the numbers.
    session.execute(
        update(Optin).where(Optin.lead_id == lead.id, Optin.first.is_(False))
        .values(consent_text="", consent_ip=None, referrer=None, landing_url=None,
                review_reason="")
        .execution_options(synchronize_session=False))
    # The visits it opted in from (other visits of the cookie may be someone else's).
    session.execute(update(Visit).where(Visit.id.in_(optin_visits(lead)))
                    .values(user_agent=None, referrer=None, landing_url=None)
                    .execution_options(synchronize_session=False))


def retention_start(now=None) -> datetime:
    """The moment UNCONFIRMED_RETENTION_DAYS before now: what is older goes."""
    days = current_app.config["UNCONFIRMED_RETENTION_DAYS"]
    return (now or clock.utcnow()) - timedelta(days=days)


def erase_unconfirmed(now=None) -> int:
    """Erase the leads still unconfirmed UNCONFIRMED_RETENTION_DAYS after they last
    opted in (a repeat opt-in, which sends the confirmation again, starts the time
    anew; 0: kept for ever), without suppressing their addresses: at most
    RETENTION_BATCH, the oldest first, so that one scheduler tick stays short (the
    next one goes on). Returns how many."""
    if not current_app.config["UNCONFIRMED_RETENTION_DAYS"]:
        return 0
    before = retention_start(now)
    recent_optin = (select(Event.id).where(Event.lead_id == Lead.id,
                                           Event.kind.in_(("optin", "duplicate")),
                                           Event.created_at >= before).exists())
    leads = db.session.scalars(
        select(Lead).where(Lead.subscription == "unconfirmed", Lead.created_at < before,
                           ~recent_optin)
        .order_by(Lead.id).limit(RETENTION_BATCH)).all()
    return sum(erase(lead, by="retention", suppress=False, if_subscription="unconfirmed")
               for lead in leads)
