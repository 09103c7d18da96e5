"""How each sequence step did: leads sent it, people who opened, clicked, unsubscribed,
bounces and complaints, and the upgrades and revenue credited to it by last click
(`capture.numbers.attribution`, the same rule as broadcasts)."""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import case, distinct, func, select

from capture.db import db
from capture.models import Delivery, Event
from capture.numbers import attribution, metrics


@dataclass
class StepNumbers:
    """How one step of a sequence did: counted per lead, people only."""

    sequence: str
    step: str
    sent: int = 0
    opened: int = 0
    clicked: int = 0
    unsubscribed: int = 0
    bounces: int = 0
    complaints: int = 0
    upgrades: int = 0
    revenue: Decimal = field(default_factory=lambda: Decimal("0.00"))

    @property
    def open_rate(self) -> float | None:
        return self.opened / self.sent if self.sent else None

    @property
    def click_rate(self) -> float | None:
        return self.clicked / self.sent if self.sent else None

    @property
    def bounce_rate(self) -> float | None:
        return self.bounces / self.sent if self.sent else None

    @property
    def complaint_rate(self) -> float | None:
        return self.complaints / self.sent if self.sent else None


def steps(*, sequence: str | None = None, start: datetime | None = None,
          end: datetime | None = None) -> list[StepNumbers]:
    """Per sequence step: leads sent it, and leads who opened, clicked, unsubscribed
    from, bounced or complained about that email (machine-made opens and clicks left
    out), with the upgrades credited to it. Within a period: what happened in it (sent,
    events, upgrades made). Broadcast emails are not steps (`capture.numbers.broadcasts`)."""
    of_steps = Delivery.broadcast_id.is_(None)
    sent = select(Delivery.sequence, Delivery.step, func.count(distinct(Delivery.lead_id)))
    sent = metrics.in_period(sent.where(Delivery.status == "sent", of_steps),
                             Delivery.sent_at, start, end)
    human = Event.machine.is_(False)

    def leads_with(condition):
        return func.count(distinct(case((condition, Event.lead_id))))

    acted = (
        select(
            Delivery.sequence,
            Delivery.step,
            leads_with(human & (Event.kind == "open")),
            leads_with(human & (Event.kind == "click")),
            leads_with(Event.kind == "unsubscribe"),
            leads_with(Event.kind == "bounce"),
            leads_with(Event.kind == "complaint"),
        )
        .join(Delivery, Delivery.id == Event.delivery_id)
        .where(Event.kind.in_(("open", "click", "unsubscribe", "bounce", "complaint")),
               of_steps)
    )
    acted = metrics.in_period(acted, Event.created_at, start, end)
    credited = attribution.credited_emails(start=start, end=end).subquery("credited_emails")
    earned = (select(credited.c.sequence, credited.c.step, func.sum(credited.c.upgrades),
                     func.coalesce(func.sum(credited.c.revenue), 0))
              .where(credited.c.broadcast_id.is_(None))
              .group_by(credited.c.sequence, credited.c.step))
    if sequence is not None:
        sent = sent.where(Delivery.sequence == sequence)
        acted = acted.where(Delivery.sequence == sequence)
        earned = earned.where(credited.c.sequence == sequence)
    rows: dict[tuple[str, str], StepNumbers] = {}
    for name, step, count in db.session.execute(sent.group_by(Delivery.sequence, Delivery.step)):
        rows[(name, step)] = StepNumbers(name, step, sent=count)
    for name, step, *values in db.session.execute(
        acted.group_by(Delivery.sequence, Delivery.step)
    ):
        numbers = rows.setdefault((name, step), StepNumbers(name, step))
        (numbers.opened, numbers.clicked, numbers.unsubscribed, numbers.bounces,
         numbers.complaints) = values
    for name, step, upgrades, revenue in db.session.execute(earned):
        numbers = rows.setdefault((name, step), StepNumbers(name, step))
        numbers.upgrades = int(upgrades)
        numbers.revenue = Decimal(str(revenue or 0)).quantize(Decimal("0.01"))
    return [rows[key] for key in sorted(rows)]
