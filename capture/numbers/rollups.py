"""The report rollups: per-day sums and first-occurrence counts from which
`capture.numbers.metrics` answers whole-day periods without reading every visit, lead and event.

Two tables hold the numbers (see `capture.models`):

- rollup_counts: additive numbers per (day, page, dimension, value), once for each
  dimension (source, campaign, ref), so a report grouped by one of them reads its slice
  and every other report reads the source slice;
- rollup_firsts: the distinct counts (visitors, and leads delivered, opened, clicked,
  unsubscribed). A (visitor or lead, group) with activity on days d1 < d2 < … gives one
  row per day with the day before it (`prev_day`, None for the first). The distinct count
  over [start, end) is then a plain sum: the rows of those days whose prev_day is None
  or before start (each one counted exactly once: at its first day inside the period).

How they stay exact: `refresh()` folds in what changed since the last fold, and
`metrics.report` calls it before reading, so a report is never stale (the scheduler
folds on every tick too, so that a dashboard load finds little to do). Inserted rows are
found by id (one high-water mark per table: visits, leads, events, upgrades,
deliveries and opt-ins); deliveries not yet sent are remembered (rollup_unsent) and
folded again once sent; changes in place that the ORM flushes (a review, a confirmation, a deletion) put the
lead's id into rollup_queue in the same transaction (`capture.numbers.rollup_queue`).
A lead's share is recomputed from its rows and the share it added before (kept in
rollup_leads) is taken back, so approving, rejecting, deleting or upgrading a lead later
moves its numbers. Visits are only ever inserted: a visitor's share is recomputed from
its visits. What a share holds, and how it is read from the rows:
`capture.numbers.rollup_shares`; this module folds shares into the tables.

A fold holds the write lock (SQLite) or a SHARE ROW EXCLUSIVE lock on the source tables
(PostgreSQL, so that no insert with a lower id commits after it): writes wait for it.
When it cannot get the lock soon (500 ms on PostgreSQL, the busy timeout on SQLite),
`metrics.report` counts the rows instead, exact but slow.
A deleted page (its visits go with it) asks for a full rebuild (`rebuild()`).
"""

import json
from collections.abc import Iterable, Iterator
from datetime import date

from sqlalchemy import bindparam, delete, func, insert, select, text, update
from sqlalchemy.engine import Connection

from capture.models import (
    Delivery,
    Event,
    Lead,
    Optin,
    RollupCount,
    RollupFirst,
    RollupLead,
    RollupQueue,
    RollupState,
    RollupUnsent,
    Upgrade,
    Visit,
)
from capture.numbers import rollup_shares

# The tables whose new rows a fold reads, by their high-water mark's name.
SOURCES = {"visits": Visit, "leads": Lead, "events": Event, "upgrades": Upgrade,
           "deliveries": Delivery, "optins": Optin}
_CHUNK = 500
# Most new ids of each table one fold transaction reads (a backlog takes several).
FOLD_ROWS = 20_000
# A broadcast's deliveries that wait to be sent: queued, or held until a subject
# test's winner is picked.
NOT_SENT_YET = ("queued", "held")


# --- writing the rollups ----------------------------------------------------------------

def _as_date(day: int | None) -> date | None:
    return None if day is None else date.fromordinal(day)


def _count_values(key: tuple, vector: list[int]) -> dict:
    day, page_id, dimension, value = key
    return {"day": _as_date(day), "page_id": page_id, "dimension": dimension, "value": value,
            **dict(zip(rollup_shares.COUNT_FIELDS, vector, strict=True))}


def _first_values(key: tuple, number: int) -> dict:
    metric, day, previous, page_id, dimension, value = key
    return {"metric": metric, "day": _as_date(day), "prev_day": _as_date(previous),
            "page_id": page_id, "dimension": dimension, "value": value, "count": number}


def _insert_all(connection: Connection, table, rows: Iterable[dict]) -> None:
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) >= 5000:
            connection.execute(insert(table), batch)
            batch = []
    if batch:
        connection.execute(insert(table), batch)


