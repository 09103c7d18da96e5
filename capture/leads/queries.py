"""The queries the dashboard runs over leads: the filtered, sorted, paginated table
(and its CSV export), and one lead's history for the detail page."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from sqlalchemy import Exists, Select, func, or_, select, tuple_

from capture.db import db
from capture.models import (
    REVIEW_STATES,
    SUBSCRIPTION_STATES,
    Delivery,
    Enrollment,
    Event,
    Lead,
    LeadTag,
    Optin,
    Page,
    SavedSegment,
    Upgrade,
)
from capture.segments import saved as saved_segments
from capture.segments.language import Segment, SegmentError
from capture.segments.query import member_filter
from capture.tag_names import tag_problem

# --- the owner's table --------------------------------------------------------------

# The columns the table can be sorted by (never a column name from the request).
SORT_COLUMNS = {"created": Lead.created_at, "email": Lead.email, "name": Lead.name}
# The `source` filter value for leads that came without a utm_source.
NO_SOURCE = "(none)"


@dataclass(frozen=True)
class LeadFilters:
    """Which leads the owner's table (and its CSV export) shows, and in what order."""

    q: str = ""  # part of the email or name, any case
    review: str = ""
    subscription: str = ""
    page: str = ""  # a page slug: leads with an opt-in on it (first or later)
    source: str = ""  # a utm_source, or NO_SOURCE
    created_from: date | None = None  # first day, inclusive (UTC)
    created_to: date | None = None  # last day, inclusive (UTC)
    sort: str = "created"
    direction: str = "desc"
    tag: str = ""  # leads with this tag
    segment: int | None = None  # members of this saved segment (its id)
    # The saved segment's name and parsed rule (read by parse_filters).
    segment_name: str = field(default="", compare=False)
    segment_rule: Segment | None = field(default=None, compare=False, repr=False)

    def args(self, **changes: str) -> dict[str, str]:
        """The filters as query-string arguments (defaults left out), for links;
        `changes` replaces some (by argument name: sort="email", dir="desc")."""
        sort = changes.pop("sort", self.sort)
        direction = changes.pop("dir", self.direction)
        values = {
            "q": self.q, "review": self.review, "subscription": self.subscription,
            "page": self.page, "source": self.source, "tag": self.tag,
            "segment": str(self.segment) if self.segment else "",
            "from": self.created_from.isoformat() if self.created_from else "",
            "to": self.created_to.isoformat() if self.created_to else "",
            "sort": "" if sort == "created" else sort,
            "dir": "" if direction == _default_direction(sort) else direction,
            **changes,
        }
        return {key: value for key, value in values.items() if value}

    @property
    def narrowed(self) -> bool:
        """True when some filter leaves leads out (sorting aside)."""
        return bool(self.q or self.review or self.subscription or self.page or self.source
                    or self.created_from or self.created_to or self.tag or self.segment)


def _default_direction(sort: str) -> str:
    return "desc" if sort == "created" else "asc"


def parse_filters(args: Mapping[str, str]) -> tuple[LeadFilters, list[str]]:
    """Filters from query-string values. A value that makes no sense is ignored and
    named in the returned problems, so a mistyped link still shows a table."""
    problems: list[str] = []

    def text(name: str, limit: int) -> str:
        return " ".join(str(args.get(name) or "").split())[:limit]

    def choice(name: str, allowed) -> str:
        value = text(name, 20)
        if value and value not in allowed:
            problems.append(f"Unknown {name} “{value}”: ignored.")
            return ""
        return value

    def day(name: str, label: str) -> date | None:
        value = text(name, 20)
        if not value:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            problems.append(f"{label} “{value}” is not a date like 2026-03-01: ignored.")
            return None

    def tag() -> str:
        value = text("tag", 60)
        problem = tag_problem(value) if value else None
        if problem:
            problems.append(f"Tag filter: {problem}: ignored.")
            return ""
        return value

    sort = choice("sort", SORT_COLUMNS) or "created"
    direction = text("dir", 4)
    segment_id, segment_name, segment_rule = _segment_filter(text("segment", 20), problems)
    filters = LeadFilters(
        q=text("q", 200),
        review=choice("review", REVIEW_STATES),
        subscription=choice("subscription", SUBSCRIPTION_STATES),
        page=text("page", 64),
        source=text("source", 200),
        created_from=day("from", "From"),
        created_to=day("to", "To"),
        sort=sort,
        direction=direction if direction in ("asc", "desc") else _default_direction(sort),
        tag=tag(),
        segment=segment_id,
        segment_name=segment_name,
        segment_rule=segment_rule,
    )
    if filters.created_from and filters.created_to and filters.created_from > filters.created_to:
        problems.append("“From” is after “To”: no lead can match; swap the dates.")
    return filters, problems


