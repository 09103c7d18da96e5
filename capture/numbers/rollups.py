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
found by id (one high-water mark per table: visits, leads, events, upgrades and
deliveries); deliveries not yet sent are remembered (rollup_unsent) and folded again once
sent; changes in place that the ORM flushes (a review, a confirmation, a deletion) put the
lead's id into rollup_queue in the same transaction (`_note_changes`). A lead's share is
recomputed from its rows and the share it added before (kept in rollup_leads) is taken
back, so approving, rejecting, deleting or upgrading a lead later moves its numbers.
Visits are only ever inserted: a visitor's share is recomputed from its visits.

A fold holds the write lock (SQLite) or a SHARE ROW EXCLUSIVE lock on the source tables
(PostgreSQL, so that no insert with a lower id commits after it): writes wait for it.
When it cannot get the lock soon (500 ms on PostgreSQL, the busy timeout on SQLite),
`metrics.report` counts the rows instead, exact but slow.
A deleted page (its visits go with it) asks for a full rebuild (`rebuild()`).
"""

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from datetime import date
from decimal import Decimal

from sqlalchemy import bindparam, delete, event, func, insert, inspect, select, text, true, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from capture.models import (
    Delivery,
    Event,
    Lead,
    Page,
    RollupCount,
    RollupFirst,
    RollupLead,
    RollupQueue,
    RollupState,
    RollupUnsent,
    Upgrade,
    Visit,
)

# leads counts opt-ins; imported the leads an import created, and imported_approved,
# imported_upgrade_cents their part of approved and upgrade_cents (new fields go last:
# the shares kept in rollup_leads name fields by position).
COUNT_FIELDS = ("leads", "approved", "rejected", "pending", "confirmed", "duplicates",
                "opens_raw", "clicks_raw", "upgrades", "upgrade_cents", "imported",
                "imported_approved", "imported_upgrade_cents")
_FIELD = {name: index for index, name in enumerate(COUNT_FIELDS)}
LEAD_FIRSTS = ("delivered", "opened", "clicked", "unsubscribed")
DIMENSIONS = ("source", "campaign", "ref")
# rollup_firsts.page_id of the visitor rows that count every page together.
ALL_PAGES = 0
# The tables whose new rows a fold reads, by their high-water mark's name.
SOURCES = {"visits": Visit, "leads": Lead, "events": Event, "upgrades": Upgrade,
           "deliveries": Delivery}
_EVENT_KINDS = ("open", "click", "unsubscribe", "duplicate")
_CHUNK = 500
# Most new ids of each table one fold transaction reads (a backlog takes several).
FOLD_ROWS = 20_000
# Lead columns whose change moves the lead's numbers (their rows are found by id).
_LEAD_COLUMNS = ("review", "confirmed_at", "page_id", "created_at", "utm_source",
                 "utm_campaign", "ref", "imported")


# --- one lead's and one visitor's share ---------------------------------------------

def lead_share(lead, events: Iterable, sent: Iterable, upgrades: Iterable) -> dict:
    """What one lead adds to the rollups, as JSON-ready lists (days as ordinals).

    lead: (id, created_at, page_id, utm_source, utm_campaign, ref, review, confirmed_at,
    imported);
    events: (lead_id, kind, created_at, machine, page_id, data) of the counted kinds;
    sent: (lead_id, sent_at, …) of its sent deliveries; upgrades: (lead_id, created_at,
    amount)."""
    counts: Counter = Counter()
    elsewhere: Counter = Counter()
    days: dict[str, set[int]] = {name: set() for name in LEAD_FIRSTS}
    day = lead.created_at.toordinal()
    counts[(day, _FIELD["imported" if lead.imported else "leads"])] += 1
    if lead.review in ("approved", "rejected", "pending"):
        counts[(day, _FIELD[lead.review])] += 1
        if lead.imported and lead.review == "approved":
            counts[(day, _FIELD["imported_approved"])] += 1
    if lead.confirmed_at is not None:
        counts[(day, _FIELD["confirmed"])] += 1
    for _, kind, created_at, machine, page_id, data in events:
        day = created_at.toordinal()
        if kind == "duplicate":
            data = data or {}
            elsewhere[(day, page_id, _text(data.get("utm_source")),
                       _text(data.get("utm_campaign")), _text(data.get("ref")))] += 1
        elif kind == "unsubscribe":
            days["unsubscribed"].add(day)
        else:
            counts[(day, _FIELD["opens_raw" if kind == "open" else "clicks_raw"])] += 1
            if not machine:
                days["opened" if kind == "open" else "clicked"].add(day)
    for _, sent_at, *_ in sent:
        if sent_at is not None:
            days["delivered"].add(sent_at.toordinal())
    for _, created_at, amount in upgrades:
        day = created_at.toordinal()
        counts[(day, _FIELD["upgrades"])] += 1
        counts[(day, _FIELD["upgrade_cents"])] += _cents(amount)
        if lead.imported:
            counts[(day, _FIELD["imported_upgrade_cents"])] += _cents(amount)
    firsts = []
    for index, name in enumerate(LEAD_FIRSTS):
        previous = None
        for day in sorted(days[name]):
            firsts.append([index, day, previous])
            previous = day
    return {"a": [lead.page_id, lead.utm_source, lead.utm_campaign, lead.ref],
            "c": [[d, f, n] for (d, f), n in sorted(counts.items()) if n],
            "d": [[*key, n] for key, n in elsewhere.items()],
            "f": firsts}


def visitor_firsts(visits: Iterable) -> Counter:
    """The rollup_firsts rows of one visitor: visits are (page_id, utm_source,
    utm_campaign, ref, day ordinal) of its views that were not a bot's."""
    groups: dict[tuple, set[int]] = defaultdict(set)
    for page_id, source, campaign, ref, day in visits:
        for scope in (ALL_PAGES, page_id):
            groups[(scope, "", None)].add(day)
            groups[(scope, "source", source)].add(day)
            groups[(scope, "campaign", campaign)].add(day)
            groups[(scope, "ref", ref)].add(day)
    rows: Counter = Counter()
    for (scope, dimension, value), days in groups.items():
        previous = None
        for day in sorted(days):
            rows[("visitors", day, previous, scope, dimension, value)] += 1
            previous = day
    return rows


