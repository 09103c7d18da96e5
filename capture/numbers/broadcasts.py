"""How each broadcast did: recipients, delivered, opens, clicks, unsubscribes, bounces,
complaints, and the upgrades and revenue credited to it (`capture.numbers.attribution`).

Definitions (docs/use/numbers.md):
- recipients: the broadcast's deliveries (one per lead), cancelled and skipped ones
  (the lead unsubscribed or was suppressed before its email went) left out
- delivered: its deliveries with status `sent`
- opens, clicks: distinct leads with a person's open / click of it (machine-made left
  out); open_rate and click_rate are over delivered
- unsubscribes: distinct leads who unsubscribed through it (the unsubscribe link or
  List-Unsubscribe of that email: the event names the delivery); an unsubscribe on the
  dashboard, the API or another email is not put down to this broadcast
- bounces, complaints: events `bounce` / `complaint` of its deliveries, one per lead;
  bounce_rate and complaint_rate are over delivered
- upgrades, revenue: the upgrades credited to it by last click, and their amounts
Everything is a few grouped SQL statements, whatever the number of recipients.

Numbers per subject (a subject test of a broadcast or a sequence step): the same
counts grouped also by the delivery's `subject_index`; delivered counts leads, as a
step's `sent` does (a lead who had a step twice counts once per subject it got).
"""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import case, distinct, func, select

from capture.db import db
from capture.mail.library import Library
from capture.models import Broadcast, Delivery, Event
from capture.numbers import attribution, metrics
from capture.numbers.figures import rate

# Delivery statuses that no longer count as recipients.
NOT_RECIPIENTS = ("cancelled", "skipped")
MONEY_PLACES = Decimal("0.01")


class EmailRates:
    """The rates of an email's numbers (a broadcast's, one subject's): each count over
    the leads it was delivered to, None before one was."""

    delivered: int
    opens: int
    clicks: int
    bounces: int
    complaints: int

    @property
    def open_rate(self) -> float | None:
        return rate(self.opens, self.delivered)

    @property
    def click_rate(self) -> float | None:
        return rate(self.clicks, self.delivered)

    @property
    def bounce_rate(self) -> float | None:
        return rate(self.bounces, self.delivered)

    @property
    def complaint_rate(self) -> float | None:
        return rate(self.complaints, self.delivered)


@dataclass
class BroadcastNumbers(EmailRates):
    """The numbers of one broadcast (zeros before it starts)."""

    broadcast_id: int
    name: str
    state: str = "scheduled"
    started_at: datetime | None = None
    recipients: int = 0
    delivered: int = 0
    opens: int = 0
    clicks: int = 0
    unsubscribes: int = 0
    bounces: int = 0
    complaints: int = 0
    upgrades: int = 0
    revenue: Decimal = field(default_factory=lambda: Decimal("0.00"))

    def as_json(self) -> dict[str, Any]:
        """The API's BroadcastNumbers: counts, rates 0–1 (null without delivered),
        revenue as a decimal string."""
        return {"recipients": self.recipients, "delivered": self.delivered,
                "opens": self.opens, "clicks": self.clicks,
                "open_rate": self.open_rate, "click_rate": self.click_rate,
                "unsubscribes": self.unsubscribes, "bounces": self.bounces,
                "complaints": self.complaints, "bounce_rate": self.bounce_rate,
                "complaint_rate": self.complaint_rate, "upgrades": self.upgrades,
                "revenue": f"{self.revenue:.2f}"}


