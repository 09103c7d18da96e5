"""A segment compiled to SQL: the ids of its members (any subscription) and of its
audience (the members marketing mail may go to), and their counts. One statement per
question, no loop over leads in Python; the same on SQLite and PostgreSQL."""

import json
from datetime import timedelta

from sqlalchemy import (
    ColumnElement,
    Select,
    Text,
    and_,
    cast,
    exists,
    func,
    or_,
    select,
    true,
)

from capture import clock
from capture.db import db
from capture.models import (
    Broadcast,
    Delivery,
    Enrollment,
    Event,
    Lead,
    LeadTag,
    Page,
    Suppression,
    Upgrade,
)
from capture.segments.language import NONE_VALUE, Engagement, FieldValue, Segment, Tags

# The first-touch attribution column of each key.
_ATTRIBUTION = {"sources": Lead.utm_source, "mediums": Lead.utm_medium,
                "campaigns": Lead.utm_campaign, "refs": Lead.ref}
# Enrolment states: still getting steps (in_sequence) …
_IN_SEQUENCE = ("active", "sending")
# … and got the last step, none left (finished_sequence; see docs/use/segments.md).
_FINISHED = "waiting"


def _one_of(column, values: tuple[str, ...]) -> ColumnElement[bool]:
    """`column` is one of `values`; NONE_VALUE stands for NULL or empty."""
    named = [v for v in values if v != NONE_VALUE]
    parts = [column.in_(named)] if named else []
    if NONE_VALUE in values:
        parts.append(or_(column.is_(None), column == ""))
    return or_(*parts)


def _pages(slugs: tuple[str, ...]) -> ColumnElement[bool]:
    """Opted in on one of the pages: its first opt-in there, or a later one (the
    repeat opt-in of a known address is a `duplicate` event on that page)."""
    page_ids = select(Page.id).where(Page.slug.in_(slugs))
    again = select(Event.lead_id).where(Event.kind == "duplicate",
                                        Event.page_id.in_(page_ids))
    return or_(Lead.page_id.in_(page_ids), Lead.id.in_(again))


def _tagged(names) -> Select:
    return select(LeadTag.lead_id).where(LeadTag.tag.in_(names))


def _tags(tags: Tags) -> list[ColumnElement[bool]]:
    conditions = []
    if tags.any:
        conditions.append(Lead.id.in_(_tagged(tags.any)))
    conditions += [Lead.id.in_(_tagged([name])) for name in tags.all]
    if tags.none:
        # NOT EXISTS rather than NOT IN: an anti-join on PostgreSQL, an index probe
        # per lead on SQLite.
        conditions.append(~exists().where(LeadTag.lead_id == Lead.id,
                                          LeadTag.tag.in_(tags.none)))
    return conditions


def _dialect() -> str:
    return db.session.get_bind().dialect.name


def _field_is(name: str, value: FieldValue) -> ColumnElement[bool]:
    """The lead's custom field `name` holds `value` (`country`: the Lead column)."""
    if name == "country":
        return _one_of(Lead.country, (str(value),))
    text = Lead.fields[name].as_string()
    if isinstance(value, bool):
        # Checkboxes hold JSON true/false; a text "true" is not a ticked box.
        if _dialect() == "sqlite":
            return func.json_type(Lead.fields, f'$."{name}"') == ("true" if value else "false")
        return cast(Lead.fields[name], Text) == json.dumps(value)
    if value == NONE_VALUE:
        return func.coalesce(text, "") == ""
    return text == value


def _fields(fields) -> list[ColumnElement[bool]]:
    return [or_(*(_field_is(name, value) for value in values)) for name, values in fields]


def _engaged(kind: str, engagement: Engagement) -> ColumnElement[bool]:
    """Human opens or clicks (machine-marked ones never count), narrowed by time,
    steps or broadcasts; `happened: false` is the leads without any such."""
    events = select(Event.lead_id).where(Event.kind == kind, Event.machine.is_(False))
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
    if engagement.happened:
        return Lead.id.in_(events)
    return ~exists(events.where(Event.lead_id == Lead.id))


def _enrolled(names: tuple[str, ...], finished: bool) -> ColumnElement[bool]:
    enrolments = select(Enrollment.lead_id).where(Enrollment.sequence.in_(names))
    if finished:
        enrolments = enrolments.where(Enrollment.state == _FINISHED,
                                      Enrollment.last_step.is_not(None))
    else:
        enrolments = enrolments.where(Enrollment.state.in_(_IN_SEQUENCE))
    return Lead.id.in_(enrolments)


def conditions(segment: Segment) -> list[ColumnElement[bool]]:
    """The WHERE conditions over Lead that make a lead a member (all must hold)."""
    where: list[ColumnElement[bool]] = []
    if segment.pages:
        where.append(_pages(segment.pages))
    for key, column in _ATTRIBUTION.items():
        values = getattr(segment, key)
        if values:
            where.append(_one_of(column, values))
    if segment.review:
        where.append(Lead.review.in_(segment.review))
    if segment.tags:
        where += _tags(segment.tags)
    where += _fields(segment.fields)
    if segment.upgraded is not None:
        upgraded = exists().where(Upgrade.lead_id == Lead.id)
        where.append(upgraded if segment.upgraded else ~upgraded)
    if segment.opened:
        where.append(_engaged("open", segment.opened))
    if segment.clicked:
        where.append(_engaged("click", segment.clicked))
    if segment.joined_after:
        where.append(Lead.created_at >= segment.joined_after)
    if segment.joined_before:
        where.append(Lead.created_at < segment.joined_before)
    if segment.in_sequence:
        where.append(_enrolled(segment.in_sequence, finished=False))
    if segment.finished_sequence:
        where.append(_enrolled(segment.finished_sequence, finished=True))
    return where


def member_filter(segment: Segment) -> ColumnElement[bool]:
    """One condition over Lead: the lead is a member (for queries that add others)."""
    return and_(true(), *conditions(segment))


def mailable() -> list[ColumnElement[bool]]:
    """What marketing mail needs of every lead, whatever the segment says: subscribed,
    and the address not on the suppression list."""
    return [Lead.subscription == "subscribed",
            ~exists().where(Suppression.email == Lead.email)]


def member_ids(segment: Segment) -> Select:
    """SELECT the ids of the segment's members, whatever their subscription."""
    return select(Lead.id).where(*conditions(segment))


def audience_ids(segment: Segment) -> Select:
    """SELECT the ids of the leads marketing mail to this segment goes to: members
    that are subscribed and not suppressed."""
    return select(Lead.id).where(*conditions(segment), *mailable())


def count_members(segment: Segment) -> int:
    """How many leads are members now."""
    return db.session.scalar(select(func.count(Lead.id)).where(*conditions(segment)))


def count_audience(segment: Segment) -> int:
    """How many leads marketing mail to this segment would go to now."""
    return db.session.scalar(
        select(func.count(Lead.id)).where(*conditions(segment), *mailable()))


def is_member(segment: Segment, lead_id: int) -> bool:
    """Whether one lead is a member now (a sequence step's `when:`)."""
    return db.session.scalar(
        select(Lead.id).where(Lead.id == lead_id, *conditions(segment))) is not None


def unknown_pages(segment: Segment) -> list[str]:
    """The page slugs of the segment that name no page (for `check`-like places: a
    segment naming a page not made yet is valid, but likely a typo)."""
    if not segment.pages:
        return []
    known = set(db.session.scalars(select(Page.slug).where(Page.slug.in_(segment.pages))))
    return [slug for slug in segment.pages if slug not in known]
