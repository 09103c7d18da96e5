"""Changes in place to a lead's numbers, queued for the next rollup fold in their transaction.

A review, a confirmation, a deletion: the lead's id goes into rollup_queue in the
transaction that makes the change, so that the next fold (`capture.numbers.rollups`)
recomputes that lead. New rows need no note: the fold finds them by id.
"""

from collections.abc import Iterable

from flask import Flask
from sqlalchemy import event, func, insert, inspect, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from capture.models import (
    Delivery,
    Event,
    Lead,
    Optin,
    Page,
    RollupQueue,
    RollupState,
    Upgrade,
    Visit,
)
from capture.numbers import rollups

# Lead columns whose change moves the lead's numbers (their rows are found by id).
_LEAD_COLUMNS = ("review", "confirmed_at", "page_id", "created_at", "utm_source",
                 "utm_campaign", "ref", "imported")


def init_app(app: Flask) -> None:
    """Note the changes of every ORM flush (`_note_changes`). The listener is on the
    Session class, for every session of the process: it is registered once, however
    many apps are made."""
    if not event.contains(Session, "after_flush", _note_changes):
        event.listen(Session, "after_flush", _note_changes)


def _changed(obj, names: Iterable[str]) -> bool:
    state = inspect(obj)
    return any(state.attrs[name].history.has_changes() for name in names)


def _note_changes(session: Session, flush_context) -> None:
    """Queue the leads whose rows this flush changed or deleted (new rows are found by
    id); a deleted page or visit asks for a rebuild."""
    lead_ids: set[int | None] = set()
    for obj in session.dirty:
        if isinstance(obj, Lead) and _changed(obj, _LEAD_COLUMNS):
            lead_ids.add(obj.id)
        elif isinstance(obj, Event | Upgrade | Optin) and _changed(
                obj, [c.key for c in inspect(type(obj)).column_attrs]):
            lead_ids.add(obj.lead_id)
        elif isinstance(obj, Visit) and _changed(
                obj, [c.key for c in inspect(Visit).column_attrs]):
            lead_ids.add(None)
    for obj in session.deleted:
        if isinstance(obj, Lead):
            lead_ids.add(obj.id)
        elif isinstance(obj, Event | Delivery | Upgrade | Optin):
            lead_ids.add(obj.lead_id)
        elif isinstance(obj, Page | Visit):
            lead_ids.add(None)
    if lead_ids:
        note_changed(session.connection(), lead_ids)
    if session.deleted and session.connection().dialect.name == "sqlite":
        _lower_marks(session.connection())


def note_changed(connection: Connection, lead_ids: Iterable[int | None]) -> None:
    """Have the next fold recompute these leads (None: rebuild everything). For a write
    that bypasses the ORM's flush and changes rows in place (a Core UPDATE of a lead's
    review, a Core DELETE): call it in the same transaction. Inserts need nothing."""
    connection.execute(insert(RollupQueue), [{"lead_id": lead_id} for lead_id in lead_ids])


def _lower_marks(connection: Connection) -> None:
    """SQLite gives a new row the highest id + 1, so after a delete of the newest rows
    an id the last fold already passed can come back: bring each mark down to the
    highest id left (the rows above it are gone, nothing is skipped)."""
    for name, model in rollups.SOURCES.items():
        highest = select(func.coalesce(func.max(model.id), 0)).scalar_subquery()
        connection.execute(update(RollupState)
                           .where(RollupState.name == name, RollupState.value > highest)
                           .values(value=highest))
