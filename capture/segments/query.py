"""A segment compiled to SQL: the ids of its members (any subscription) and of its
audience (the members marketing mail may go to), and their counts. One statement per
question, no loop over leads in Python; the same on SQLite and PostgreSQL.

The keys that name other tables (tags, opens and clicks, enrolments …) are sets of
lead ids. Read whole (`IN (SELECT …)`), each set is read once per statement: best
when many leads are checked (a count, the leads table). Probed per lead (`EXISTS`,
`per_lead=True`), each lead costs a few index lookups: best when few leads are
checked (one chunk of ids of a broadcast's recipients, a lead's `when:`)."""

import json
from datetime import timedelta

from sqlalchemy import (
    ColumnElement,
    Select,
    Text,
    and_,
    case,
    cast,
    exists,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

from capture import clock
from capture.db import db
from capture.models import (
    Broadcast,
    Delivery,
    Enrollment,
    Event,
    Lead,
    LeadTag,
    Optin,
    Page,
    Upgrade,
)
from capture import suppression
from capture.segments.language import NONE_VALUE, Engagement, FieldValue, Segment, Tags

# The first-touch attribution column of each key.
_ATTRIBUTION = {"sources": Lead.utm_source, "mediums": Lead.utm_medium,
                "campaigns": Lead.utm_campaign, "refs": Lead.ref}
# Enrolment states: still getting steps (in_sequence) …
_IN_SEQUENCE = ("active", "sending")
# … and got the last step, none left (finished_sequence; see docs/use/segments.md).
_FINISHED = "waiting"


def _column(column, per_lead: bool):
    """A column as a condition reads it. Per lead on SQLite it is written `+leads.x`,
    SQLite's way to say "no index for this": the leads come from an id range or list
    (and their events, by lead id), and SQLite, which keeps no statistics, would
    otherwise walk an index of e.g. `subscription` over every lead to find the few in
    that range, or every click of the month for each lead."""
    if per_lead and _dialect() == "sqlite":
        return UnaryExpression(column, operator=operators.custom_op("+"), type_=column.type)
    return column


def _one_of(column, values: tuple[str, ...]) -> ColumnElement[bool]:
    """`column` is one of `values`; NONE_VALUE stands for NULL or empty."""
    named = [v for v in values if v != NONE_VALUE]
    parts = [column.in_(named)] if named else []
    if NONE_VALUE in values:
        parts.append(or_(column.is_(None), column == ""))
    return or_(*parts)


def _among(ids: Select, per_lead: bool) -> ColumnElement[bool]:
    """The lead is one of `ids` (a SELECT of one lead id column)."""
    if per_lead:
        return exists(ids.where(ids.selected_columns[0] == Lead.id))
    return Lead.id.in_(ids)


def _not_among(ids: Select) -> ColumnElement[bool]:
    """The lead is none of `ids`: NOT EXISTS, an anti-join on PostgreSQL and an
    index probe per lead on SQLite (NOT IN would also stumble over a NULL)."""
    return ~exists(ids.where(ids.selected_columns[0] == Lead.id))


def _pages(slugs: tuple[str, ...]) -> ColumnElement[bool]:
    """Opted in on one of the pages: any of its opt-ins, the first or a later one, is
    there (a repeat on the same page is a `duplicate` event of that opt-in). Probed
    per lead even when many leads are checked: the (lead_id, page_id) index answers
    without reading an opt-in row, where reading them whole goes through the page
    index to every row of those pages (twice as slow on SQLite)."""
    page_ids = select(Page.id).where(Page.slug.in_(slugs))
    # A repeat on another page made before opt-ins had rows of their own (a
    # `duplicate` event there) still counts, as it did then.
    return or_(exists(select(Optin.id).where(Optin.lead_id == Lead.id,
                                             Optin.page_id.in_(page_ids))),
               exists(select(Event.id).where(Event.lead_id == Lead.id,
                                             Event.kind == "duplicate",
                                             Event.page_id.in_(page_ids))))


def _tagged(names) -> Select:
    return select(LeadTag.lead_id).where(LeadTag.tag.in_(names))


def _tags(tags: Tags, per_lead: bool, leader: str | None) -> list[ColumnElement[bool]]:
    conditions = []
    if tags.any:
        conditions.append(_among(_tagged(tags.any), per_lead))
    conditions += [_among(_tagged([name]), per_lead) for name in tags.all
                   if leader != f"tags.all:{name}"]
    if tags.none:
        conditions.append(_not_among(_tagged(tags.none)))
    return conditions


def _dialect() -> str:
    return db.session.get_bind().dialect.name


def _field_is(name: str, value: FieldValue, per_lead: bool) -> ColumnElement[bool]:
    """The lead's custom field `name` holds `value` (`country`: the Lead column)."""
    if name == "country":
        return _one_of(_column(Lead.country, per_lead), (str(value),))
    text = Lead.fields[name].as_string()
    if isinstance(value, bool):
        # Checkboxes hold JSON true/false; a text "true" is not a ticked box.
        if _dialect() == "sqlite":
            return func.json_type(Lead.fields, f'$."{name}"') == ("true" if value else "false")
        return cast(Lead.fields[name], Text) == json.dumps(value)
    if value == NONE_VALUE:
        return func.coalesce(text, "") == ""
    return text == value


def _fields(fields, per_lead: bool) -> list[ColumnElement[bool]]:
    return [or_(*(_field_is(name, value, per_lead) for value in values))
            for name, values in fields]


def _engagement_ids(kind: str, engagement: Engagement, per_lead: bool = False) -> Select:
    """The lead ids of human opens or clicks (machine-marked ones never count),
    narrowed by time, steps or broadcasts."""
    events = select(Event.lead_id).where(_column(Event.kind, per_lead) == kind,
                                         Event.machine.is_(False))
    if engagement.within_days:
        since = clock.utcnow() - timedelta(days=engagement.within_days)
        events = events.where(Event.created_at >= since)
    if engagement.steps:
        steps = select(Delivery.id).where(or_(*(
            and_(Delivery.sequence == sequence, Delivery.step == step)
            for sequence, step in engagement.steps)))
        events = events.where(Event.delivery_id.in_(steps))
    if engagement.broadcasts:
        sent = select(Delivery.id).where(Delivery.broadcast_id.in_(
            select(Broadcast.id).where(Broadcast.name.in_(engagement.broadcasts))))
        events = events.where(Event.delivery_id.in_(sent))
    return events


def _engaged(kind: str, engagement: Engagement, per_lead: bool) -> ColumnElement[bool]:
    """Leads with such opens or clicks; `happened: false`: the leads without any."""
    events = _engagement_ids(kind, engagement, per_lead)
    return _among(events, per_lead) if engagement.happened else _not_among(events)


def _enrolled(names: tuple[str, ...], finished: bool, per_lead: bool) -> ColumnElement[bool]:
    enrolments = select(Enrollment.lead_id).where(Enrollment.sequence.in_(names))
    if finished:
        enrolments = enrolments.where(Enrollment.state == _FINISHED,
                                      Enrollment.last_step.is_not(None))
    else:
        enrolments = enrolments.where(Enrollment.state.in_(_IN_SEQUENCE))
    return _among(enrolments, per_lead)


def conditions(segment: Segment, *, per_lead: bool = False,
               leader: str | None = None) -> list[ColumnElement[bool]]:
    """The WHERE conditions over Lead that make a lead a member (all must hold).
    `leader` names a key whose lead ids the statement starts from (left out here).
    An erased person is nobody's member: their row stays only for the numbers."""
    where: list[ColumnElement[bool]] = [_column(Lead.subscription, per_lead) != "erased"]
    if segment.pages:
        where.append(_pages(segment.pages))
    for key, column in _ATTRIBUTION.items():
        values = getattr(segment, key)
        if values:
            where.append(_one_of(_column(column, per_lead), values))
    if segment.review:
        where.append(_column(Lead.review, per_lead).in_(segment.review))
    if segment.tags:
        where += _tags(segment.tags, per_lead, leader)
    where += _fields(segment.fields, per_lead)
    if segment.upgraded is not None and leader != "upgraded":
        upgrades = select(Upgrade.lead_id)
        where.append(_among(upgrades, True) if segment.upgraded else _not_among(upgrades))
    for key, kind in (("opened", "open"), ("clicked", "click")):
        engagement = getattr(segment, key)
        if engagement and leader != key:
            where.append(_engaged(kind, engagement, per_lead))
    joined = _column(Lead.created_at, per_lead)
    if segment.joined_after:
        where.append(joined >= segment.joined_after)
    if segment.joined_before:
        where.append(joined < segment.joined_before)
    if segment.in_sequence:
        where.append(_enrolled(segment.in_sequence, False, per_lead))
    if segment.finished_sequence:
        where.append(_enrolled(segment.finished_sequence, True, per_lead))
    return where


def member_filter(segment: Segment) -> ColumnElement[bool]:
    """One condition over Lead: the lead is a member (for queries that add others)."""
    return and_(true(), *conditions(segment))


def mailable(*, per_lead: bool = False) -> list[ColumnElement[bool]]:
    """What marketing mail needs of every lead, whatever the segment says: subscribed,
    and the address not on the suppression list."""
    if _dialect() == "sqlite" and not per_lead:
        # The suppressed leads' ids, found once: checking an id needs no read of the
        # lead's row (its address), so a count can stay inside an index (5× faster at
        # 1M leads than a lookup by address per lead).
        return [Lead.subscription == "subscribed",
                Lead.id.not_in(suppression.suppressed_lead_ids())]
    return [_column(Lead.subscription, per_lead) == "subscribed",
            suppression.lead_not_suppressed()]


def member_ids(segment: Segment, *, per_lead: bool = False) -> Select:
    """SELECT the ids of the segment's members, whatever their subscription."""
    return select(Lead.id).where(*conditions(segment, per_lead=per_lead))


def audience_ids(segment: Segment, *, per_lead: bool = False) -> Select:
    """SELECT the ids of the leads marketing mail to this segment goes to: members
    that are subscribed and not suppressed. Taking them in chunks of lead ids
    (`Lead.id > after AND Lead.id <= until`), pass per_lead=True."""
    return select(Lead.id).where(*conditions(segment, per_lead=per_lead),
                                 *mailable(per_lead=per_lead))


def _leader(segment: Segment) -> tuple[str, Select] | None:
    """The key most likely to hold few leads, and its lead ids: an upgrade, an open
    or click of some emails or of the last days, a tag every member must have."""
    if segment.upgraded:
        return "upgraded", select(Upgrade.lead_id)
    for key, kind in (("clicked", "click"), ("opened", "open")):
        engagement = getattr(segment, key)
        if engagement and engagement.happened and (
                engagement.within_days or engagement.steps or engagement.broadcasts):
            return key, _engagement_ids(kind, engagement)
    if segment.tags and segment.tags.all:
        return f"tags.all:{segment.tags.all[0]}", _tagged([segment.tags.all[0]])
    return None


def count_statement(segment: Segment, *, audience: bool, members_too: bool = False) -> Select:
    """The SELECT COUNT of the audience (or of every member; or, `members_too`, of
    both in one pass: members, audience). On SQLite, which keeps no statistics to plan
    by, a likely narrow key leads: its lead ids are read first and each of them is
    probed for the other keys, instead of walking every lead."""
    leader = _leader(segment) if _dialect() == "sqlite" else None
    per_lead = leader is not None
    where = conditions(segment, per_lead=per_lead, leader=leader[0] if leader else None)
    mail = mailable(per_lead=per_lead)
    if members_too:
        stmt = select(func.count(Lead.id), func.count(case((and_(*mail), Lead.id))))
    else:
        stmt = select(func.count(Lead.id))
        where += mail if audience else []
    if leader is not None:
        first = leader[1].distinct().subquery()
        stmt = stmt.select_from(first).join(Lead, Lead.id == first.c.lead_id)
    return stmt.where(*where)


def count_members(segment: Segment) -> int:
    """How many leads are members now."""
    return db.session.scalar(count_statement(segment, audience=False))


def count_audience(segment: Segment) -> int:
    """How many leads marketing mail to this segment would go to now."""
    return db.session.scalar(count_statement(segment, audience=True))


def count_both(segment: Segment) -> tuple[int, int]:
    """(members, audience) now, in one pass over the members."""
    members, audience = db.session.execute(
        count_statement(segment, audience=True, members_too=True)).one()
    return members, audience


def is_member(segment: Segment, lead_id: int) -> bool:
    """Whether one lead is a member now (a sequence step's `when:`)."""
    return db.session.scalar(select(Lead.id).where(
        Lead.id == lead_id, *conditions(segment, per_lead=True))) is not None


def unknown_pages(segment: Segment) -> list[str]:
    """The page slugs of the segment that name no page (for `check`-like places: a
    segment naming a page not made yet is valid, but likely a typo)."""
    if not segment.pages:
        return []
    known = set(db.session.scalars(select(Page.slug).where(Page.slug.in_(segment.pages))))
    return [slug for slug in segment.pages if slug not in known]
