"""API operations on broadcasts: the list, and one broadcast by name (state and numbers,
a subject test's phase and winner, the numbers per subject)."""

from typing import Any

from flask import request

from capture.api import bp
from capture.api.errors import ApiError
from capture.api.inputs import refuse_unknown
from capture.api.shapes import iso
from capture.mail import broadcast_actions, broadcast_tests
from capture.mail.broadcast_actions import Refused, Status
from capture.numbers.broadcasts import (
    BroadcastNumbers,
    SubjectNumbers,
    broadcast_numbers,
    broadcast_subjects,
)


def broadcast_json(item: Status, numbers: BroadcastNumbers | None,
                   subjects: list[SubjectNumbers] | None = None) -> dict[str, Any]:
    """One broadcast: its state and times, the audience now (drafts and scheduled
    ones; null when its file has a problem), its numbers (zeros before it starts), and
    with a subject test its subjects with their numbers and the test's settings,
    phase and winner."""
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
        "subjects": [subject.as_json() for subject in _subjects(item, subjects)],
        "test": _test_json(item),
    }


def _subjects(item: Status, counted: list[SubjectNumbers] | None) -> list[SubjectNumbers]:
    """A subject test's subjects: counted once frozen, the file's (zeros) for a draft."""
    if counted is not None:
        return counted
    if item.row is None and item.file is not None:
        return [SubjectNumbers(index, text) for index, text in enumerate(item.file.subjects)]
    return []


def _test_json(item: Status) -> dict[str, Any] | None:
    """A broadcast's `test` with where it is: phase (testing, waiting, picked; null
    before sending starts), until (when the winner is picked), winner (0-based) and
    the outcome in words."""
    row = item.row
    test = row.test if row is not None else (item.file.test if item.file else None)
    if not test:
        return None
    started = row is not None and row.started_at is not None
    return {**test, "phase": row.test_phase if started else None,
            "until": iso(row.test_until) if row is not None else None,
            "winner": row.winner if row is not None else None,
            "summary": broadcast_tests.describe(row if row is not None else item.file)}


def _numbers(found: list[Status]) -> dict[str, BroadcastNumbers]:
    ids = {s.row.id: s.name for s in found if s.row is not None}
    return {ids[key]: value for key, value in broadcast_numbers(list(ids)).items()}


def _subject_numbers(found: list[Status]) -> dict[str, list[SubjectNumbers]]:
    rows = [s.row for s in found if s.row is not None]
    counted = broadcast_subjects(rows)
    return {row.name: counted[row.id] for row in rows if row.id in counted}


@bp.get("/broadcasts")
def list_broadcasts():
    """Every broadcast (files and sent ones): scheduled and sending first, then
    drafts, then sent and cancelled ones."""
    refuse_unknown(request.args, set(), body=False)
    found = broadcast_actions.statuses()
    numbers, subjects = _numbers(found), _subject_numbers(found)
    return {"broadcasts": [broadcast_json(item, numbers.get(item.name), subjects.get(item.name))
                           for item in found]}


@bp.get("/broadcasts/<name>")
def read_broadcast(name: str):
    """One broadcast by its name (the file name without .md)."""
    refuse_unknown(request.args, set(), body=False)
    try:
        item = broadcast_actions.status(name)
    except Refused:
        raise ApiError(404, f"No broadcast named {name!r}.") from None
    return broadcast_json(item, _numbers([item]).get(name),
                          _subject_numbers([item]).get(name))
