"""The per-lead timeline: one event per thing that happened to a lead."""

from typing import Any

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