def _text(value) -> str | None:
    return None if value is None else str(value)


def _cents(amount) -> int:
    return int((Decimal(str(amount)) * 100).to_integral_value())


class Totals:
    """Changes to both rollup tables, keyed as their rows (days as ordinals)."""

    def __init__(self) -> None:
        self.counts: dict[tuple, list[int]] = {}
        self.firsts: Counter = Counter()

    def add_lead(self, share: dict, sign: int = 1) -> None:
        page_id, *values = share["a"]
        for day, field, number in share["c"]:
            for dimension, value in zip(DIMENSIONS, values, strict=True):
                self._count((day, page_id, dimension, value))[field] += sign * number
        for day, where, source, campaign, ref, number in share["d"]:
            for dimension, value in zip(DIMENSIONS, (source, campaign, ref), strict=True):
                self._count((day, where, dimension, value))[_FIELD["duplicates"]] += (
                    sign * number)
        for index, day, previous in share["f"]:
            for dimension, value in zip(DIMENSIONS, values, strict=True):
                self.firsts[(LEAD_FIRSTS[index], day, previous, page_id, dimension,
                             value)] += sign

    def add_firsts(self, rows: Counter, sign: int = 1) -> None:
        for key, number in rows.items():
            self.firsts[key] += sign * number

    def _count(self, key: tuple) -> list[int]:
        vector = self.counts.get(key)
        if vector is None:
            vector = self.counts[key] = [0] * len(COUNT_FIELDS)
        return vector


# --- reading the source rows -----------------------------------------------------------

