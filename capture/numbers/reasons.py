"""Why opt-ins were rejected: per reason, how many, on which pages and from which
sources, and how many of them were returns (approved first, rejected later by a
buyer or the owner).

`rejected` counts the opt-ins of the period (the lead's first and later ones, by the
time they were made, as the report's `rejected` does) whose review is rejected now,
by the reason given; `returned` counts the returns made in the period (their
`return` events). Grouped in SQL: a few rows per reason, however many leads."""

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select

from capture.db import db
from capture.models import Event, Lead, Optin, Page
from capture.numbers.metrics import in_period

NONE = "(none)"


@dataclass
class Reason:
    """One rejection reason and where its rejections came from."""

    reason: str
    rejected: int = 0
    returned: int = 0
    pages: Counter = field(default_factory=Counter)
    sources: Counter = field(default_factory=Counter)

    def as_json(self) -> dict:
        return {"group": self.reason, "rejected": self.rejected, "returned": self.returned,
                "pages": dict(self.pages.most_common()),
                "sources": dict(self.sources.most_common())}


def rejection_reasons(start: datetime | None = None, end: datetime | None = None,
                      page_id: int | None = None) -> list[Reason]:
    """The reasons of the period, the most frequent first (then by name)."""
    slugs = dict(db.session.execute(select(Page.id, Page.slug)).all())
    reasons: dict[str, Reason] = {}

    def row_of(text: str | None) -> Reason:
        text = text or NONE
        return reasons.setdefault(text, Reason(text))

    for entity, later in ((Lead, False), (Optin, True)):
        stmt = (select(entity.review_reason, entity.page_id, entity.utm_source, func.count())
                .where(entity.review == "rejected")
                .group_by(entity.review_reason, entity.page_id, entity.utm_source))
        if later:
            stmt = stmt.where(Optin.first.is_(False))
        if page_id is not None:
            stmt = stmt.where(entity.page_id == page_id)
        for text, page, source, number in db.session.execute(
                in_period(stmt, entity.created_at, start, end)):
            reason = row_of(text)
            reason.rejected += number
            reason.pages[slugs.get(page, NONE)] += number
            reason.sources[source or NONE] += number
    given = Event.data["reason"].as_string()
    stmt = (select(given, func.count()).where(Event.kind == "return").group_by(given))
    if page_id is not None:
        stmt = stmt.where(Event.page_id == page_id)
    for text, number in db.session.execute(in_period(stmt, Event.created_at, start, end)):
        row_of(text).returned += number
    return sorted(reasons.values(), key=lambda r: (-r.rejected, -r.returned, r.reason))