def broadcast_numbers(broadcast_ids: list[int] | None = None) -> dict[int, BroadcastNumbers]:
    """The numbers of these broadcasts (every broadcast row when None), by broadcast id."""
    broadcasts = select(Broadcast.id, Broadcast.name, Broadcast.state, Broadcast.started_at)
    if broadcast_ids is not None:
        if not broadcast_ids:
            return {}
        broadcasts = broadcasts.where(Broadcast.id.in_(broadcast_ids))
    result = {row.id: BroadcastNumbers(row.id, row.name, row.state, row.started_at)
              for row in db.session.execute(broadcasts)}
    if not result:
        return result
    ids = list(result)

    # Grouped by status too: SQLite counts each group in the (broadcast_id, status)
    # index alone (80 ms for 700,000 rows, against 280 ms testing each row's status).
    stmt = (select(Delivery.broadcast_id, Delivery.status, func.count())
            .where(Delivery.broadcast_id.in_(ids))
            .group_by(Delivery.broadcast_id, Delivery.status))
    for broadcast_id, status, count in db.session.execute(stmt):
        numbers = result[broadcast_id]
        if status not in NOT_RECIPIENTS:
            numbers.recipients += count
        if status == "sent":
            numbers.delivered += count

    stmt = _acted((Delivery.broadcast_id,), Delivery.broadcast_id.in_(ids))
    for broadcast_id, *values in db.session.execute(stmt):
        numbers = result[broadcast_id]
        (numbers.opens, numbers.clicks, numbers.unsubscribes, numbers.bounces,
         numbers.complaints) = values

    credited = attribution.credited_emails().subquery("credited_emails")
    stmt = (select(credited.c.broadcast_id, func.sum(credited.c.upgrades),
                   func.coalesce(func.sum(credited.c.revenue), 0))
            .where(credited.c.broadcast_id.in_(ids)).group_by(credited.c.broadcast_id))
    for broadcast_id, upgrades, revenue in db.session.execute(stmt):
        numbers = result[broadcast_id]
        numbers.upgrades = int(upgrades)
        numbers.revenue = Decimal(str(revenue or 0)).quantize(MONEY_PLACES)
    return result


def _acted(keys: tuple, condition):
    """Per group of `keys` (Delivery columns) of the deliveries that meet `condition`:
    leads with a person's open, a person's click, an unsubscribe, a bounce, a complaint."""
    human = Event.machine.is_(False)

    def leads_with(kind_holds):
        return func.count(distinct(case((kind_holds, Event.lead_id))))

    return (select(*keys,
                   leads_with(human & (Event.kind == "open")),
                   leads_with(human & (Event.kind == "click")),
                   leads_with(Event.kind == "unsubscribe"),
                   leads_with(Event.kind == "bounce"),
                   leads_with(Event.kind == "complaint"))
            .join(Delivery, Delivery.id == Event.delivery_id)
            # No filter on Event.kind: with one, SQLite looks each delivery up in
            # ix_events_delivery_kind once per kind; without, once (see bench/).
            .where(condition)
            .group_by(*keys))


def numbers_of(broadcast_id: int) -> BroadcastNumbers | None:
    """The numbers of one broadcast, None when there is no such row."""
    return broadcast_numbers([broadcast_id]).get(broadcast_id)


def started_in(start: datetime | None = None,
               end: datetime | None = None) -> list[BroadcastNumbers]:
    """The numbers of the broadcasts that started sending in [start, end) (open bounds:
    no limit), newest first: the rows of `report --by broadcast` and of the API's
    metrics `by=broadcast`. Each broadcast's numbers cover its whole life, whatever
    the period: the period picks the broadcasts, not their events."""
    stmt = select(Broadcast.id).where(Broadcast.started_at.is_not(None))
    if start is not None:
        stmt = stmt.where(Broadcast.started_at >= start)
    if end is not None:
        stmt = stmt.where(Broadcast.started_at < end)
    ids = db.session.scalars(stmt.order_by(Broadcast.started_at.desc(),
                                           Broadcast.id.desc())).all()
    numbers = broadcast_numbers(list(ids))
    return [numbers[broadcast_id] for broadcast_id in ids]


@dataclass
class SubjectNumbers(EmailRates):
    """How one subject of a subject test did: its delivered emails (leads), people who
    opened and clicked, unsubscribes, bounces, complaints, and the upgrades and revenue
    credited to it."""

    index: int
    subject: str = ""
    delivered: int = 0
    opens: int = 0
    clicks: int = 0
    unsubscribes: int = 0
    bounces: int = 0
    complaints: int = 0
    upgrades: int = 0
    revenue: Decimal = field(default_factory=lambda: Decimal("0.00"))
    # The subject a broadcast's test picked (sent to the rest).
    winner: bool = False

    @property
    def label(self) -> str:
        """"subject 2": how the owner reads its place (1-based)."""
        return f"subject {self.index + 1}"

    @property
    def revenue_per_delivered(self) -> Decimal | None:
        return self.revenue / self.delivered if self.delivered else None

    def as_json(self) -> dict[str, Any]:
        """The API's SubjectNumbers: `index` 0-based, rates 0–1, revenue as text."""
        return {"index": self.index, "subject": self.subject, "winner": self.winner,
                "delivered": self.delivered, "opens": self.opens, "clicks": self.clicks,
                "open_rate": self.open_rate, "click_rate": self.click_rate,
                "unsubscribes": self.unsubscribes, "bounces": self.bounces,
                "complaints": self.complaints, "bounce_rate": self.bounce_rate,
                "complaint_rate": self.complaint_rate, "upgrades": self.upgrades,
                "revenue": f"{self.revenue:.2f}"}


