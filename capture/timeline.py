"""The per-lead timeline: one event per thing that happened to a lead."""

from typing import Any

from sqlalchemy import insert

from capture import clock
from capture.extensions import db
from capture.models import Event, Lead


def record_event(lead: Lead, kind: str, page_id: int | None = None, *,
                 delivery_id: int | None = None, machine: bool = False,
                 **data: Any) -> Event:
    """Add one entry to the lead's timeline (committed by the caller)."""
    event = Event(lead_id=lead.id, page_id=page_id or lead.page_id, kind=kind,
                  delivery_id=delivery_id, machine=machine, data=data)
    db.session.add(event)
    return event


def insert_event(lead_id: int, page_id: int | None, kind: str, *,
                 delivery_id: int | None = None, machine: bool = False,
                 **data: Any) -> None:
    """`record_event` as one plain INSERT by the lead's ids, for the hot paths (the
    open pixel, clicks, the send of each email): no ORM load, no unit of work."""
    db.session.connection().execute(_INSERT_EVENT, {
        "lead_id": lead_id, "page_id": page_id, "kind": kind, "delivery_id": delivery_id,
        "machine": machine, "data": data, "created_at": clock.utcnow(),
    })


_INSERT_EVENT = insert(Event.__table__)
