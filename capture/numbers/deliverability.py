"""Bounces and complaints of a report's groups, from the events table.

Definitions (docs/use/numbers.md):
- bounces: distinct leads with a `bounce` event in the period (a hard bounce, or soft
  bounces past CAPTURE_SOFT_BOUNCE_LIMIT: `capture.mail.bounces`)
- complaints: distinct leads with a `complaint` event in the period
- bounce rate = bounces / delivered, complaint rate = complaints / delivered
  (`capture.numbers.figures.Numbers`)

Grouped as the other activity numbers (opens, clicks): by the lead's first-touch
page, source, campaign and ref, or by the day of the event. Read from the events
table for every period (the rollups do not hold them).
"""

from datetime import datetime

from sqlalchemy import case, distinct, func, select

from capture.db import db
from capture.models import Event, Lead

_LEAD_KEYS = {"page": "page_id", "source": "utm_source", "campaign": "utm_campaign",
              "ref": "ref"}


def counts_by(start: datetime | None, end: datetime | None, page_id: int | None = None,
              by: str | None = None) -> dict:
    """{group: (bounces, complaints)} of the period [start, end) (open bounds: no
    limit), for one page when given; the group is None when `by` is None, else the
    lead's column (None for a lead without one) or the event's day."""
    stmt = (select(func.count(distinct(case((Event.kind == "bounce", Event.lead_id)))),
                   func.count(distinct(case((Event.kind == "complaint", Event.lead_id)))))
            .where(Event.kind.in_(("bounce", "complaint")), Event.lead_id.is_not(None)))
    if page_id is not None or by not in (None, "day"):
        stmt = stmt.join(Lead, Lead.id == Event.lead_id)
    if page_id is not None:
        stmt = stmt.where(Lead.page_id == page_id)
    if start is not None:
        stmt = stmt.where(Event.created_at >= start)
    if end is not None:
        stmt = stmt.where(Event.created_at < end)
    if by is None:
        bounces, complaints = db.session.execute(stmt).one()
        return {None: (bounces or 0, complaints or 0)} if bounces or complaints else {}
    key = func.date(Event.created_at) if by == "day" else getattr(Lead, _LEAD_KEYS[by])
    stmt = stmt.add_columns(key).group_by(key)
    return {row[2]: (row[0], row[1]) for row in db.session.execute(stmt)}
