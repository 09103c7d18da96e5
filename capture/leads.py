"""Leads: address normalization, dedupe, review rules, confirmation and the timeline.

Plain functions over the database session, no request objects: a view, a CLI
command, the scheduler and a test call them alike.
"""

import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from disposable_email_domains import blocklist as DISPOSABLE_DOMAINS
from email_validator import EmailNotValidError, validate_email
from flask import current_app
from sqlalchemy import bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from capture import clock, mail, rendering, sending, tokens, webhooks
from capture.attribution import VisitOrigin, visit_origin
from capture.extensions import db
from capture.models import (
    ATTRIBUTION_KEYS,
    Delivery,
    Lead,
    Page,
    Suppression,
)
from capture.timeline import event_row, insert_events, record_event

log = logging.getLogger(__name__)


def normalize_email(raw: str) -> str:
    """The address as stored: checked by email-validator, then lower-cased so one
    person is one lead (mail providers treat local parts case-insensitively).

    Raises EmailNotValidError with a message fit to show the visitor (email_problem)."""
    try:
        result = validate_email(
            raw.strip(),
            check_deliverability=current_app.config["CHECK_DELIVERABILITY"],
            allow_smtputf8=False,
        )
    except EmailNotValidError as error:
        raise type(error)(email_problem(raw, str(error))) from None
    return result.normalized.lower()


# email-validator's messages ("The part after the @-sign contains invalid characters:
# '@'.") said as a person would, first match wins: (words in its message, ours).
_EMAIL_PROBLEMS = (
    ("must have an @-sign", "An email address needs an @, like name@example.com."),
    ("something before the @-sign", "Add the part before the @, like name@example.com."),
    ("something after the @-sign", "Add the part after the @, like name@example.com."),
    ("anything after the email address", "Enter just the email address, nothing after it."),
    ("two periods in a row", "This email address has two dots in a row."),
    ("too long", "This email address is too long."),
    ("should have a period", "Check the part after the @: it needs a dot, like example.com."),
    ("top-level domain", "Check the part after the @: it does not end like a real domain "
                         "(.com, .de …)."),
    ("special-use or reserved", "The part after the @ is a name that cannot receive email."),
    ("does not exist", "The part after the @ does not exist: check it for a typo."),
    ("does not accept email", "The part after the @ does not accept email: check it for a "
                              "typo."),
    ("Internationalized characters before the @-sign",
     "Letters with accents or of other scripts cannot come before the @ here: please use "
     "another address."),
    ("before the @-sign", "Check the part before the @: it has a character an email "
                          "address cannot have."),
)


def email_problem(raw: str, message: str) -> str:
    """What is wrong with an address, as one sentence a person would write: one wording
    for the form, the embed, the API and the import."""
    text = (raw or "").strip()
    if text.count("@") > 1:
        return "This email address has more than one @ sign." if text.count("@") > 2 \
            else "This email address has two @ signs."
    if "<" in text or ">" in text:
        return "Enter just the email address, without a name or < >."
    if any(character.isspace() for character in text):
        return "An email address cannot contain spaces."
    if "@" in text and "must have an @-sign" in message:  # an @ inside quotes
        message = "before the @-sign"
    for words, sentence in _EMAIL_PROBLEMS:
        if words in message:
            return sentence
    return "This doesn't look like an email address: check the part after the @." \
        if "after the @" in message else "This doesn't look like an email address."


