"""The one opt-in: an address given with consent becomes a new lead, or a repeat on
the lead it already is. The opt-in page's form, the embedded form and the API call
`submit_optin`; the list import builds its new leads with `new_lead_row` and
`opening_events` (see `capture.leads.imports.importer` for why it stays a batch).

Plain functions over the database session, no request objects: each door checks its
input its own way (`capture.leads.fields`) and passes what it knows as an `OptIn`.
Confirmation emails are only queued here; `capture.leads.confirmations` sends them
from the scheduler, never inside a request, so an opt-in takes the same time for a
new, a known and a suppressed address.
"""

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import aliased

from capture import clock
from capture.db import db
from capture import suppression
from capture.leads import lifecycle, optins, tags
from capture.leads.review import review_verdict
from capture.timeline import event_row, insert_events
from capture.mail import membership
from capture.models import ATTRIBUTION_KEYS, Lead, Optin, Page, Suppression, Visit
from capture.webhooks import events


@dataclass
class OptIn:
    """What a person gave, already checked by the door it came through, and what
    that door knows around it."""

    email: str
    name: str = ""
    country: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    client_ip: str | None = None
    # The page view the form was shown in (from its fill-time token), if any.
    visit_id: int | None = None
    # utm_*, ref, referrer given directly (the API, the import) when there is no visit
    # to inherit.
    attribution: dict[str, str | None] = field(default_factory=dict)
    # The page variant the form was shown as ("a": the page itself in a test; None:
    # no test, or a door outside it: the embedded form, the API, an import).
    variant: str | None = None


@dataclass(frozen=True)
class Consent:
    """What a new lead's consent rests on, kept with the lead as evidence, and
    whether the lead must still confirm it by email."""

    text: str
    at: datetime
    ip: str | None
    to_confirm: bool


@dataclass
class Outcome:
    """What an opt-in led to: a new lead, a duplicate of one, or nothing (suppressed)."""

    kind: str  # created | added (a later opt-in of a known lead) | duplicate | suppressed
    lead_id: int | None = None

    @property
    def lead(self) -> Lead | None:
        """The lead, loaded when asked for: most opt-ins never need it again."""
        return None if self.lead_id is None else db.session.get(Lead, self.lead_id)


# --- where an opt-in came from --------------------------------------------------------

@dataclass(frozen=True)
class VisitOrigin:
    """Where an opt-in came from: its visit, and what that visit and the visitor's
    first recorded visit (first touch) say about the source."""

    visit_id: int
    # The visit's own utm_*, ref, referrer and landing URL (a duplicate opt-in records
    # these, a later opt-in is credited to them).
    visit: dict[str, str | None]
    # The first visit's utm_*, ref, referrer, landing URL and visitor id: a person who
    # came from an ad, left, and came back directly is still credited to the ad.
    first_touch: dict[str, str | None]


_VISIT_KEYS = (*ATTRIBUTION_KEYS, "referrer", "landing_url")
_FIRST_TOUCH_KEYS = (*_VISIT_KEYS, "visitor_id")


def _visit_origin_query():
    """The visit by id joined to its visitor's first visit (the lowest id, found
    through the (visitor_id, id) index): one statement, built once."""
    visit = aliased(Visit, name="visit")
    first = aliased(Visit, name="first_visit")
    earliest = (select(func.min(Visit.id)).where(Visit.visitor_id == visit.visitor_id)
                .scalar_subquery())
    return (
        select(visit.id, *(getattr(visit, key) for key in _VISIT_KEYS),
               *(getattr(first, key).label(f"first_{key}") for key in _FIRST_TOUCH_KEYS))
        .join(first, first.id == earliest)
        .where(visit.id == bindparam("visit_id"))
    )


_VISIT_ORIGIN = _visit_origin_query()


