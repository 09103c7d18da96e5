"""How each sequence step did: leads sent it, and people who opened, clicked, unsubscribed."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, distinct, func, select

from capture.db import db
from capture.models import Delivery, Event
from capture.numbers import metrics


@dataclass
class StepNumbers:
    """How one step of a sequence did: counted per lead, people only."""

    sequence: str
    step: str
    sent: int = 0
    opened: int = 0
    clicked: int = 0
    unsubscribed: int = 0

    @property
    def open_rate(self) -> float | None:
        return self.opened / self.sent if self.sent else None

    @property
    def click_rate(self) -> float | None:
        return self.clicked / self.sent if self.sent else None


def steps(*, sequence: str | None = None, start: datetime | None = None,
          end: datetime | None = None) -> list[StepNumbers]:
    """Per sequence step: leads sent it, and leads who opened, clicked or
    unsubscribed from that email (machine-made opens and clicks left out)."""
    sent = select(Delivery.sequence, Delivery.step, func.count(distinct(Delivery.lead_id)))
    sent = metrics.in_period(sent.where(Delivery.status == "sent"), Delivery.sent_at, start, end)
    human = Event.machine.is_(False)
    acted = (
        select(
            Delivery.sequence,
            Delivery.step,
            func.count(distinct(case((human & (Event.kind == "open"), Event.lead_id)))),
            func.count(distinct(case((human & (Event.kind == "click"), Event.lead_id)))),
            func.count(distinct(case((Event.kind == "unsubscribe", Event.lead_id)))),
        )
        .join(Delivery, Delivery.id == Event.delivery_id)
        .where(Event.kind.in_(("open", "click", "unsubscribe")))
    )
    acted = metrics.in_period(acted, Event.created_at, start, end)
    if sequence is not None:
        sent = sent.where(Delivery.sequence == sequence)
        acted = acted.where(Delivery.sequence == sequence)
    rows: dict[tuple[str, str], StepNumbers] = {}
    for name, step, count in db.session.execute(sent.group_by(Delivery.sequence, Delivery.step)):
        rows[(name, step)] = StepNumbers(name, step, sent=count)
    for name, step, opened, clicked, unsubscribed in db.session.execute(
        acted.group_by(Delivery.sequence, Delivery.step)
    ):
        numbers = rows.setdefault((name, step), StepNumbers(name, step))
        numbers.opened, numbers.clicked, numbers.unsubscribed = opened, clicked, unsubscribed
    return [rows[key] for key in sorted(rows)]