def _lead_streams(connection: Connection, lead_ids: list[int] | None) -> Iterator:
    """(lead, events, sent, upgrades) per lead, in lead id order: of the given leads,
    or of every lead (four ordered queries merged).

    For given leads the kind and status are checked here, not in SQL: the query then
    goes by the lead's index instead of scanning every open or sent delivery."""
    def only(statement, column, condition):
        if lead_ids is None:
            return statement.where(condition)
        return statement.where(column.in_(lead_ids))

    leads = connection.execute(
        select(Lead.id, Lead.created_at, Lead.page_id, Lead.utm_source, Lead.utm_campaign,
               Lead.ref, Lead.review, Lead.confirmed_at, Lead.imported)
        .where(Lead.id.in_(lead_ids) if lead_ids is not None else true())
        .order_by(Lead.id))
    streams = [
        connection.execute(only(
            select(Event.lead_id, Event.kind, Event.created_at, Event.machine, Event.page_id,
                   Event.data), Event.lead_id, Event.kind.in_(_EVENT_KINDS))
            .order_by(Event.lead_id)),
        connection.execute(only(
            select(Delivery.lead_id, Delivery.sent_at, Delivery.status),
            Delivery.lead_id, Delivery.status == "sent").order_by(Delivery.lead_id)),
        connection.execute(
            select(Upgrade.lead_id, Upgrade.created_at, Upgrade.amount)
            .where(Upgrade.lead_id.in_(lead_ids) if lead_ids is not None else true())
            .order_by(Upgrade.lead_id)),
    ]
    wanted = [lambda row: row.kind in _EVENT_KINDS, lambda row: row.status == "sent",
              lambda row: True]
    pending = [next(stream, None) for stream in streams]
    for lead in leads:
        groups: list[list] = [[], [], []]
        for index, stream in enumerate(streams):
            row = pending[index]
            while row is not None and row[0] < lead.id:
                row = next(stream, None)  # a row whose lead is gone meanwhile
            while row is not None and row[0] == lead.id:
                if wanted[index](row):
                    groups[index].append(row)
                row = next(stream, None)
            pending[index] = row
        yield lead, *groups


def _visitor_rows(connection: Connection, visitor_ids: list[str] | None,
                  up_to: int) -> Iterator[tuple[str, list[tuple]]]:
    """(visitor id, [(id, page_id, source, campaign, ref, day ordinal)]) per visitor, for
    the visits (not bots) up to id `up_to`."""
    statement = (select(Visit.visitor_id, Visit.id, Visit.page_id, Visit.utm_source,
                        Visit.utm_campaign, Visit.ref, Visit.created_at)
                 .where(Visit.is_bot.is_(False), Visit.id <= up_to)
                 .order_by(Visit.visitor_id))
    if visitor_ids is not None:
        statement = statement.where(Visit.visitor_id.in_(visitor_ids))
    current, rows = None, []
    for visitor_id, *row, created_at in connection.execute(statement):
        if visitor_id != current:
            if rows:
                yield current, rows
            current, rows = visitor_id, []
        rows.append((*row, created_at.toordinal()))
    if rows:
        yield current, rows


# --- writing the rollups ----------------------------------------------------------------

def _as_date(day: int | None) -> date | None:
    return None if day is None else date.fromordinal(day)


def _count_values(key: tuple, vector: list[int]) -> dict:
    day, page_id, dimension, value = key
    return {"day": _as_date(day), "page_id": page_id, "dimension": dimension, "value": value,
            **dict(zip(COUNT_FIELDS, vector, strict=True))}


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


def _apply(connection: Connection, totals: Totals) -> None:
    """Add the changes to the rows of the days they touch."""
    counts = {key: vector for key, vector in totals.counts.items() if any(vector)}
    firsts = {key: number for key, number in totals.firsts.items() if number}
    table = RollupCount.__table__
    days = sorted({_as_date(key[0]) for key in counts})
    existing = {}
    for chunk in _chunks(days, _CHUNK):
        for row in connection.execute(select(table).where(table.c.day.in_(chunk))):
            key = (row.day.toordinal(), row.page_id, row.dimension, row.value)
            existing[key] = (row.id, [getattr(row, name) for name in COUNT_FIELDS])
    new_rows, changed, gone = [], [], []
    for key, change in counts.items():
        if key not in existing:
            new_rows.append(_count_values(key, change))
            continue
        row_id, vector = existing[key]
        vector = [a + b for a, b in zip(vector, change, strict=True)]
        if any(vector):
            changed.append({"row_id": row_id, **dict(zip(COUNT_FIELDS, vector, strict=True))})
        else:
            gone.append(row_id)
    if changed:
        connection.execute(update(table).where(table.c.id == bindparam("row_id"))
                           .values({name: bindparam(name) for name in COUNT_FIELDS}), changed)
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
                         ("upgrades", Upgrade.lead_id), ("deliveries", Delivery.lead_id)):
        model = SOURCES[name]
        if upto[name] > marks[name]:
            dirty.update(connection.execute(
                select(column).distinct()
                .where(model.id > marks[name], model.id <= upto[name])).scalars())
    dirty.update(row.lead_id for row in connection.execute(_newly_sent()))
    totals = Totals()
    _fold_leads(connection, sorted(dirty), totals)
    _fold_visitors(connection, marks["visits"], upto["visits"], totals)
    _apply(connection, totals)
    connection.execute(delete(RollupQueue).where(RollupQueue.id <= tops["queue"]))
    _save_state(connection, upto)