def visit_origin(visit_id: int | None) -> VisitOrigin | None:
    """The visit an opt-in came from and its first touch, or None when there is no
    such visit (none given, or since deleted)."""
    if not isinstance(visit_id, int):
        return None
    row = db.session.connection().execute(_VISIT_ORIGIN, {"visit_id": visit_id}).first()
    if row is None:
        return None
    return VisitOrigin(
        visit_id=row.id,
        visit={key: row._mapping[key] for key in _VISIT_KEYS},
        first_touch={key: row._mapping[f"first_{key}"] for key in _FIRST_TOUCH_KEYS},
    )


# --- the opt-in -----------------------------------------------------------------------

# Built once: every opt-in runs them. The lead and its timeline are written as plain
# INSERTs, the ORM's unit of work for them costing several times the statements.
_LEAD_OF_ADDRESS = select(Lead.id).where(Lead.email == bindparam("email")).scalar_subquery()
_KNOWN_ADDRESS = select(
    select(Suppression.id).where(suppression.MATCHING_BOUND).limit(1)
    .scalar_subquery().label("suppressed"),
    _LEAD_OF_ADDRESS.label("lead"),
    # Whether that lead opted in on this page before (a duplicate) or not (a later opt-in).
    select(Optin.id).where(Optin.lead_id == _LEAD_OF_ADDRESS,
                           Optin.page_id == bindparam("page_id"))
    .scalar_subquery().label("on_page"),
)
_NO_ATTRIBUTION = dict.fromkeys((*ATTRIBUTION_KEYS, "referrer", "landing_url", "visitor_id"))
_NOT_QUEUED = dict.fromkeys(("confirmation_queued_at", "confirmation_due_at"))
# A repeat opt-in queues the confirmation again while the lead is unconfirmed and the
# last one went out at least CONFIRM_RESEND_MINUTES ago (or never): one conditional
# UPDATE, so a flood of one address queues one email.
_QUEUE_AGAIN = (
    update(Lead)
    .where(Lead.id == bindparam("lead_id"), Lead.subscription == "unconfirmed",
           Lead.review != "rejected",
           or_(Lead.confirmation_sent_at.is_(None),
               Lead.confirmation_sent_at <= bindparam("resend_before")))
    .values(confirmation_queued_at=bindparam("now"), confirmation_due_at=bindparam("now"))
    .execution_options(synchronize_session=False)
)


def submit_optin(page: Page, optin: OptIn) -> Outcome:
    """Store an opt-in and commit it: a new lead; a later opt-in of a known lead on
    another page; or a `duplicate` event when the lead opted in on this page before.
    The confirmation email it needs is queued, never sent here."""
    outcome = store_optin(page, optin)
    db.session.commit()
    return outcome


def store_optin(page: Page, optin: OptIn) -> Outcome:
    """`submit_optin` in the session's transaction, not committed: the intake's
    processor stores a batch of sign-ups in one. Nothing here rolls back: an address
    or a later opt-in that another transaction stored a moment earlier is found by
    the conflict it causes (ON CONFLICT DO NOTHING), and becomes a repeat."""
    connection = db.session.connection()
    known = connection.execute(_KNOWN_ADDRESS, {**suppression.bound_values(optin.email),
                                                "page_id": page.id}).one()
    if known.suppressed is not None:
        return Outcome("suppressed")
    origin = visit_origin(optin.visit_id)
    if known.lead is not None:
        return _repeat(page, known.lead, optin, origin, on_page=known.on_page is not None)

    now = clock.utcnow()
    consent = Consent(text=page.consent, at=now, ip=optin.client_ip,
                      to_confirm=page.double_opt_in)
    values = new_lead_row(page, optin, consent, now=now, origin=origin)
    lead_id = connection.execute(_insert_lead(connection), values).scalar()
    if lead_id is None:
        # The same address arrived in a parallel request a moment earlier.
        existing = db.session.scalar(select(Lead.id).where(Lead.email == optin.email))
        return _repeat(page, existing, optin, origin, on_page=True)
    first = optins.first_row(lead_id, values)
    connection.execute(optins.INSERT, first)
    # What webhooks and enrolment read of the new lead, without an ORM object.
    lead = SimpleNamespace(id=lead_id, page=page, confirmation_sent_at=None,
                           confirmed_at=None, confirm_ip=None, **values)
    insert_events([event_row(lead_id, page.id, kind, **data) for kind, data in
                   opening_events("optin", lead.review, lead.review_reason,
                                  **_attribution_data(values))])
    _page_tags(page, lead_id)
    changes = ["lead.created", "optin.created"]
    if lead.review != "pending":
        changes.append(f"lead.{lead.review}")
    events.emit_many(changes, lead,
                     extra=lambda: {"optin": optins.data(SimpleNamespace(**first), page)})
    membership.enroll(lead, page, new=True)
    return Outcome("created", lead_id)


