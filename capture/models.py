"""The tables, in one file because they read best whole: pages and visits; leads, their
event timeline, their tags and the suppression list; saved segments; enrolments,
broadcasts, deliveries, tracked links and upgrades; owners and API tokens; webhooks and their deliveries; the report rollups;
the shared rate-limit counters.

Timestamps are naive UTC (see `capture.clock`). Indexes follow the queries the dashboard
and the scheduler run: by page and time, by state, by source.
"""

import secrets
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    LargeBinary,
    Boolean,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from capture import clock
from capture.db import db


def _now():
    """Column default: read the clock at insert time (tests move it)."""
    return clock.utcnow()


def first_word(name: str) -> str:
    """The first word of a person's name, for greetings ("" for no name)."""
    return name.split()[0] if name.strip() else ""


def new_session_token() -> str:
    """A random session token for an owner."""
    return secrets.token_urlsafe(32)


REVIEW_STATES = ("pending", "approved", "rejected")
# erased: the person's values are gone, the row stays for the numbers (lifecycle.erase).
SUBSCRIPTION_STATES = ("unconfirmed", "subscribed", "unsubscribed", "bounced", "erased")
UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")
ATTRIBUTION_KEYS = (*UTM_KEYS, "ref")


class Page(db.Model):
    """An opt-in page, defined by the owner (dashboard or `pages import`)."""

    __tablename__ = "pages"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    headline: Mapped[str] = mapped_column(String(300), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    fields: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    button: Mapped[str] = mapped_column(String(80), default="Subscribe")
    consent: Mapped[str] = mapped_column(Text, default="")
    double_opt_in: Mapped[bool] = mapped_column(Boolean, default=True)
    # The form asks the visitor's browser for a proof of work (capture.public.bots).
    proof_of_work: Mapped[bool] = mapped_column(Boolean, default=False)
    sequence: Mapped[str | None] = mapped_column(String(100))
    thank_you: Mapped[str] = mapped_column(Text, default="")
    redirect_url: Mapped[str | None] = mapped_column(String(2000))
    review: Mapped[str] = mapped_column(String(10), default="auto")
    rules: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    payout: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    template: Mapped[str] = mapped_column(String(100), default="default.html")
    # What its visitors and leads read: form errors, emails, footers (capture.languages).
    language: Mapped[str] = mapped_column(String(8), default="en")
    # What a design may show besides the text: an uploaded image (Image.name, "" for
    # none) with its alternative text, and a YouTube or Vimeo address ("" for none).
    image: Mapped[str] = mapped_column(String(40), default="")
    image_alt: Mapped[str] = mapped_column(String(300), default="")
    video_url: Mapped[str] = mapped_column(String(300), default="")
    published: Mapped[bool] = mapped_column(Boolean, default=True)
    # Other sites allowed to post the embedded form ("https://blog.example.com").
    allowed_origins: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Tags every lead that opts in here gets (capture.leads.tags).
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    # A page test (A/B): the other variants, each {"key": "b", "weight": 50, …} with
    # the page values it overrides; the page itself is variant "a", weighted
    # variant_a_weight (None: an equal share). Empty: no test.
    variants: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    variant_a_weight: Mapped[int | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime, default=_now, onupdate=_now
    )

    def __repr__(self) -> str:
        return f"<Page {self.slug}>"


class Visit(db.Model):
    """One view of an opt-in page, with the visitor's cookie id and attribution."""

    __tablename__ = "visits"
    __table_args__ = (
        Index("ix_visits_page_created", "page_id", "created_at"),
        # Covers the visitor counts of the reports (no table reads).
        Index("ix_visits_counting", "created_at", "is_bot", "visitor_id", "utm_source"),
        Index("ix_visits_source", "utm_source", "utm_campaign"),
        Index("ix_visits_visitor", "visitor_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    page_id: Mapped[int] = mapped_column(ForeignKey("pages.id", ondelete="CASCADE"))
    visitor_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    utm_source: Mapped[str | None] = mapped_column(String(200))
    utm_medium: Mapped[str | None] = mapped_column(String(200))
    utm_campaign: Mapped[str | None] = mapped_column(String(200))
    utm_content: Mapped[str | None] = mapped_column(String(200))
    utm_term: Mapped[str | None] = mapped_column(String(200))
    ref: Mapped[str | None] = mapped_column(String(200))
    referrer: Mapped[str | None] = mapped_column(String(1000))
    landing_url: Mapped[str | None] = mapped_column(String(2000))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    is_bot: Mapped[bool] = mapped_column(Boolean, default=False)
    # The page variant shown ("a" the page itself; None: the page had no test).
    variant: Mapped[str | None] = mapped_column(String(20))


class Lead(db.Model):
    """A visitor who opted in: one row per normalized address."""

    __tablename__ = "leads"
    __table_args__ = (
        Index("ix_leads_page_created", "page_id", "created_at"),
        Index("ix_leads_created", "created_at"),
        # Covers the lead counts of the reports.
        Index("ix_leads_counting", "created_at", "review", "confirmed_at", "page_id"),
        Index("ix_leads_review", "review", "created_at"),
        Index("ix_leads_subscription", "subscription", "created_at"),
        Index("ix_leads_source", "utm_source", "utm_campaign"),
        Index("ix_leads_ref", "ref"),
        Index("ix_leads_referred_by", "referred_by_id"),
        Index("ix_leads_name", "name"),
        # The confirmation queue (`confirmations.send_queued`): the due ones first.
        Index("ix_leads_confirmation_due", "confirmation_due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    country: Mapped[str | None] = mapped_column(String(2))
    # The page's own fields, by field name.
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Random, public: used in links and postbacks instead of the row id.
    public_ref: Mapped[str] = mapped_column(String(32), unique=True)

    # First-touch attribution, copied from the visit that led to the opt-in.
    page_id: Mapped[int | None] = mapped_column(
        ForeignKey("pages.id", ondelete="SET NULL")
    )
    visit_id: Mapped[int | None] = mapped_column(
        ForeignKey("visits.id", ondelete="SET NULL")
    )
    visitor_id: Mapped[str | None] = mapped_column(String(32))
    utm_source: Mapped[str | None] = mapped_column(String(200))
    utm_medium: Mapped[str | None] = mapped_column(String(200))
    utm_campaign: Mapped[str | None] = mapped_column(String(200))
    utm_content: Mapped[str | None] = mapped_column(String(200))
    utm_term: Mapped[str | None] = mapped_column(String(200))
    ref: Mapped[str | None] = mapped_column(String(200))
    referrer: Mapped[str | None] = mapped_column(String(1000))
    landing_url: Mapped[str | None] = mapped_column(String(2000))
    # Set when `ref` was another lead's public ref.
    referred_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("leads.id", ondelete="SET NULL")
    )

    # Consent evidence.
    consent_text: Mapped[str] = mapped_column(Text, default="")
    consent_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    consent_ip: Mapped[str | None] = mapped_column(String(45))
    confirmation_sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    # The confirmation email queue: when the lead joined it (opt-in, repeat opt-in,
    # import, approval; it waits at most CONFIRM_WITHIN_DAYS from then), when the next
    # attempt is due (None: not queued), and why the last attempt failed, if it did.
    confirmation_queued_at: Mapped[datetime | None] = mapped_column(DateTime)
    confirmation_due_at: Mapped[datetime | None] = mapped_column(DateTime)
    confirmation_error: Mapped[str | None] = mapped_column(String(300))
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime)
    confirm_ip: Mapped[str | None] = mapped_column(String(45))

    review: Mapped[str] = mapped_column(String(10), default="pending")
    review_reason: Mapped[str] = mapped_column(String(300), default="")
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime)
    subscription: Mapped[str] = mapped_column(String(12), default="unconfirmed")
    # Created by a list import, not an opt-in: its own number in the reports.
    imported: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The page variant its first opt-in was made on (None: no test then).
    variant: Mapped[str | None] = mapped_column(String(20))

    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)

    page: Mapped[Page | None] = relationship()
    referred_by: Mapped["Lead | None"] = relationship(remote_side=[id])

    @property
    def first_name(self) -> str:
        """The first word of the name, for greetings."""
        return first_word(self.name)

    def __repr__(self) -> str:
        return f"<Lead {self.id} {self.review}/{self.subscription}>"


class Optin(db.Model):
    """One opt-in of a person on one page: the lead's first (the lead row holds the
    same values: its page, attribution, consent and review) and each later one on
    another page, with its own consent evidence, attribution, review by that page's
    rules and payout (capture.leads.optins). A repeat on the same page is a
    `duplicate` event, not a row."""

    __tablename__ = "optins"
    __table_args__ = (
        UniqueConstraint("lead_id", "page_id", name="uq_optins_lead_page"),
        Index("ix_optins_page_created", "page_id", "created_at"),
        Index("ix_optins_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    page_id: Mapped[int | None] = mapped_column(ForeignKey("pages.id", ondelete="SET NULL"))
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id", ondelete="SET NULL"))
    # The lead's first opt-in (its values mirror the lead's own columns).
    first: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    imported: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    utm_source: Mapped[str | None] = mapped_column(String(200))
    utm_medium: Mapped[str | None] = mapped_column(String(200))
    utm_campaign: Mapped[str | None] = mapped_column(String(200))
    utm_content: Mapped[str | None] = mapped_column(String(200))
    utm_term: Mapped[str | None] = mapped_column(String(200))
    ref: Mapped[str | None] = mapped_column(String(200))
    referrer: Mapped[str | None] = mapped_column(String(1000))
    landing_url: Mapped[str | None] = mapped_column(String(2000))
    consent_text: Mapped[str] = mapped_column(Text, default="")
    consent_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    consent_ip: Mapped[str | None] = mapped_column(String(45))
    review: Mapped[str] = mapped_column(String(10), default="pending")
    review_reason: Mapped[str] = mapped_column(String(300), default="")
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime)
    # The page variant the opt-in was made on (None: no test then).
    variant: Mapped[str | None] = mapped_column(String(20))

    page: Mapped[Page | None] = relationship()


class Event(db.Model):
    """One entry of a lead's timeline: opt-in, duplicate, confirm, approve, reject …"""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_lead_created", "lead_id", "created_at"),
        # Covers the open, click and unsubscribe counts of the reports.
        Index("ix_events_counting", "kind", "created_at", "machine", "lead_id"),
        Index("ix_events_page_kind_created", "page_id", "kind", "created_at"),
        Index("ix_events_delivery_kind", "delivery_id", "kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    page_id: Mapped[int | None] = mapped_column(
        ForeignKey("pages.id", ondelete="SET NULL")
    )
    kind: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    # For send/open/click: the email it is about. Opens and clicks made by mail
    # scanners and image proxies are kept but marked, and left out of the rates.
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL")
    )
    machine: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Details that depend on the kind: attribution of a duplicate, a reject reason …
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Suppression(db.Model):
    """An address that must not be re-added or mailed (erased leads, hard bounces):
    the address itself, or for an erased person only its keyed hash
    (capture.leads.suppression, through which every check goes)."""

    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("email_hash", name="uq_suppressions_email_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str | None] = mapped_column(String(254), unique=True)
    email_hash: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)


class LeadTag(db.Model):
    """A tag on a lead, with when and why it was added (the `tag` event says the same
    on the timeline). Removing a tag deletes the row and logs an `untag` event."""

    __tablename__ = "lead_tags"
    __table_args__ = (
        UniqueConstraint("lead_id", "tag", name="uq_lead_tags_lead_tag"),
        # Segments ask "leads with this tag": by tag first.
        Index("ix_lead_tags_tag_lead", "tag", "lead_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    # Lowercase [a-z0-9_-], 1-40 characters (capture.tag_names).
    tag: Mapped[str] = mapped_column(String(40))
    # What added it: "page:<slug>", "link", "import", "dashboard" or "api".
    cause: Mapped[str] = mapped_column(String(80), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)


class SavedSegment(db.Model):
    """A segment the owner saved in the dashboard: its definition is the YAML text of
    the segment language (capture.segments), kept as written."""

    __tablename__ = "saved_segments"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    definition: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_now, onupdate=_now)


class Enrollment(db.Model):
    """A lead's place in a sequence. `next_due_at` is what the scheduler looks at, so
    a tick costs what is due, not how many leads exist."""

    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("lead_id", "sequence", name="uq_enrollments_lead_sequence"),
        Index("ix_enrollments_due", "state", "next_due_at"),
        Index("ix_enrollments_sequence_state", "sequence", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    sequence: Mapped[str] = mapped_column(String(100))
    # active: a next step is due at next_due_at; waiting: no step left (woken when
    # the folder changes); sending: a delivery of it is in flight or needs the
    # owner; stopped: unsubscribed, bounced, rejected or a stop_on condition.
    state: Mapped[str] = mapped_column(String(10), default="active")
    next_due_at: Mapped[datetime | None] = mapped_column(DateTime)
    # When the lead became approved and subscribed: the first step counts from here.
    started_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    last_step: Mapped[str | None] = mapped_column(String(100))
    last_filename: Mapped[str | None] = mapped_column(String(200))
    last_sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    # When a scheduler tick took it (state sending); a stale claim is given back.
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime)
    stop_reason: Mapped[str] = mapped_column(String(100), default="")
    # Which time through the sequence: 1, then one more each time a `reenter: true`
    # sequence starts over for the lead (its deliveries carry the same number).
    entry: Mapped[int] = mapped_column(default=1, server_default="1")

    lead: Mapped[Lead] = relationship()


class Delivery(db.Model):
    """One (lead, sequence, step, entry) email. The row is claimed before the SMTP call
    and its outcome written after it, so nothing is ever sent twice."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("lead_id", "sequence", "step", "entry",
                         name="uq_deliveries_lead_step"),
        Index("ix_deliveries_status_retry", "status", "retry_at"),
        Index("ix_deliveries_sent", "sent_at"),
        # Covers the "delivered" count of the reports.
        Index("ix_deliveries_counting", "status", "sent_at", "lead_id"),
        # The rate cap counts attempts of the last minute on every tick.
        Index("ix_deliveries_claimed", "claimed_at"),
        # The reaper looks for stale claims of one status on every tick.
        Index("ix_deliveries_status_claimed", "status", "claimed_at"),
        Index("ix_deliveries_sequence_step", "sequence", "step"),
        Index("ix_deliveries_broadcast_status", "broadcast_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    enrollment_id: Mapped[int | None] = mapped_column(
        ForeignKey("enrollments.id", ondelete="SET NULL")
    )
    # A broadcast's email: sequence "" and step = the broadcast's name, so the unique
    # (lead, sequence, step) also means "at most once per lead and broadcast".
    broadcast_id: Mapped[int | None] = mapped_column(
        ForeignKey("broadcasts.id", ondelete="CASCADE")
    )
    sequence: Mapped[str] = mapped_column(String(100))
    step: Mapped[str] = mapped_column(String(100))
    # The enrollment's `entry`: a lead who starts a sequence again gets its steps again.
    entry: Mapped[int] = mapped_column(default=1, server_default="1")
    filename: Mapped[str] = mapped_column(String(200))
    # sending (handed to SMTP) → sent | retry | failed; sending too long → unknown.
    # A retry taken by a tick is `claimed` until its attempt starts.
    status: Mapped[str] = mapped_column(String(10), default="sending")
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime)
    retry_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Set by the owner's resend: retries are bounded from here instead of created_at.
    retry_since: Mapped[datetime | None] = mapped_column(DateTime)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    message_id: Mapped[str | None] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(300), default="")
    # A subject test: which of the step's or broadcast's subjects (0-based) this email
    # got, drawn at random (None: one subject).
    subject_index: Mapped[int | None] = mapped_column()
    error: Mapped[str] = mapped_column(String(500), default="")

    lead: Mapped[Lead] = relationship()


class Broadcast(db.Model):
    """A broadcast the owner sent or scheduled (`broadcasts send`): the content of its
    file frozen at that moment. A file in broadcasts/ without a row is a draft."""

    __tablename__ = "broadcasts"
    __table_args__ = (Index("ix_broadcasts_state_send_at", "state", "send_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # The file name without .md.
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # scheduled → sending → sent; scheduled or sending → cancelled.
    state: Mapped[str] = mapped_column(String(10), default="scheduled")
    subject: Mapped[str] = mapped_column(String(300))
    preheader: Mapped[str] = mapped_column(String(300), default="")
    sender: Mapped[str | None] = mapped_column(String(300))
    # The footer's language (None: each lead's page's, capture.mail.compose).
    language: Mapped[str | None] = mapped_column(String(8))
    # The Markdown body and the segment mapping as they were at `send`.
    body: Mapped[str] = mapped_column(Text)
    segment: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # SHA-256 of the file's text at `send`: `check` says when the file differs.
    file_hash: Mapped[str] = mapped_column(String(64))
    send_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    # "09:00-18:00" in `timezone`: its emails go out only inside these hours (None: any).
    send_window: Mapped[str | None] = mapped_column(String(11))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    # Taking the recipients: in chunks by lead id, from after this id, until taken_at.
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    taken_through: Mapped[int] = mapped_column(BigInteger, default=0)
    taken_at: Mapped[datetime | None] = mapped_column(DateTime)
    recipients: Mapped[int] = mapped_column(default=0)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime)
    # A subject test: the 2-4 subjects as frozen at `send` (empty: `subject` alone),
    # and the test's settings {share, wait_hours, pick_by} (None: every recipient at once).
    subjects: Mapped[list[str]] = mapped_column(JSON, default=list)
    test: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # testing (the share is being sent) → waiting (until test_until) → picked (the
    # winner goes to the rest); None without a test.
    test_phase: Mapped[str | None] = mapped_column(String(10))
    test_until: Mapped[datetime | None] = mapped_column(DateTime)
    # The winning subject's index and the numbers it was picked on, per subject.
    winner: Mapped[int | None] = mapped_column()
    test_result: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class SequenceVersion(db.Model):
    """The last seen state of each sequence folder, to wake leads that finished it
    when steps are added."""

    __tablename__ = "sequence_versions"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    signature: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_now)


class Link(db.Model):
    """A link inside one sent email. The click URL carries only the random token; the
    target is read from here, so /c/ can never be made to redirect anywhere else."""

    __tablename__ = "links"
    __table_args__ = (Index("ix_links_delivery", "delivery_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(32), unique=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(2000))
    # A link written [text](url "tag:NAME"): a human click adds this tag to the lead.
    tag: Mapped[str | None] = mapped_column(String(40))

    delivery: Mapped[Delivery] = relationship()


class Upgrade(db.Model):
    """A purchase of a paid offer by a lead, from the postback or entered by hand."""

    __tablename__ = "upgrades"
    __table_args__ = (
        Index("ix_upgrades_lead", "lead_id"),
        Index("ix_upgrades_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    # The buyer's transaction id: a replayed postback finds it and changes nothing.
    txn: Mapped[str] = mapped_column(String(200), unique=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    currency: Mapped[str] = mapped_column(String(3))
    source: Mapped[str] = mapped_column(String(20), default="postback")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)

    lead: Mapped[Lead] = relationship()


class Cost(db.Model):
    """Ad spend of one day, source, campaign and page (capture.numbers.spend): a row
    for the same four replaces the earlier one, so importing a file again is safe.
    `source` and `campaign` are "" for spend not tied to one; `page_id` None: not to
    one page."""

    __tablename__ = "costs"
    __table_args__ = (
        Index("ix_costs_day", "day", "page_id"),
        Index("ix_costs_key", "day", "source", "campaign", "page_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(200), default="")
    campaign: Mapped[str] = mapped_column(String(200), default="")
    page_id: Mapped[int | None] = mapped_column(ForeignKey("pages.id", ondelete="CASCADE"))
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_now, onupdate=_now)

    page: Mapped[Page | None] = relationship()


class Image(db.Model):
    """An image the owner uploaded (capture.pages.images): re-encoded without its
    metadata, served at /images/<name>, a name made from a hash of its bytes."""

    __tablename__ = "images"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)
    filename: Mapped[str] = mapped_column(String(200))  # as uploaded, shown to the owner
    media_type: Mapped[str] = mapped_column(String(20))
    width: Mapped[int] = mapped_column()
    height: Mapped[int] = mapped_column()
    size: Mapped[int] = mapped_column()
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)


class Owner(db.Model):
    """A dashboard login (`flask --app wsgi owner create`)."""

    __tablename__ = "owners"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Part of every session cookie; a new one on log-out ends every session of the
    # owner, even a copied cookie (sessions are signed cookies, not server rows).
    session_token: Mapped[str] = mapped_column(String(64), default=new_session_token)

    # Flask-Login's user interface.
    is_active = True
    is_authenticated = True
    is_anonymous = False

    def get_id(self) -> str:
        return f"{self.id}.{self.session_token}"


class ApiToken(db.Model):
    """A token for /api/v1/. Only its SHA-256 is stored; the token is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters of the token, to tell tokens apart in lists.
    prefix: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)


class Webhook(db.Model):
    """An endpoint that receives lead events as signed JSON POSTs."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(128))
    # Event names (lead.created, lead.approved …) this endpoint receives.
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Only events of this page, when set.
    page_id: Mapped[int | None] = mapped_column(ForeignKey("pages.id", ondelete="CASCADE"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)

    page: Mapped[Page | None] = relationship()


class WebhookDelivery(db.Model):
    """One event for one webhook: written in the transaction of the change it reports,
    posted later by the scheduler, retried with back-off for a bounded time."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_webhook", "webhook_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(40))
    # The exact JSON body that is signed and posted.
    body: Mapped[str] = mapped_column(Text)
    # pending → sending → delivered | pending (retry) | failed.
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime, default=_now)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime)
    status_code: Mapped[int | None] = mapped_column()
    response_ms: Mapped[int | None] = mapped_column()
    error: Mapped[str] = mapped_column(String(500), default="")

    webhook: Mapped[Webhook] = relationship()


