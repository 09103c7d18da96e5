"""Leads: address normalization, dedupe, review rules, confirmation and the timeline.

Plain functions over the database session, no request objects: a view, a CLI
command, the scheduler and a test call them alike. Confirmation emails are only
queued here; `capture.leads.confirmations` sends them from the scheduler, never inside a
request, so an opt-in takes the same time for a new, a known and a suppressed address.
"""

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

from capture import clock, domains
from capture.mail import membership
from capture import links
from capture.webhooks import events as webhooks
from capture.public.attribution import VisitOrigin, visit_origin
from capture.db import db
from capture.models import (
    ATTRIBUTION_KEYS,
    Delivery,
    Event,
    Lead,
    Page,
    Suppression,
)
from capture.leads.timeline import event_row, insert_events, record_event

# Said when an address needs SMTPUTF8 and the mail server is not known to offer it.
NON_ASCII_LOCAL_PART = ("We cannot send email to an address with accents or other "
                        "non-Latin letters before the @ yet: please use another address.")


def normalize_email(raw: str) -> str:
    """The address as stored: checked by email-validator, then lower-cased so one
    person is one lead (mail providers treat local parts case-insensitively). An
    international domain is kept in Unicode, whichever form was typed
    (max@xn--mnchen-3ya.de is max@münchen.de); it is sent in ASCII form. A
    non-ASCII local part only when SMTP_UTF8 says the server can deliver it.

    Raises EmailNotValidError with a message fit to show the visitor (email_problem)."""
    config = current_app.config
    try:
        result = validate_email(
            raw.strip(),
            check_deliverability=config["CHECK_DELIVERABILITY"],
            allow_smtputf8=True,
        )
    except EmailNotValidError as error:
        raise type(error)(email_problem(raw, str(error))) from None
    if result.smtputf8 and not config["SMTP_UTF8"]:
        raise EmailNotValidError(NON_ASCII_LOCAL_PART)
    return result.normalized.lower()


def stored_form(typed: str) -> str:
    """The form an address is stored in, to find a lead by what an owner typed:
    max@xn--mnchen-3ya.de finds max@münchen.de. Unchecked (lookups only)."""
    local, at, domain = typed.strip().rpartition("@")
    return f"{local}@{domains.comparable(domain)}".lower() if at else typed.strip().lower()


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
    if _is_blocked(domain, rules.get("block_domains") or []):
        return "rejected", f"domain {domain} is blocked"
    if rules.get("block_disposable") and _is_disposable(domain):
        return "rejected", f"disposable address ({domain})"
    return ("pending", "") if page.review == "manual" else ("approved", "")


def _is_blocked(domain: str, blocked_domains: list[str]) -> bool:
    """True when the domain or a parent domain is blocked. Both are compared in
    Unicode: a rule written `münchen.de` or `xn--mnchen-3ya.de` blocks the address
    in either form."""
    if not blocked_domains:
        return False
    mine = domains.comparable(domain)
    for rule in blocked_domains:
        blocked = domains.comparable(rule)
        if mine == blocked or mine.endswith("." + blocked):
            return True
    return False


def _is_disposable(domain: str) -> bool:
    """True when the domain or a parent domain is on the disposable list, in its
    Unicode or its ASCII (xn--) form: the list holds international domains in
    the ASCII form, addresses are stored in the Unicode one."""
    for form in domains.both_forms(domain):
        labels = form.split(".")
        if any(".".join(labels[i:]) in DISPOSABLE_DOMAINS for i in range(len(labels) - 1)):
            return True
    return False


# Built once: every opt-in runs them. The lead and its timeline are written as plain
# INSERTs, the ORM's unit of work for them costing several times the statements.
_KNOWN_ADDRESS = select(
    select(Suppression.id).where(Suppression.email == bindparam("email"))
    .scalar_subquery().label("suppressed"),
    select(Lead.id).where(Lead.email == bindparam("email")).scalar_subquery().label("lead"),
)
_INSERT_LEAD = insert(Lead.__table__)
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


def queued_confirmation(now) -> dict[str, Any]:
    """The values that put a lead in the confirmation queue, due at once."""
    return {"confirmation_queued_at": now, "confirmation_due_at": now}


def submit_optin(page: Page, optin: OptIn) -> Outcome:
    """Store an opt-in: a new lead, or a `duplicate` event on the existing one. The
    confirmation email it needs is queued, never sent here."""
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
    membership.enroll(lead, page, new=True)
    db.session.commit()
    return Outcome("created", lead_id)


def _new_lead(page: Page, optin: OptIn, origin: VisitOrigin | None) -> dict[str, Any]:
    """The new lead's row: the opt-in, the rules' verdict, consent evidence and the
    first-touch attribution of its visitor (or the attribution given directly)."""
    now = clock.utcnow()
    review, reason = review_verdict(page, optin.email, optin)
    needs_confirmation = page.double_opt_in and review != "rejected"
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
        **(queued_confirmation(now) if needs_confirmation else _NOT_QUEUED),
        **_NO_ATTRIBUTION,
        **attribution,
    }


def _attribution_data(source: dict[str, Any]) -> dict[str, Any]:
    """The non-empty attribution values of a lead or visit, for an event's data."""
    return {key: source[key] for key in (*ATTRIBUTION_KEYS, "referrer") if source.get(key)}


def _duplicate(page: Page, lead_id: int, optin: OptIn, origin: VisitOrigin | None) -> Outcome:
    """Record the repeat opt-in on the lead's timeline; queue the confirmation again
    when the lead is still unconfirmed and the last one is old enough."""
    data = (_attribution_data(origin.visit) if origin is not None else {}) or {
        k: v for k, v in optin.attribution.items() if v}
    insert_events([event_row(lead_id, page.id, "duplicate", **data)])
    now = clock.utcnow()
    resend_after = timedelta(minutes=current_app.config["CONFIRM_RESEND_MINUTES"])
    db.session.connection().execute(
        _QUEUE_AGAIN, {"lead_id": lead_id, "now": now, "resend_before": now - resend_after})
    db.session.commit()
    return Outcome("duplicate", lead_id)


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
    webhooks.emit("lead.confirmed", lead)
    membership.enroll(lead)
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
    membership.stop(lead, "unsubscribed")
    webhooks.emit("lead.unsubscribed", lead)
    db.session.commit()
    return True


# --- the owner's decisions ----------------------------------------------------------

REASON_MAX_LENGTH = 300


def approve(lead: Lead, by: str = "owner") -> bool:
    """Approve a lead and enrol it in its page's sequence. True when it changed.

    A lead the rules rejected on a double opt-in page (or in an import) never got
    the confirmation email: it is queued, so the lead can become subscribed."""
    if lead.review == "approved":
        return False
    lead.review = "approved"
    lead.review_reason = ""
    lead.reviewed_at = clock.utcnow()
    if _never_asked_to_confirm(lead):
        for name, value in queued_confirmation(lead.reviewed_at).items():
            setattr(lead, name, value)
    record_event(lead, "approve", by=by, reason="")
    webhooks.emit("lead.approved", lead)
    membership.enroll(lead)
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


def delete(lead: Lead) -> None:
    """Remove a lead and its history, and suppress its address so that a new opt-in
    from it is not silently re-added (the suppression row says why)."""
    if db.session.scalar(select(Suppression.id).where(Suppression.email == lead.email)) is None:
        db.session.add(Suppression(email=lead.email, reason="deleted by owner"))
    db.session.delete(lead)
    db.session.commit()