_INSERT_LEADS = {
    name: dialect.insert(Lead.__table__).on_conflict_do_nothing(index_elements=["email"])
    .returning(Lead.__table__.c.id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))}
_INSERT_OPTINS = {
    name: dialect.insert(Optin.__table__).on_conflict_do_nothing(
        index_elements=["lead_id", "page_id"])
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))}


def _insert_lead(connection):
    """INSERT of a lead returning its id, or nothing when its address is taken, in
    the connection's dialect (built once: every opt-in runs it)."""
    return _INSERT_LEADS["postgresql" if connection.dialect.name == "postgresql" else "sqlite"]


def _insert_optin(connection):
    """INSERT of a later opt-in, or nothing when the lead has one on that page."""
    return _INSERT_OPTINS["postgresql" if connection.dialect.name == "postgresql" else "sqlite"]


def _page_tags(page: Page, lead_id: int) -> None:
    """The page's `tags`, given to the lead who opted in on it (cause `page:<slug>`)."""
    if page.tags:
        tags.add_tags([lead_id], page.tags, f"page:{page.slug}")


def _referrer_id(ref: str) -> int | None:
    """The lead whose public ref a new lead came with."""
    return db.session.scalar(select(Lead.id).where(Lead.public_ref == ref))


def new_lead_row(page: Page, optin: OptIn, consent: Consent, *, now: datetime,
                 origin: VisitOrigin | None = None,
                 referrer_of: Callable[[str], int | None] = _referrer_id) -> dict[str, Any]:
    """A new lead's row: the opt-in, the rules' verdict, the consent evidence (and the
    confirmation email queued when the lead must confirm and is not rejected), and the
    first-touch attribution of its visitor (or the attribution given directly).
    `referrer_of` finds the lead a `ref` names (the import looks up a batch at once)."""
    review, reason = review_verdict(page, optin.email, optin.name, optin.country, optin.fields)
    attribution = dict(origin.first_touch) if origin is not None else dict(optin.attribution)
    return {
        "email": optin.email,
        "name": optin.name,
        "country": optin.country,
        "fields": optin.fields,
        "public_ref": secrets.token_urlsafe(12),
        "page_id": page.id,
        "visit_id": origin.visit_id if origin is not None else None,
        "referred_by_id": referrer_of(attribution["ref"]) if attribution.get("ref") else None,
        "consent_text": consent.text,
        "consent_at": consent.at,
        "consent_ip": consent.ip,
        "review": review,
        "review_reason": reason,
        "reviewed_at": now if review != "pending" else None,
        "subscription": "unconfirmed" if consent.to_confirm else "subscribed",
        "created_at": now,
        "variant": optin.variant,
        **(lifecycle.queued_confirmation(now) if consent.to_confirm and review != "rejected"
           else _NOT_QUEUED),
        **_NO_ATTRIBUTION,
        **attribution,
    }


def opening_events(first: str, review: str, reason: str,
                   **data: Any) -> list[tuple[str, dict[str, Any]]]:
    """A new lead's first timeline entries as (kind, data): how it came (`optin`,
    `import`) and, unless it waits for the owner, the rules' verdict."""
    entries = [(first, data)]
    if review != "pending":
        verdict = "approve" if review == "approved" else "reject"
        entries.append((verdict, {"by": "rules", "reason": reason}))
    return entries