def _apply(connection: Connection, totals: rollup_shares.Totals) -> None:
    """Add the changes to the rows of the days they touch."""
    counts = {key: vector for key, vector in totals.counts.items() if any(vector)}
    firsts = {key: number for key, number in totals.firsts.items() if number}
    table = RollupCount.__table__
    days = sorted({_as_date(key[0]) for key in counts})
    existing = {}
    for chunk in _chunks(days, _CHUNK):
        for row in connection.execute(select(table).where(table.c.day.in_(chunk))):
            key = (row.day.toordinal(), row.page_id, row.dimension, row.value)
            existing[key] = (row.id, [getattr(row, name) for name in rollup_shares.COUNT_FIELDS])
    new_rows, changed, gone = [], [], []
    for key, change in counts.items():
        if key not in existing:
            new_rows.append(_count_values(key, change))
            continue
        row_id, vector = existing[key]
        vector = [a + b for a, b in zip(vector, change, strict=True)]
        if any(vector):
            changed.append({"row_id": row_id,
                            **dict(zip(rollup_shares.COUNT_FIELDS, vector, strict=True))})
        else:
            gone.append(row_id)
    if changed:
        connection.execute(update(table).where(table.c.id == bindparam("row_id"))
                           .values({name: bindparam(name)
                                    for name in rollup_shares.COUNT_FIELDS}), changed)
    _insert_all(connection, table, new_rows)
    for chunk in _chunks(gone, _CHUNK):
        connection.execute(delete(table).where(table.c.id.in_(chunk)))

    table = RollupFirst.__table__
    days = sorted({_as_date(key[1]) for key in firsts})
    existing = {}
    for chunk in _chunks(days, _CHUNK):
        for row in connection.execute(select(table).where(table.c.day.in_(chunk))):
            key = (row.metric, row.day.toordinal(),
                   row.prev_day.toordinal() if row.prev_day else None,
                   row.page_id, row.dimension, row.value)
            existing[key] = (row.id, row.count)
    new_rows, changed, gone = [], [], []
    for key, change in firsts.items():
        if key not in existing:
            new_rows.append(_first_values(key, change))
        elif existing[key][1] + change:
            changed.append({"row_id": existing[key][0], "number": existing[key][1] + change})
        else:
            gone.append(existing[key][0])
    if changed:
        connection.execute(update(table).where(table.c.id == bindparam("row_id"))
                           .values(count=bindparam("number")), changed)
    _insert_all(connection, table, new_rows)
    for chunk in _chunks(gone, _CHUNK):
        connection.execute(delete(table).where(table.c.id.in_(chunk)))


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# --- state, locks, folds -----------------------------------------------------------------

def _state(connection: Connection) -> dict[str, int]:
    marks = dict(connection.execute(select(RollupState.name, RollupState.value)).all())
    return {name: marks.get(name, 0) for name in SOURCES}


def _tops(connection: Connection) -> dict[str, int]:
    """The highest id of each source table, and of the queue."""
    columns = [select(func.max(model.id)).scalar_subquery().label(name)
               for name, model in (*SOURCES.items(), ("queue", RollupQueue))]
    row = connection.execute(select(*columns)).one()
    return {name: value or 0 for name, value in row._mapping.items()}


def _save_state(connection: Connection, marks: dict[str, int]) -> None:
    connection.execute(delete(RollupState))
    connection.execute(insert(RollupState), [{"name": name, "value": marks[name]}
                                             for name in SOURCES])


def _lock(connection: Connection) -> None:
    """Make this fold the only writer of the source tables until it commits."""
    if connection.dialect.name == "postgresql":
        # Shorter than deadlock_timeout (1 s): a writer waiting behind this lock is let
        # go before PostgreSQL would pick a deadlock victim; the report then counts rows.
        connection.execute(text("SET LOCAL lock_timeout = '500ms'"))
        names = ", ".join(model.__tablename__
                          for model in (*SOURCES.values(), RollupQueue, RollupState))
        connection.execute(text(f"LOCK TABLE {names} IN SHARE ROW EXCLUSIVE MODE"))
    else:
        # The first statement is a write: SQLite takes its one write lock now, and the
        # reads after it see everything committed before.
        connection.execute(update(RollupState).where(RollupState.name == "")
                           .values(value=0))


def _newly_sent():
    """The deliveries remembered as not sent that are sent now (driven from the small
    rollup_unsent, never from the deliveries)."""
    sent = (select(Delivery.id)
            .where(Delivery.id == RollupUnsent.delivery_id, Delivery.status == "sent")
            .exists())
    return select(RollupUnsent.delivery_id, RollupUnsent.lead_id).where(sent)


def behind(connection: Connection) -> bool:
    """Whether anything was written since the last fold."""
    tops = _tops(connection)
    if tops.pop("queue") or tops != _state(connection):
        return True
    return connection.execute(_newly_sent().limit(1)).first() is not None


def refresh(connection: Connection) -> bool:
    """Fold everything written since the last fold into the rollups, in transactions of
    their own on `connection` (FOLD_ROWS ids of each table at most per transaction, so
    that writers never wait long). True when something was folded."""
    folded = False
    while behind(connection):
        connection.rollback()
        with connection.begin():
            _fold_once(connection)
        folded = True
    connection.rollback()
    return folded


def _fold_once(connection: Connection) -> None:
    _lock(connection)
    marks, tops = _state(connection), _tops(connection)
    queued = connection.execute(select(RollupQueue.lead_id)
                                .where(RollupQueue.id <= tops["queue"])).scalars().all()
    if None in queued:
        _rebuild(connection, tops)
        return
    upto = {name: min(tops[name], marks[name] + FOLD_ROWS) for name in SOURCES}
    dirty = set(queued)
    for name, column in (("leads", Lead.id), ("events", Event.lead_id),
                         ("upgrades", Upgrade.lead_id), ("deliveries", Delivery.lead_id),
                         ("optins", Optin.lead_id)):
        model = SOURCES[name]
        if upto[name] > marks[name]:
            new = (model.id > marks[name], model.id <= upto[name])
            if name == "deliveries":
                new += (Delivery.status.not_in(NOT_SENT_YET),)
                _remember_queued(connection, marks[name], upto[name])
            dirty.update(connection.execute(select(column).distinct().where(*new)).scalars())
    dirty.update(row.lead_id for row in connection.execute(_newly_sent()))
    totals = rollup_shares.Totals()
    _fold_leads(connection, sorted(dirty), totals)
    _fold_visitors(connection, marks["visits"], upto["visits"], totals)
    _apply(connection, totals)
    connection.execute(delete(RollupQueue).where(RollupQueue.id <= tops["queue"]))
    _save_state(connection, upto)


