"""Everything stored about one person, as one JSON document (`leads data`, the API's
`/leads/<ref>/data`): the lead with its fields and consent evidence, its opt-ins, tags,
timeline, emails, the visit it opted in from, upgrades and sequences, and the sign-ups
and clicks the intake still holds for the person (waiting, or kept as failed). Only rows
of that lead."""

from datetime import datetime
from typing import Any

from sqlalchemy import Select, select, union

from capture.db import db
from capture.leads import intake, optins
from capture.models import (
    ATTRIBUTION_KEYS,
    Delivery,
    Enrollment,
    Event,
    Intake,
    Lead,
    LeadTag,
    Optin,
    Page,
    Upgrade,
    Visit,
)


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat() + "Z"


def _slugs(page_ids) -> dict[int, str]:
    ids = {page_id for page_id in page_ids if page_id is not None}
    return dict(db.session.execute(select(Page.id, Page.slug).where(Page.id.in_(ids))).all()
                ) if ids else {}


def personal_data(lead: Lead) -> dict[str, Any]:
    """The document: every value stored about the lead's person, times in UTC with Z."""
    events = db.session.scalars(select(Event).where(Event.lead_id == lead.id)
                                .order_by(Event.created_at, Event.id)).all()
    slugs = _slugs([lead.page_id, *(event.page_id for event in events)])
    return {
        "lead": _lead(lead, slugs),
        "consent": {"text": lead.consent_text, "at": _time(lead.consent_at),
                    "ip": lead.consent_ip, "confirmation_sent_at": _time(lead.confirmation_sent_at),
                    "confirmed_at": _time(lead.confirmed_at), "confirm_ip": lead.confirm_ip},
        "optins": [_optin(row) for row in optins.of_lead(lead.id)],
        "tags": [{"tag": row.tag, "cause": row.cause, "added_at": _time(row.created_at)}
                 for row in db.session.scalars(select(LeadTag).where(LeadTag.lead_id == lead.id)
                                               .order_by(LeadTag.created_at, LeadTag.tag))],
        "timeline": [{"kind": event.kind, "at": _time(event.created_at),
                      "page": slugs.get(event.page_id), "email": event.delivery_id,
                      "machine": event.machine, "data": event.data or {}}
                     for event in events],
        "emails": _deliveries(lead),
        "visits": _visits(lead),
        "upgrades": [{"txn": row.txn, "amount": f"{row.amount:.2f}", "currency": row.currency,
                      "source": row.source, "at": _time(row.created_at)}
                     for row in db.session.scalars(select(Upgrade).where(Upgrade.lead_id == lead.id)
                                                   .order_by(Upgrade.created_at, Upgrade.id))],
        "sequences": [{"sequence": row.sequence, "state": row.state,
                       "started_at": _time(row.started_at), "last_step": row.last_step,
                       "last_sent_at": _time(row.last_sent_at), "stop_reason": row.stop_reason}
                      for row in db.session.scalars(select(Enrollment)
                                                    .where(Enrollment.lead_id == lead.id)
                                                    .order_by(Enrollment.id))],
        "intake": held_by_intake(lead.email, lead.id),
    }


def held_by_intake(email: str, lead_id: int | None = None) -> list[dict[str, Any]]:
    """The sign-ups from the address (as stored) and the lead's clicks that the intake
    still holds, waiting or kept as failed, the oldest first."""
    rows = db.session.scalars(select(Intake).where(intake.holding(email, lead_id))
                              .order_by(Intake.id))
    return [{"kind": row.kind, "state": row.state, "at": _time(row.created_at),
             "error": row.error, "values": row.payload} for row in rows]


def _lead(lead: Lead, slugs: dict[int, str]) -> dict[str, Any]:
    referred_by = (db.session.scalar(select(Lead.public_ref).where(Lead.id == lead.referred_by_id))
                   if lead.referred_by_id else None)
    return {
        "public_ref": lead.public_ref, "email": lead.email, "name": lead.name,
        "country": lead.country, "fields": lead.fields or {},
        "page": slugs.get(lead.page_id), "review": lead.review,
        "review_reason": lead.review_reason, "reviewed_at": _time(lead.reviewed_at),
        "subscription": lead.subscription, "imported": lead.imported,
        "created_at": _time(lead.created_at),
        "attribution": {**{key: getattr(lead, key) for key in ATTRIBUTION_KEYS},
                        "referrer": lead.referrer, "landing_url": lead.landing_url,
                        "visitor_id": lead.visitor_id},
        "referred_by": referred_by,
    }


def _optin(row: Optin) -> dict[str, Any]:
    """One opt-in as the API shows it (`optins.data`: page, review, payout, consent
    evidence, attribution), with the rest stored of it: landing URL, review time."""
    shown = optins.data(row, row.page)
    shown["attribution"]["landing_url"] = row.landing_url
    shown["reviewed_at"] = _time(row.reviewed_at)
    return shown


def _deliveries(lead: Lead) -> list[dict[str, Any]]:
    """The emails made for the person (sequence steps and broadcasts), by id: the
    `email` of a timeline entry."""
    return [{"id": row.id, "sequence": row.sequence or None,
             "broadcast": row.step if row.broadcast_id is not None else None,
             "step": row.step if row.broadcast_id is None else None,
             "subject": row.subject, "status": row.status, "attempts": row.attempts,
             "created_at": _time(row.created_at), "sent_at": _time(row.sent_at),
             "message_id": row.message_id, "error": row.error}
            for row in db.session.scalars(select(Delivery).where(Delivery.lead_id == lead.id)
                                          .order_by(Delivery.id))]


def _visits(lead: Lead) -> list[dict[str, Any]]:
    """The visits the person opted in from (one per opt-in). Not every visit of its
    visitor cookie: a browser shared by two people would show one the other's visits."""
    rows = db.session.scalars(select(Visit).where(Visit.id.in_(optin_visits(lead)))
                              .order_by(Visit.created_at, Visit.id)).all()
    slugs = _slugs(row.page_id for row in rows)
    return [{"page": slugs.get(row.page_id), "at": _time(row.created_at),
             **{key: getattr(row, key) for key in ATTRIBUTION_KEYS},
             "referrer": row.referrer, "landing_url": row.landing_url,
             "user_agent": row.user_agent}
            for row in rows]


def optin_visits(lead: Lead) -> Select:
    """SELECT the ids of the visits the lead's person opted in from: its own (the
    first opt-in's) and its later opt-ins'."""
    return union(select(Visit.id).where(Visit.id == lead.visit_id),
                 select(Optin.visit_id).where(Optin.lead_id == lead.id,
                                              Optin.visit_id.is_not(None)))