def _attribution_data(source: dict[str, Any]) -> dict[str, Any]:
    """The non-empty attribution values of a lead or visit, for an event's data."""
    return {key: source[key] for key in (*ATTRIBUTION_KEYS, "referrer") if source.get(key)}


def _repeat(page: Page, lead_id: int, optin: OptIn, origin: VisitOrigin | None, *,
            on_page: bool) -> Outcome:
    """A known address: a duplicate on a page it opted in on, else a later opt-in."""
    if on_page:
        return _duplicate(page, lead_id, optin, origin)
    return _later(page, lead_id, optin, origin)


def _later(page: Page, lead_id: int, optin: OptIn, origin: VisitOrigin | None) -> Outcome:
    """A known person's first opt-in on this page: its own row with this page's
    consent, the visit's attribution and the page's verdict; events, tags, webhooks
    and the page's sequence as for a new lead. Subscription and confirmation stay the
    person's: an unconfirmed person is asked again, as a duplicate would be."""
    now = clock.utcnow()
    review, reason = review_verdict(page, optin.email, optin.name, optin.country,
                                    optin.fields)
    attribution = (dict(origin.visit) if origin is not None
                   else {key: optin.attribution.get(key) for key in _VISIT_KEYS})
    row = {"lead_id": lead_id, "page_id": page.id, "first": False, "imported": False,
           "visit_id": origin.visit_id if origin is not None else None, "created_at": now,
           **{key: attribution.get(key) for key in _VISIT_KEYS},
           "consent_text": page.consent, "consent_at": now, "consent_ip": optin.client_ip,
           "review": review, "review_reason": reason,
           "reviewed_at": now if review != "pending" else None, "variant": optin.variant}
    connection = db.session.connection()
    if not connection.execute(_insert_optin(connection), row).rowcount:
        # The same later opt-in arrived in a parallel request a moment earlier.
        return _duplicate(page, lead_id, optin, origin)
    insert_events([event_row(lead_id, page.id, kind, **data) for kind, data in
                   opening_events("optin", review, reason, **_attribution_data(attribution))])
    _page_tags(page, lead_id)
    resend_after = timedelta(minutes=current_app.config["CONFIRM_RESEND_MINUTES"])
    connection.execute(_QUEUE_AGAIN, {"lead_id": lead_id, "now": now,
                                      "resend_before": now - resend_after})
    lead = db.session.get(Lead, lead_id)
    changes = ["optin.created"] + ([f"lead.{review}"] if review != "pending" else [])
    events.emit_many(changes, lead, page.id,
                     extra=lambda: {"optin": optins.data(SimpleNamespace(**row), page)})
    if review == "approved":
        membership.enroll(lead, page, again=True)
    return Outcome("added", lead_id)


def _duplicate(page: Page, lead_id: int, optin: OptIn, origin: VisitOrigin | None) -> Outcome:
    """Record the repeat opt-in on the lead's timeline; queue the confirmation again
    when the lead is still unconfirmed and the last one is old enough."""
    data = (_attribution_data(origin.visit) if origin is not None else {}) or {
        k: v for k, v in optin.attribution.items() if v}
    insert_events([event_row(lead_id, page.id, "duplicate", **data)])
    # A repeat opt-in on a page is a new signal of interest in it: the page's tags
    # are added (again: the ones the lead has already change nothing).
    _page_tags(page, lead_id)
    now = clock.utcnow()
    resend_after = timedelta(minutes=current_app.config["CONFIRM_RESEND_MINUTES"])
    db.session.connection().execute(
        _QUEUE_AGAIN, {"lead_id": lead_id, "now": now, "resend_before": now - resend_after})
    return Outcome("duplicate", lead_id)
