"""What each lead and each visitor adds to the report rollups (its share), read from its rows.

Here too: the columns of the rollup rows (COUNT_FIELDS, LEAD_FIRSTS, …) and `Totals`,
the changes to both tables that a fold collects before writing them. The tables, and
how they stay exact: `capture.numbers.rollups`. A lead's share is kept (rollup_leads)
so that its next fold can take it back before adding the new one; a visitor's is
recomputed from its visits.
"""

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from decimal import Decimal

from sqlalchemy import select, true
from sqlalchemy.engine import Connection

from capture.models import Delivery, Event, Lead, Optin, Upgrade, Visit

# leads counts people (the leads that opted in), where their first opt-in came from;
# optins counts every opt-in, the first and the later ones on other pages, each where
# it came from; approved, rejected, pending and confirmed count opt-ins too (a payout
# is per opt-in). imported counts the leads an import created, and imported_approved,
# imported_upgrade_cents their part of approved and upgrade_cents (new fields go last:
# the shares kept in rollup_leads name fields by position).
COUNT_FIELDS = ("leads", "approved", "rejected", "pending", "confirmed", "duplicates",
                "opens_raw", "clicks_raw", "upgrades", "upgrade_cents", "imported",
                "imported_approved", "imported_upgrade_cents", "optins")
_FIELD = {name: index for index, name in enumerate(COUNT_FIELDS)}
LEAD_FIRSTS = ("delivered", "opened", "clicked", "unsubscribed")
DIMENSIONS = ("source", "campaign", "ref")
# rollup_firsts.page_id of the visitor rows that count every page together.
ALL_PAGES = 0
_EVENT_KINDS = ("open", "click", "unsubscribe", "duplicate")


# --- one lead's and one visitor's share ---------------------------------------------

def lead_share(lead, events: Iterable, sent: Iterable, upgrades: Iterable,
               optins: Iterable = ()) -> dict:
    """What one lead adds to the rollups, as JSON-ready lists (days as ordinals).

    lead: (id, created_at, page_id, utm_source, utm_campaign, ref, review, confirmed_at,
    imported);
    events: (lead_id, kind, created_at, machine, page_id, data) of the counted kinds;
    sent: (lead_id, sent_at, …) of its sent deliveries; upgrades: (lead_id, created_at,
    amount); optins: (lead_id, created_at, page_id, utm_source, utm_campaign, ref,
    review) of its later opt-ins (the first one is the lead's own row)."""
    counts: Counter = Counter()
    elsewhere: Counter = Counter()
    days: dict[str, set[int]] = {name: set() for name in LEAD_FIRSTS}
    day = lead.created_at.toordinal()
    counts[(day, _FIELD["imported" if lead.imported else "leads"])] += 1
    if not lead.imported:
        counts[(day, _FIELD["optins"])] += 1
    if lead.review in ("approved", "rejected", "pending"):
        counts[(day, _FIELD[lead.review])] += 1
        if lead.imported and lead.review == "approved":
            counts[(day, _FIELD["imported_approved"])] += 1
    if lead.confirmed_at is not None:
        counts[(day, _FIELD["confirmed"])] += 1
    later: Counter = Counter()
    for _, created_at, page_id, source, campaign, ref, review in optins:
        where = (created_at.toordinal(), page_id, _text(source), _text(campaign), _text(ref))
        later[(*where, _FIELD["optins"])] += 1
        if review in ("approved", "rejected", "pending"):
            later[(*where, _FIELD[review])] += 1
        if lead.confirmed_at is not None:
            later[(*where, _FIELD["confirmed"])] += 1
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
    share = {"a": [lead.page_id, lead.utm_source, lead.utm_campaign, lead.ref],
             "c": [[d, f, n] for (d, f), n in sorted(counts.items()) if n],
             "d": [[*key, n] for key, n in elsewhere.items()],
             "f": firsts}
    if later:
        # Where each later opt-in came from: [day, page, source, campaign, ref, field, n].
        share["o"] = [[*key, n] for key, n in sorted(later.items(), key=repr)]
    return share


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
        for day, where, source, campaign, ref, field, number in share.get("o", ()):
            for dimension, value in zip(DIMENSIONS, (source, campaign, ref), strict=True):
                self._count((day, where, dimension, value))[field] += sign * number
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

def lead_streams(connection: Connection, lead_ids: list[int] | None) -> Iterator:
    """(lead, events, sent, upgrades, later opt-ins) per lead, in lead id order: of the
    given leads, or of every lead (five ordered queries merged).

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
        connection.execute(only(
            select(Optin.lead_id, Optin.created_at, Optin.page_id, Optin.utm_source,
                   Optin.utm_campaign, Optin.ref, Optin.review, Optin.first, Optin.imported),
            Optin.lead_id, Optin.first.is_(False)).order_by(Optin.lead_id, Optin.id)),
    ]
    wanted = [lambda row: row.kind in _EVENT_KINDS, lambda row: row.status == "sent",
              lambda row: True, lambda row: not row.first and not row.imported]
    pending = [next(stream, None) for stream in streams]
    for lead in leads:
        groups: list[list] = [[], [], [], []]
        for index, stream in enumerate(streams):
            row = pending[index]
            while row is not None and row[0] < lead.id:
                row = next(stream, None)  # a row whose lead is gone meanwhile
            while row is not None and row[0] == lead.id:
                if wanted[index](row):
                    groups[index].append(row)
                row = next(stream, None)
            pending[index] = row
        groups[3] = [row[:7] for row in groups[3]]
        yield lead, *groups


def visitor_rows(connection: Connection, visitor_ids: list[str] | None,
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
