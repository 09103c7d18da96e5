"""The per-lead timeline: one event per thing that happened to a lead."""

from typing import Any

from sqlalchemy import insert

from capture import clock
from capture.db import db
from capture.models import Event, Lead


def record_event(lead: Lead, kind: str, page_id: int | None = None, *,
                 delivery_id: int | None = None, machine: bool = False,
                 **data: Any) -> Event:
    """Add one entry to the lead's timeline (committed by the caller)."""
    event = Event(lead_id=lead.id, page_id=page_id or lead.page_id, kind=kind,
                  delivery_id=delivery_id, machine=machine, data=data)
    db.session.add(event)
    return event


def event_row(lead_id: int, page_id: int | None, kind: str, *,
              delivery_id: int | None = None, machine: bool = False,
              **data: Any) -> dict[str, Any]:
    """One timeline entry as `insert_events` writes it."""
    return {"lead_id": lead_id, "page_id": page_id, "kind": kind, "delivery_id": delivery_id,
            "machine": machine, "data": data, "created_at": clock.utcnow()}


def insert_events(rows: list[dict[str, Any]], connection=None) -> None:
    """Entries made by `event_row` as one plain INSERT, in order, for the hot paths
    (the opt-in, the open pixel, clicks, the send of each email): no ORM objects, no
    unit of work (committed by the caller). On `connection`, else the session's."""
    if rows:
        (connection or db.session.connection()).execute(INSERT_EVENTS, rows)


def insert_event(lead_id: int, page_id: int | None, kind: str, *,
                 delivery_id: int | None = None, machine: bool = False,
                 **data: Any) -> None:
    """`record_event` as one plain INSERT by the lead's ids: `insert_events` of one."""
    insert_events([event_row(lead_id, page_id, kind, delivery_id=delivery_id,
                             machine=machine, **data)])


# The statement `insert_events` runs, for a caller that runs it later itself.
INSERT_EVENTS = insert(Event.__table__)