# What a name may not hold: it is repeated in the confirmation email to whatever
# address was typed ("Hi …", the To: line), so a link, an address or a phone number in
# it would turn our email into the sender's message to anyone.
_NAME_RULES = (
    (re.compile(r"[a-z][a-z0-9+.-]*://|\bwww\.|[\w-]+\.[a-z]{2,}/", re.IGNORECASE),
     "Enter just your name: no web addresses."),
    (re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+"), "Enter just your name: no email addresses."),
    (re.compile(r"\d(?:[\s().+-]*\d){4,}"),
     "Enter just your name: no phone numbers or other long numbers."),
)


def name_problem(name: str) -> str:
    """Why a name cannot be taken ('' when it can): the one rule of the opt-in form,
    the API and the import."""
    for pattern, message in _NAME_RULES:
        if pattern.search(name or ""):
            return message
    return ""


@dataclass
class OptIn:
    """What a visitor submitted, already validated by the form."""

    email: str
    name: str = ""
    country: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    client_ip: str | None = None
    # The page view the form was shown in (from its fill-time token), if any.
    visit_id: int | None = None
    # utm_*, ref, referrer given directly (the API) when there is no visit to inherit.
    attribution: dict[str, str | None] = field(default_factory=dict)


@dataclass
class Outcome:
    """What an opt-in led to: a new lead, a duplicate of one, or nothing (suppressed)."""

    kind: str  # created | duplicate | suppressed
    lead_id: int | None = None
    send_confirmation: bool = False

    @property
    def lead(self) -> Lead | None:
        """The lead, loaded when asked for: most opt-ins never need it again."""
        return None if self.lead_id is None else db.session.get(Lead, self.lead_id)


def review_verdict(page: Page, email: str, optin: OptIn) -> tuple[str, str]:
    """Apply the page's rules: ('rejected', reason) on the first failed rule, else
    'pending' for manual review or 'approved'."""
    rules = page.rules or {}
    domain = email.rsplit("@", 1)[-1]
    countries = rules.get("countries") or []
    if countries and optin.country not in countries:
        reason = f"country {optin.country} not accepted" if optin.country else "country missing"
        return "rejected", reason
    labels = {f["name"]: f["label"] for f in page.fields}
    values = {"email": email, "name": optin.name, **optin.fields}
    if optin.country:
        values.update({f["name"]: optin.country for f in page.fields if f["type"] == "country"})
    for name in rules.get("required") or []:
        if not values.get(name):
            return "rejected", f"missing {labels.get(name, name)}"
    for blocked in rules.get("block_domains") or []:
        if domain == blocked or domain.endswith("." + blocked):
            return "rejected", f"domain {domain} is blocked"
    if rules.get("block_disposable") and _is_disposable(domain):
        return "rejected", f"disposable address ({domain})"
    return ("pending", "") if page.review == "manual" else ("approved", "")


def _is_disposable(domain: str) -> bool:
    """True when the domain or a parent domain is on the disposable list."""
    labels = domain.split(".")
    return any(".".join(labels[i:]) in DISPOSABLE_DOMAINS for i in range(len(labels) - 1))


# Built once: every opt-in runs them. The lead and its timeline are written as plain
# INSERTs, the ORM's unit of work for them costing several times the statements.
_KNOWN_ADDRESS = select(
    select(Suppression.id).where(Suppression.email == bindparam("email"))
    .scalar_subquery().label("suppressed"),
    select(Lead.id).where(Lead.email == bindparam("email")).scalar_subquery().label("lead"),
)
_INSERT_LEAD = insert(Lead.__table__)
_NO_ATTRIBUTION = dict.fromkeys((*ATTRIBUTION_KEYS, "referrer", "landing_url", "visitor_id"))
_DUPLICATE_STATE = select(Lead.subscription, Lead.review, Lead.confirmation_sent_at).where(
    Lead.id == bindparam("lead_id"))


def submit_optin(page: Page, optin: OptIn) -> Outcome:
    """Store an opt-in: a new lead, or a `duplicate` event on the existing one."""
    connection = db.session.connection()
    known = connection.execute(_KNOWN_ADDRESS, {"email": optin.email}).one()
    if known.suppressed is not None:
        return Outcome("suppressed")
    origin = visit_origin(optin.visit_id)
    if known.lead is not None:
        return _duplicate(page, known.lead, optin, origin)

    values = _new_lead(page, optin, origin)
    try:
        lead_id = connection.execute(_INSERT_LEAD, values).inserted_primary_key[0]
    except IntegrityError:
        # The same address arrived in a parallel request a moment earlier.
        db.session.rollback()
        existing = db.session.scalar(select(Lead.id).where(Lead.email == optin.email))
        if existing is None:
            raise
        return _duplicate(page, existing, optin, origin)
    # What webhooks and enrolment read of the new lead, without an ORM object.
    lead = SimpleNamespace(id=lead_id, page=page, confirmation_sent_at=None,
                           confirmed_at=None, confirm_ip=None, **values)
    events = [event_row(lead_id, page.id, "optin", **_attribution_data(values))]
    changes = ["lead.created"]
    if lead.review != "pending":
        kind = "approve" if lead.review == "approved" else "reject"
        events.append(event_row(lead_id, page.id, kind, by="rules", reason=lead.review_reason))
        changes.append(f"lead.{lead.review}")
    insert_events(events)
    webhooks.emit_many(changes, lead)
    sending.enroll(lead, page, new=True)
    # Read before the commit: `page` may be a cached copy, and nothing needs reloading.
    needs_confirmation = page.double_opt_in and lead.review != "rejected"
    db.session.commit()
    return Outcome("created", lead_id, send_confirmation=needs_confirmation)


def _new_lead(page: Page, optin: OptIn, origin: VisitOrigin | None) -> dict[str, Any]:
    """The new lead's row: the opt-in, the rules' verdict, consent evidence and the
    first-touch attribution of its visitor (or the attribution given directly)."""
    now = clock.utcnow()
    review, reason = review_verdict(page, optin.email, optin)
    attribution = dict(origin.first_touch) if origin is not None else dict(optin.attribution)
    referrer_lead = None
    if attribution.get("ref"):
        referrer_lead = db.session.scalar(
            select(Lead.id).where(Lead.public_ref == attribution["ref"])
        )
    return {
        "email": optin.email,
        "name": optin.name,
        "country": optin.country,
        "fields": optin.fields,
        "public_ref": secrets.token_urlsafe(12),
        "page_id": page.id,
        "visit_id": origin.visit_id if origin is not None else None,
        "referred_by_id": referrer_lead,
        "consent_text": page.consent,
        "consent_at": now,
        "consent_ip": optin.client_ip,
        "review": review,
        "review_reason": reason,
        "reviewed_at": now if review != "pending" else None,
        "subscription": "unconfirmed" if page.double_opt_in else "subscribed",
        "created_at": now,
        **_NO_ATTRIBUTION,
        **attribution,
    }


def _attribution_data(source: dict[str, Any]) -> dict[str, Any]:
    """The non-empty attribution values of a lead or visit, for an event's data."""
    return {key: source[key] for key in (*ATTRIBUTION_KEYS, "referrer") if source.get(key)}


def _duplicate(page: Page, lead_id: int, optin: OptIn, origin: VisitOrigin | None) -> Outcome:
    """Record the repeat opt-in on the lead's timeline; send the confirmation again
    when the lead is still unconfirmed and the last one is old enough."""
    data = (_attribution_data(origin.visit) if origin is not None else {}) or {
        k: v for k, v in optin.attribution.items() if v}
    insert_events([event_row(lead_id, page.id, "duplicate", **data)])
    db.session.commit()
    state = db.session.connection().execute(_DUPLICATE_STATE, {"lead_id": lead_id}).first()
    resend_after = timedelta(minutes=current_app.config["CONFIRM_RESEND_MINUTES"])
    last_sent = state.confirmation_sent_at if state is not None else None
    resend = (
        state is not None
        and state.subscription == "unconfirmed"
        and state.review != "rejected"
        and (last_sent is None or clock.utcnow() - last_sent >= resend_after)
    )
    return Outcome("duplicate", lead_id, send_confirmation=resend)


def send_confirmation(lead: Lead) -> bool:
    """Email the double opt-in link; record when. False when it went out less than
    CONFIRM_RESEND_MINUTES ago (also from a parallel request: a flood of one address
    sends one email), or (logged) when the mail backend failed: the lead is kept and
    a repeat opt-in sends it again."""
    page = lead.page
    if page is None:
        return False
    previous = lead.confirmation_sent_at
    claimed_at = _claim_confirmation(lead)
    if claimed_at is None:
        return False
    message = rendering.confirmation_message(lead, page, confirm_url(lead))
    try:
        mail.send(message)
    except mail.MailError as error:
        log.warning("confirmation email to lead %s not sent: %s", lead.id, error)
        db.session.execute(
            update(Lead).where(Lead.id == lead.id, Lead.confirmation_sent_at == claimed_at)
            .values(confirmation_sent_at=previous)
            .execution_options(synchronize_session=False))
        db.session.commit()
        return False
    record_event(lead, "confirmation_sent")
    db.session.commit()
    return True


def _claim_confirmation(lead: Lead):
    """Take the sending of the confirmation (the time taken), or None when it went out
    within CONFIRM_RESEND_MINUTES: a conditional update only one request can win."""
    now = clock.utcnow()
    since = now - timedelta(minutes=current_app.config["CONFIRM_RESEND_MINUTES"])
    won = db.session.execute(
        update(Lead)
        .where(Lead.id == lead.id,
               or_(Lead.confirmation_sent_at.is_(None), Lead.confirmation_sent_at <= since))
        .values(confirmation_sent_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return now if won else None


def confirm_url(lead: Lead) -> str:
    """The absolute double opt-in link for a lead."""
    token = tokens.make("confirm", lead.public_ref)
    return f"{current_app.config['BASE_URL']}/confirm/{token}"


def lead_for_confirm_token(token: str) -> Lead | None:
    """The lead a confirmation token belongs to, or None when it is not genuine."""
    ref = tokens.read("confirm", token)
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
    webhooks.emit("lead.confirmed", lead)
    sending.enroll(lead)
    db.session.commit()
    return True


def unsubscribe(lead: Lead, source: str, delivery_id: int | None = None) -> bool:
    """Unsubscribe a lead and stop its sequences. Idempotent: True the first time.
    `delivery_id`: the email whose link was used, when known."""
    if lead.subscription in ("unsubscribed", "bounced"):
        return False
    lead.subscription = "unsubscribed"
    if delivery_id is not None and db.session.get(Delivery, delivery_id) is None:
        delivery_id = None
    record_event(lead, "unsubscribe", delivery_id=delivery_id, source=source)
    sending.stop(lead, "unsubscribed")
    webhooks.emit("lead.unsubscribed", lead)
    db.session.commit()
    return True


# --- the owner's decisions ----------------------------------------------------------

REASON_MAX_LENGTH = 300


def approve(lead: Lead, by: str = "owner", *, confirm_now: bool = True) -> bool:
    """Approve a lead and enrol it in its page's sequence. True when it changed.

    A lead the rules rejected on a double opt-in page never got the confirmation
    email: it is sent now, so the lead can become subscribed, or with `confirm_now`
    False by the scheduler's next run (`confirmations.send_queued`)."""
    if lead.review == "approved":
        return False
    lead.review = "approved"
    lead.review_reason = ""
    lead.reviewed_at = clock.utcnow()
    record_event(lead, "approve", by=by, reason="")
    webhooks.emit("lead.approved", lead)
    sending.enroll(lead)
    db.session.commit()
    page = lead.page
    if (confirm_now and lead.subscription == "unconfirmed" and page is not None
            and page.double_opt_in and lead.confirmation_sent_at is None):
        send_confirmation(lead)
    return True


def reject(lead: Lead, reason: str, by: str = "owner") -> bool:
    """Reject a lead with a reason and stop its sequences. True when it changed.

    Raises ValueError when the reason is empty."""
    reason = " ".join((reason or "").split())[:REASON_MAX_LENGTH]
    if not reason:
        raise ValueError("Give a reason for rejecting.")
    if lead.review == "rejected" and lead.review_reason == reason:
        return False
    lead.review = "rejected"
    lead.review_reason = reason
    lead.reviewed_at = clock.utcnow()
    record_event(lead, "reject", by=by, reason=reason)
    webhooks.emit("lead.rejected", lead)
    sending.stop(lead, "rejected")
    db.session.commit()
    return True


def review_many(lead_ids: list[int], decision: str, reason: str = "",
                by: str = "owner") -> int:
    """Approve or reject several leads at once; return how many changed. The
    confirmation emails approved leads still need are left to the scheduler, within
    the sending rate cap: hundreds sent here would outlast the request.

    Raises ValueError for an unknown decision or a rejection without a reason."""
    if decision not in ("approve", "reject"):
        raise ValueError(f"unknown decision {decision!r}")
    if decision == "reject" and not (reason or "").strip():
        raise ValueError("Give a reason for rejecting.")
    # Fetched first: each decision commits on its own.
    chosen = db.session.scalars(select(Lead).where(Lead.id.in_(lead_ids)).order_by(Lead.id)).all()
    changed = 0
    for lead in chosen:
        done = (approve(lead, by=by, confirm_now=False) if decision == "approve"
                else reject(lead, reason, by=by))
        changed += done
    return changed


def delete(lead: Lead) -> None:
    """Remove a lead and its history, and suppress its address so that a new opt-in
    from it is not silently re-added (the suppression row says why)."""
    if db.session.scalar(select(Suppression.id).where(Suppression.email == lead.email)) is None:
        db.session.add(Suppression(email=lead.email, reason="deleted by owner"))
    db.session.delete(lead)
    db.session.commit()