def by_subject(keys: tuple, condition, start: datetime | None = None,
               end: datetime | None = None) -> dict[tuple, SubjectNumbers]:
    """Per group of `keys` (Delivery columns) and subject, of the deliveries that meet
    `condition` and had a subject test: {(*key, index): numbers}. Within a period:
    what happened in it (sent, events, upgrades made), as the steps' numbers."""
    group = (*keys, Delivery.subject_index)
    tested = condition & Delivery.subject_index.is_not(None)
    found: dict[tuple, SubjectNumbers] = {}

    def numbers(key) -> SubjectNumbers:
        return found.setdefault(tuple(key), SubjectNumbers(key[-1]))

    sent = select(*group, func.count(distinct(Delivery.lead_id))).where(
        tested, Delivery.status == "sent")
    sent = metrics.in_period(sent, Delivery.sent_at, start, end).group_by(*group)
    for *key, count in db.session.execute(sent):
        numbers(key).delivered = count
    acted = metrics.in_period(_acted(group, tested), Event.created_at, start, end)
    for values in db.session.execute(acted):
        row = numbers(values[:len(group)])
        (row.opens, row.clicks, row.unsubscribes, row.bounces,
         row.complaints) = values[len(group):]
    credited = attribution.credited_emails(start=start, end=end).subquery("credited_emails")
    earned = (select(*group, func.sum(credited.c.upgrades),
                     func.coalesce(func.sum(credited.c.revenue), 0))
              .select_from(credited).join(Delivery, Delivery.id == credited.c.delivery_id)
              .where(tested).group_by(*group))
    for *values, upgrades, revenue in db.session.execute(earned):
        row = numbers(values)
        row.upgrades = int(upgrades)
        row.revenue = Decimal(str(revenue or 0)).quantize(MONEY_PLACES)
    return found


def broadcast_subjects(rows: list[Broadcast]) -> dict[int, list[SubjectNumbers]]:
    """The numbers of each subject of these broadcasts' subject tests, by broadcast id
    (every subject listed, zeros until it is sent; none for a broadcast of one subject)."""
    tested = [row for row in rows if row.subjects]
    if not tested:
        return {}
    counted = by_subject((Delivery.broadcast_id,),
                         Delivery.broadcast_id.in_([row.id for row in tested]))
    return {row.id: _listed(row.subjects, row.winner,
                            {key[1]: n for key, n in counted.items() if key[0] == row.id})
            for row in tested}


def step_subjects(start: datetime | None = None, end: datetime | None = None, *,
                  sequence: str | None = None,
                  step: str | None = None) -> dict[tuple[str, str], list[SubjectNumbers]]:
    """The numbers of each subject of the sequence steps (of `sequence`, its `step`,
    when given) that had a subject test, by (sequence, step); the subjects' text from
    the step files as they are now."""
    condition = Delivery.broadcast_id.is_(None)
    if sequence is not None:
        condition &= Delivery.sequence == sequence
    if step is not None:
        condition &= Delivery.step == step
    counted = by_subject((Delivery.sequence, Delivery.step), condition, start, end)
    grouped: dict[tuple[str, str], dict[int, SubjectNumbers]] = {}
    for (sequence, step, index), numbers in counted.items():
        grouped.setdefault((sequence, step), {})[index] = numbers
    library = Library.current()
    result = {}
    for (name, key), numbers in sorted(grouped.items()):
        folder = library.get(name) if name in library.names() else None
        found = folder.step(key) if folder is not None else None
        result[(name, key)] = _listed(found.subjects if found is not None else [], None,
                                      numbers)
    return result


def _listed(subjects: list[str], winner: int | None,
            counted: dict[int, SubjectNumbers]) -> list[SubjectNumbers]:
    """One row per subject written (zeros when none was sent yet) and per subject
    index found beyond them (a file that lost a subject since)."""
    rows = []
    for index in sorted(set(range(len(subjects))) | set(counted)):
        row = counted.get(index) or SubjectNumbers(index)
        row.subject = subjects[index] if index < len(subjects) else ""
        row.winner = index == winner
        rows.append(row)
    return rows
