"""API operations on broadcasts: the list, and one broadcast by name (state and numbers)."""

from typing import Any

from flask import request

from capture.api import bp
from capture.api.errors import ApiError
from capture.api.inputs import refuse_unknown
from capture.api.shapes import iso
from capture.mail import broadcast_actions
from capture.mail.broadcast_actions import Refused, Status
from capture.numbers.broadcasts import BroadcastNumbers, broadcast_numbers


def broadcast_json(item: Status, numbers: BroadcastNumbers | None) -> dict[str, Any]:
    """One broadcast: its state and times, the audience now (drafts and scheduled
    ones; null when its file has a problem), and its numbers (zeros before it starts)."""
    row = item.row
    audience = None
    if item.state in ("draft", "scheduled"):
        try:
            audience = broadcast_actions.audience(item.name)
        except Refused:
            audience = None
    subject = row.subject if row is not None else (item.file.subject or None)
    return {
        "name": item.name,
        "state": item.state,
        "subject": subject,
        "send_at": iso(row.send_at) if row is not None else None,
        "started_at": iso(row.started_at) if row is not None else None,
        "finished_at": iso(row.finished_at) if row is not None else None,
        "cancelled_at": iso(row.cancelled_at) if row is not None else None,
        "audience": audience,
        "file_differs": item.differs,
        "numbers": (numbers or BroadcastNumbers(0, item.name)).as_json(),
    }


def _numbers(found: list[Status]) -> dict[str, BroadcastNumbers]:
    ids = {s.row.id: s.name for s in found if s.row is not None}
    return {ids[key]: value for key, value in broadcast_numbers(list(ids)).items()}


@bp.get("/broadcasts")
def list_broadcasts():
    """Every broadcast (files and sent ones): scheduled and sending first, then
    drafts, then sent and cancelled ones."""
    refuse_unknown(request.args, set(), body=False)
    found = broadcast_actions.statuses()
    numbers = _numbers(found)
    return {"broadcasts": [broadcast_json(item, numbers.get(item.name)) for item in found]}


@bp.get("/broadcasts/<name>")
def read_broadcast(name: str):
    """One broadcast by its name (the file name without .md)."""
    refuse_unknown(request.args, set(), body=False)
    try:
        item = broadcast_actions.status(name)
    except Refused:
        raise ApiError(404, f"No broadcast named {name!r}.") from None
    return broadcast_json(item, _numbers([item]).get(name))