def _fold_leads(connection: Connection, lead_ids: list[int], totals: Totals) -> None:
    """Take back what these leads added at the last fold; add what they add now."""
    for chunk in _chunks(lead_ids, _CHUNK):
        for (share,) in connection.execute(select(RollupLead.parts)
                                           .where(RollupLead.lead_id.in_(chunk))):
            totals.add_lead(json.loads(share), -1)
        connection.execute(delete(RollupLead).where(RollupLead.lead_id.in_(chunk)))
        connection.execute(delete(RollupUnsent).where(RollupUnsent.lead_id.in_(chunk)))
        shares = []
        for lead, events, sent, upgrades in _lead_streams(connection, chunk):
            share = lead_share(lead, events, sent, upgrades)
            totals.add_lead(share)
            shares.append({"lead_id": lead.id, "parts": json.dumps(share, separators=(",", ":"))})
        _insert_all(connection, RollupLead.__table__, shares)
        unsent = connection.execute(
            select(Delivery.id, Delivery.lead_id)
            .where(Delivery.lead_id.in_(chunk), Delivery.status != "sent")).all()
        _insert_all(connection, RollupUnsent.__table__,
                    ({"delivery_id": row.id, "lead_id": row.lead_id} for row in unsent))


def _fold_visitors(connection: Connection, mark: int, top: int, totals: Totals) -> None:
    """Recompute the visitors that have new visits: before and after them."""
    if top <= mark:
        return
    visitors = sorted(set(connection.execute(
        select(Visit.visitor_id).where(Visit.id > mark, Visit.id <= top,
                                       Visit.is_bot.is_(False))).scalars()))
    for chunk in _chunks(visitors, _CHUNK):
        for _, rows in _visitor_rows(connection, chunk, top):
            totals.add_firsts(visitor_firsts(row[1:] for row in rows if row[0] <= mark), -1)
            totals.add_firsts(visitor_firsts(row[1:] for row in rows))


def _rebuild(connection: Connection, tops: dict[str, int]) -> None:
    """Every rollup again from every row (inside the caller's locked transaction)."""
    for model in (RollupCount, RollupFirst, RollupLead, RollupUnsent, RollupQueue):
        connection.execute(delete(model))
    totals = Totals()
    batch = []
    for lead, events, sent, upgrades in _lead_streams(connection, None):
        share = lead_share(lead, events, sent, upgrades)
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
    for _, rows in _visitor_rows(connection, None, tops["visits"]):
        totals.add_firsts(visitor_firsts(row[1:] for row in rows))
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


# --- changes in place, noted in the transaction that makes them ----------------------------

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
        elif isinstance(obj, Event | Upgrade) and _changed(
                obj, [c.key for c in inspect(type(obj)).column_attrs]):
            lead_ids.add(obj.lead_id)
        elif isinstance(obj, Visit) and _changed(
                obj, [c.key for c in inspect(Visit).column_attrs]):
            lead_ids.add(None)
    for obj in session.deleted:
        if isinstance(obj, Lead):
            lead_ids.add(obj.id)
        elif isinstance(obj, Event | Delivery | Upgrade):
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
    for name, model in SOURCES.items():
        highest = select(func.coalesce(func.max(model.id), 0)).scalar_subquery()
        connection.execute(update(RollupState)
                           .where(RollupState.name == name, RollupState.value > highest)
                           .values(value=highest))


event.listen(Session, "after_flush", _note_changes)