def _segment_filter(value: str, problems: list[str]
                    ) -> tuple[int | None, str, Segment | None]:
    """The saved segment a `segment` argument names: its id, name and rule."""
    if not value:
        return None, "", None
    saved = saved_segments.get(int(value)) if value.isdigit() and len(value) <= 18 else None
    if saved is None:
        problems.append(f"There is no saved segment “{value}”: ignored.")
        return None, "", None
    try:
        return saved.id, saved.name, saved_segments.rule_of(saved)
    except SegmentError as error:
        problems.append(f"Segment “{saved.name}” has a problem ({error}): ignored.")
        return None, "", None


def filter_leads(stmt: Select, filters: LeadFilters) -> Select:
    """Add the filters' conditions to a query over Lead."""
    if filters.q:
        # Addresses are stored lower-cased, so only the name needs lower() per row.
        stmt = stmt.where(or_(Lead.email.contains(filters.q.lower(), autoescape=True),
                              Lead.name.icontains(filters.q, autoescape=True)))
    if filters.review:
        stmt = stmt.where(Lead.review == filters.review)
    if filters.subscription:
        stmt = stmt.where(Lead.subscription == filters.subscription)
    if filters.page:
        stmt = stmt.where(opted_in_on(filters.page))
    if filters.source == NO_SOURCE:
        stmt = stmt.where(or_(Lead.utm_source.is_(None), Lead.utm_source == ""))
    elif filters.source:
        stmt = stmt.where(Lead.utm_source == filters.source)
    if filters.created_from:
        stmt = stmt.where(Lead.created_at >= datetime.combine(filters.created_from, time()))
    if filters.created_to and filters.created_to < date.max:
        end = datetime.combine(filters.created_to + timedelta(days=1), time())
        stmt = stmt.where(Lead.created_at < end)
    if filters.tag:
        stmt = stmt.where(Lead.id.in_(select(LeadTag.lead_id).where(LeadTag.tag == filters.tag)))
    if filters.segment_rule is not None:
        stmt = stmt.where(member_filter(filters.segment_rule))
    return stmt


def opted_in_on(slug: str) -> Exists:
    """Condition on Lead: the person opted in on the page with this slug, first or
    later (an EXISTS over their opt-ins, which the (lead, page) index answers)."""
    # Never correlated: the table's query joins Page for the first page's slug.
    page_id = select(Page.id).where(Page.slug == slug).correlate(None).scalar_subquery()
    return (select(Optin.id).where(Optin.lead_id == Lead.id, Optin.page_id == page_id)
            .correlate(Lead).exists())


def table_order(filters: LeadFilters, reverse: bool = False) -> tuple:
    """ORDER BY of the table: the sort column, then the id (unique, so stable)."""
    column = SORT_COLUMNS[filters.sort]
    ascending = (filters.direction == "asc") != reverse
    return (column.asc(), Lead.id.asc()) if ascending else (column.desc(), Lead.id.desc())


@dataclass
class LeadTable:
    """One page of the owner's table: rows, how many leads match, and the cursors of
    the neighbouring pages (the id of the last/first row shown, or None)."""

    rows: list
    total: int
    next_after: int | None = None
    previous_before: int | None = None


def lead_table(filters: LeadFilters, *, after: int | None = None, before: int | None = None,
               per_page: int = 50) -> LeadTable:
    """A page of leads, found by keyset: the rows after (or before) a given lead in the
    table's order. Each page costs an index range scan of `per_page` rows however deep
    it is, where OFFSET would read and skip every row before it."""
    column = SORT_COLUMNS[filters.sort]
    backwards = after is None and before is not None
    anchor_id = before if backwards else after
    stmt = filter_leads(
        select(Lead.id, Lead.email, Lead.name, Page.slug.label("page"), Lead.utm_source,
               Lead.review, Lead.subscription, Lead.created_at)
        .outerjoin(Page, Page.id == Lead.page_id),
        filters,
    )
    anchor = None
    if anchor_id is not None:
        anchor = db.session.execute(select(column, Lead.id).where(Lead.id == anchor_id)).first()
    if anchor is not None:
        value, anchor_id = anchor
        # Rows "after" the anchor in the shown order; going back flips the direction.
        smaller = (filters.direction == "desc") != backwards
        key = tuple_(column, Lead.id)
        # The plain bound on the column lets every database use its index on it.
        if smaller:
            stmt = stmt.where(column <= value, key < tuple_(value, anchor_id))
        else:
            stmt = stmt.where(column >= value, key > tuple_(value, anchor_id))
    else:
        backwards = False
    rows = db.session.execute(
        stmt.order_by(*table_order(filters, reverse=backwards)).limit(per_page + 1)
    ).all()
    more = len(rows) > per_page
    rows = rows[:per_page]
    if backwards:
        rows.reverse()
    total = db.session.scalar(filter_leads(select(func.count(Lead.id)), filters))
    has_next = True if backwards else more
    has_previous = more if backwards else anchor is not None
    return LeadTable(
        rows=rows,
        total=total,
        next_after=rows[-1].id if rows and has_next else None,
        previous_before=rows[0].id if rows and has_previous else None,
    )


