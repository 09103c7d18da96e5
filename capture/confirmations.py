"""Confirmation emails the scheduler sends, not a request: those of imported leads
and of leads the owner approved in bulk (both could be thousands at once).

A lead waits here while it is unconfirmed, not rejected and never sent the email,
and was imported, or approved on a double opt-in page, within CONFIRM_WITHIN_DAYS.
Each scheduler run sends what the sending rate cap leaves of the current minute.
"""

import logging
from datetime import timedelta

from flask import current_app
from sqlalchemy import and_, or_, select

from capture import clock, leads, sending
from capture.extensions import db
from capture.models import Event, Lead, Page

log = logging.getLogger(__name__)

# Leads still waiting this long after their import or approval are left alone.
CONFIRM_WITHIN_DAYS = 7
# Confirmation emails failing one after the other before a run stops (the mail
# server is down; the next run tries again).
CONFIRM_FAILURES_IN_A_ROW = 3


def send_queued() -> int:
    """Email the confirmation link to the leads waiting for it, within what the rate
    cap leaves this minute; return how many went out. Safe in several schedulers at
    once: `leads.send_confirmation` claims each lead before sending."""
    now = clock.utcnow()
    budget = min(sending.rate_budget(now), current_app.config["SEND_BATCH_SIZE"])
    if budget <= 0:
        return 0
    waiting = db.session.scalars(
        select(Lead.id).distinct()
        .join(Event, Event.lead_id == Lead.id)
        .join(Page, Page.id == Lead.page_id)
        .where(or_(Event.kind == "import",
                   and_(Event.kind == "approve", Page.double_opt_in.is_(True))),
               Event.created_at >= now - timedelta(days=CONFIRM_WITHIN_DAYS),
               Lead.subscription == "unconfirmed", Lead.confirmation_sent_at.is_(None),
               Lead.review != "rejected")
        .order_by(Lead.id).limit(budget)
    ).all()
    sent = failures = 0
    for lead_id in waiting:
        lead = db.session.get(Lead, lead_id)
        if lead is None or lead.confirmation_sent_at is not None:
            continue  # deleted, or sent by another scheduler meanwhile
        if leads.send_confirmation(lead):
            sent, failures = sent + 1, 0
        elif db.session.get(Lead, lead_id).confirmation_sent_at is None:
            failures += 1  # the mail backend failed; the lead stays queued
            if failures >= CONFIRM_FAILURES_IN_A_ROW:
                log.warning("queued confirmation emails stopped after %s failures in a "
                            "row; the next run tries again", failures)
                break
    return sent