def _remember_queued(connection: Connection, mark: int, upto: int) -> None:
    """A broadcast's queued emails (a million at once for a large list), and those held
    for a subject test's winner, change no lead's numbers until they are sent: they
    are remembered as unsent, to be folded then, and their leads are not folded now."""
    known = select(RollupUnsent.delivery_id).where(RollupUnsent.delivery_id == Delivery.id)
    connection.execute(insert(RollupUnsent).from_select(
        ["delivery_id", "lead_id"],
        select(Delivery.id, Delivery.lead_id).where(
            Delivery.id > mark, Delivery.id <= upto, Delivery.status.in_(NOT_SENT_YET),
            ~known.exists())))


def _fold_leads(connection: Connection, lead_ids: list[int], totals: rollup_shares.Totals) -> None:
    """Take back what these leads added at the last fold; add what they add now."""
    for chunk in _chunks(lead_ids, _CHUNK):
        for (share,) in connection.execute(select(RollupLead.parts)
                                           .where(RollupLead.lead_id.in_(chunk))):
            totals.add_lead(json.loads(share), -1)
        connection.execute(delete(RollupLead).where(RollupLead.lead_id.in_(chunk)))
        connection.execute(delete(RollupUnsent).where(RollupUnsent.lead_id.in_(chunk)))
        shares = []
        for lead, *streams in rollup_shares.lead_streams(connection, chunk):
            share = rollup_shares.lead_share(lead, *streams)
            totals.add_lead(share)
            shares.append({"lead_id": lead.id, "parts": json.dumps(share, separators=(",", ":"))})
        _insert_all(connection, RollupLead.__table__, shares)
        unsent = connection.execute(
            select(Delivery.id, Delivery.lead_id)
            .where(Delivery.lead_id.in_(chunk), Delivery.status != "sent")).all()
        _insert_all(connection, RollupUnsent.__table__,
                    ({"delivery_id": row.id, "lead_id": row.lead_id} for row in unsent))


def _fold_visitors(connection: Connection, mark: int, top: int,
                   totals: rollup_shares.Totals) -> None:
    """Recompute the visitors that have new visits: before and after them."""
    if top <= mark:
        return
    visitors = sorted(set(connection.execute(
        select(Visit.visitor_id).where(Visit.id > mark, Visit.id <= top,
                                       Visit.is_bot.is_(False))).scalars()))
    for chunk in _chunks(visitors, _CHUNK):
        for _, rows in rollup_shares.visitor_rows(connection, chunk, top):
            before = (row[1:] for row in rows if row[0] <= mark)
            totals.add_firsts(rollup_shares.visitor_firsts(before), -1)
            totals.add_firsts(rollup_shares.visitor_firsts(row[1:] for row in rows))


def _rebuild(connection: Connection, tops: dict[str, int]) -> None:
    """Every rollup again from every row (inside the caller's locked transaction)."""
    for model in (RollupCount, RollupFirst, RollupLead, RollupUnsent, RollupQueue):
        connection.execute(delete(model))
    totals = rollup_shares.Totals()
    batch = []
    for lead, *streams in rollup_shares.lead_streams(connection, None):
        share = rollup_shares.lead_share(lead, *streams)
        totals.add_lead(share)
        batch.append({"lead_id": lead.id, "parts": json.dumps(share, separators=(",", ":"))})
        if len(batch) >= 5000:
            connection.execute(insert(RollupLead), batch)
            batch = []
    if batch:
        connection.execute(insert(RollupLead), batch)
    unsent = connection.execute(select(Delivery.id, Delivery.lead_id)
                                .where(Delivery.status != "sent"))
    _insert_all(connection, RollupUnsent.__table__,
                ({"delivery_id": row.id, "lead_id": row.lead_id} for row in unsent))
    for _, rows in rollup_shares.visitor_rows(connection, None, tops["visits"]):
        totals.add_firsts(rollup_shares.visitor_firsts(row[1:] for row in rows))
    _insert_all(connection, RollupCount.__table__,
                (_count_values(key, vector) for key, vector in totals.counts.items()
                 if any(vector)))
    _insert_all(connection, RollupFirst.__table__,
                (_first_values(key, number) for key, number in totals.firsts.items()
                 if number))
    _save_state(connection, tops)


def rebuild(connection: Connection) -> None:
    """Build every rollup from scratch, in a transaction of its own on `connection`."""
    connection.rollback()
    with connection.begin():
        _lock(connection)
        fill(connection)


def fill(connection: Connection) -> None:
    """Build every rollup from scratch inside the caller's transaction (a migration,
    a bulk load that holds the database to itself)."""
    _rebuild(connection, _tops(connection))