def pages_for_filter() -> list[Page]:
    """Every page (slug, title, published), for the table's page filter."""
    return list(db.session.scalars(select(Page).order_by(Page.slug)))


def segments_for_filter() -> list[tuple[int, str]]:
    """Every saved segment (id, name), for the table's segment filter."""
    return [tuple(row) for row in db.session.execute(
        select(SavedSegment.id, SavedSegment.name).order_by(SavedSegment.name))]


def known_sources(recent: int = 5000, limit: int = 200) -> list[str]:
    """The utm_source values of the latest leads, for the filter's suggestions (the
    latest only: reading every lead's source would cost more than the table itself)."""
    latest = select(Lead.utm_source).order_by(Lead.created_at.desc()).limit(recent).subquery()
    stmt = (select(latest.c.utm_source).where(latest.c.utm_source.is_not(None))
            .group_by(latest.c.utm_source).order_by(latest.c.utm_source).limit(limit))
    return [source for source in db.session.scalars(stmt) if source]


# --- one lead's history -------------------------------------------------------------

TIMELINE_LIMIT = 500
REFERRALS_LIMIT = 100


@dataclass(frozen=True)
class ConfirmationState:
    """Where an unconfirmed lead's confirmation email stands (see `confirmations`):
    queued or not, and why its last attempt failed."""

    queued: bool
    error: str | None
    next_attempt: datetime | None


def confirmation_state(lead: Lead) -> ConfirmationState | None:
    """The lead's confirmation email while it waits or after it failed; None when
    there is nothing to say (sent, confirmed, never asked)."""
    if lead.subscription != "unconfirmed" or lead.review == "rejected":
        return None
    queued = lead.confirmation_due_at is not None
    if not queued and not lead.confirmation_error:
        return None
    return ConfirmationState(queued=queued, error=lead.confirmation_error,
                             next_attempt=lead.confirmation_due_at)


@dataclass
class History:
    """What happened to one lead: its timeline (newest first), emails, sequences,
    upgrades and the leads it referred."""

    events: list[Event]
    event_count: int
    deliveries: list[Delivery]
    enrollments: list[Enrollment]
    upgrades: list[Upgrade]
    referrals: list[Lead]
    referral_count: int
    confirmation: ConfirmationState | None = None

    def subject_of(self, delivery_id: int | None) -> str:
        """The subject of one of the lead's emails ('' when unknown)."""
        for delivery in self.deliveries:
            if delivery.id == delivery_id:
                return delivery.subject
        return ""


def history(lead: Lead) -> History:
    """The lead's history, each list bounded so a very busy lead still loads fast."""
    def count(stmt) -> int:
        return db.session.scalar(select(func.count()).select_from(stmt.subquery()))

    events = select(Event).where(Event.lead_id == lead.id)
    referrals = select(Lead).where(Lead.referred_by_id == lead.id)
    return History(
        events=list(db.session.scalars(
            events.order_by(Event.created_at.desc(), Event.id.desc()).limit(TIMELINE_LIMIT))),
        event_count=count(events),
        deliveries=list(db.session.scalars(
            select(Delivery).where(Delivery.lead_id == lead.id)
            .order_by(Delivery.created_at.desc(), Delivery.id.desc()))),
        enrollments=list(db.session.scalars(
            select(Enrollment).where(Enrollment.lead_id == lead.id).order_by(Enrollment.id))),
        upgrades=list(db.session.scalars(
            select(Upgrade).where(Upgrade.lead_id == lead.id).order_by(Upgrade.created_at.desc()))),
        referrals=list(db.session.scalars(
            referrals.order_by(Lead.created_at.desc()).limit(REFERRALS_LIMIT))),
        referral_count=count(referrals),
        confirmation=confirmation_state(lead),
    )