# --- the report rollups: derived from the tables above, kept by capture.numbers.rollups ---

class RollupState(db.Model):
    """How far the rollups have read: the last folded id of each source table."""

    __tablename__ = "rollup_state"

    name: Mapped[str] = mapped_column(String(20), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class RollupCount(db.Model):
    """Additive numbers of one day, page and attribution value (one row per dimension:
    source, campaign or ref). Duplicates count where the repeat opt-in came from; the
    other numbers where its lead came from."""

    __tablename__ = "rollup_counts"
    __table_args__ = (Index("ix_rollup_counts_day", "dimension", "day", "page_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    page_id: Mapped[int | None] = mapped_column()
    dimension: Mapped[str] = mapped_column(String(8))
    value: Mapped[str | None] = mapped_column(String(200))
    leads: Mapped[int] = mapped_column(default=0)
    approved: Mapped[int] = mapped_column(default=0)
    rejected: Mapped[int] = mapped_column(default=0)
    pending: Mapped[int] = mapped_column(default=0)
    confirmed: Mapped[int] = mapped_column(default=0)
    duplicates: Mapped[int] = mapped_column(default=0)
    opens_raw: Mapped[int] = mapped_column(default=0)
    clicks_raw: Mapped[int] = mapped_column(default=0)
    upgrades: Mapped[int] = mapped_column(default=0)
    upgrade_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    # Leads an import created (not in `leads`, the opt-ins), and their part of
    # `approved` and `upgrade_cents`.
    imported: Mapped[int] = mapped_column(default=0, server_default="0")
    imported_approved: Mapped[int] = mapped_column(default=0, server_default="0")
    imported_upgrade_cents: Mapped[int] = mapped_column(BigInteger, default=0,
                                                        server_default="0")
    # Opt-ins (not imported), the first of each lead and its later ones on other pages;
    # approved, rejected, pending and confirmed count opt-ins.
    optins: Mapped[int] = mapped_column(default=0, server_default="0")


class RollupFirst(db.Model):
    """Distinct counts made additive: how many (visitor or lead, group) had `metric` on
    `day` and last had it before on `prev_day` (None: never before). Distinct in
    [start, end) = the rows of those days whose prev_day is before start."""

    __tablename__ = "rollup_firsts"
    __table_args__ = (Index("ix_rollup_firsts_day", "metric", "dimension", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    metric: Mapped[str] = mapped_column(String(12))
    day: Mapped[date] = mapped_column(Date)
    prev_day: Mapped[date | None] = mapped_column(Date)
    # Visitors: 0 for every page together; leads: the lead's page.
    page_id: Mapped[int | None] = mapped_column()
    dimension: Mapped[str] = mapped_column(String(8))
    value: Mapped[str | None] = mapped_column(String(200))
    count: Mapped[int] = mapped_column(default=0)


class RollupLead(db.Model):
    """What one lead added to the rollups when last folded, so that a change to it (or
    its deletion) can be taken back exactly. No foreign key: it outlives the lead until
    the next fold."""

    __tablename__ = "rollup_leads"

    lead_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    parts: Mapped[str] = mapped_column(Text)


class RollupQueue(db.Model):
    """Leads changed in place (reviewed, confirmed, deleted …), written in the same
    transaction as the change; lead_id None asks for a full rebuild."""

    __tablename__ = "rollup_queue"

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int | None] = mapped_column()


class RollupUnsent(db.Model):
    """Deliveries already read but not sent yet: their lead is folded again once sent."""

    __tablename__ = "rollup_unsent"

    delivery_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    lead_id: Mapped[int] = mapped_column()


class RateLimitCounter(db.Model):
    """One rate-limit counter (CAPTURE_RATE_LIMIT_STORAGE=database, see
    capture.web.rate_limits): the hits of one key in its window, which ends at
    `expires_at` (Unix time, as the `limits` library counts)."""

    __tablename__ = "rate_limit_counters"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    count: Mapped[int] = mapped_column()
    expires_at: Mapped[float] = mapped_column(Double, index=True)


class SpentChallenge(db.Model):
    """A solved proof-of-work challenge a sign-up used (capture.public.bots), kept
    until the challenge expires (`expires_at`, Unix time) so that every worker refuses
    a second use."""

    __tablename__ = "spent_challenges"

    signature: Mapped[str] = mapped_column(String(128), primary_key=True)
    expires_at: Mapped[float] = mapped_column(Double, index=True)


# --- what visitors sent, kept until the scheduler folds it in (capture.leads.intake) ---

class Intake(db.Model):
    """An accepted sign-up from the opt-in form or the embedded form (`kind` optin),
    written by the request as its one durable append and turned into its lead,
    opt-in, events and the rest by the scheduler's processor, which deletes the row
    in the same transaction; or a person's click (`kind` click, payload lead_id, url,
    tag) whose tag and click-triggered sequences the processor adds. A row it could
    not process stays, `failed`, with the error."""

    __tablename__ = "intake"
    __table_args__ = (Index("ix_intake_state_id", "state", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), default="optin")
    # No foreign key: a page deleted meanwhile leaves its sign-ups failed, not gone.
    page_id: Mapped[int] = mapped_column()
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    state: Mapped[str] = mapped_column(String(10), default="waiting")  # waiting | failed
    error: Mapped[str | None] = mapped_column(String(300))

