"""Every number the reports and the dashboard show, with one definition each.

- visitors: distinct visitor cookies that viewed a page (bots left out)
- leads: new people who opted in (form, embedded form, API), counted where their first
  opt-in came from; duplicates and trapped bots are not leads, nor are imported leads,
  which count apart as `imported`. For one page, and by page: the opt-ins on that page
- optins: opt-ins, a person's first and each later one on another page, each where it
  came from (a repeat on the same page is a duplicate)
- approved, rejected, pending, confirmed: opt-ins (a later opt-in has its own review;
  confirmed: of a person who confirmed their address)
- conversion rate = leads / visitors (opt-ins only: an import has no visitors)
- approval rate = approved / (approved + rejected), opt-ins and imported leads alike
- open rate = leads with at least one human open / leads delivered; click rate likewise
- bounces, complaints: leads with a `bounce` / `complaint` event (`deliverability`);
  bounce rate = bounces / leads delivered, complaint rate likewise
- payout = approved opt-ins (and imported leads) × their page's payout; revenue =
  payout + upgrade amounts (of every lead)
- earnings per visitor = revenue of the opt-ins (their payout and upgrades) / visitors
- spend: ad spend of the days of the period (`capture.numbers.spend`), by page, source,
  campaign and day (by ref: only in the total); cost per lead = spend / leads, cost per
  approved lead = spend / approved, profit = revenue − spend, ROI = profit / spend

Lead numbers (leads, approved, rejected, confirmed, payout) count the leads that opted
in during the period; activity numbers (delivered, opens, clicks, unsubscribes,
bounces, complaints, upgrades) count what happened during the period. Everything is
aggregated in SQL: from the rollups (`capture.numbers.rollups`) for whole-day periods,
from the rows otherwise (bounces and complaints always from the events).
Around the report: the dashboard's `periods`, the `ordering` of grouped rows, and the
numbers of each email: each sequence step (`sequence_steps`) and each broadcast
(`broadcasts`), with upgrades credited by last click (`attribution`).
"""

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal

from sqlalchemy import case, distinct, func, select
from sqlalchemy.exc import OperationalError

from capture.db import db
from capture.models import (
    Delivery,
    Event,
    Lead,
    Optin,
    Page,
    RollupCount,
    RollupFirst,
    Upgrade,
    Visit,
)
from capture.numbers import deliverability, rollup_shares, rollups, spend
from capture.numbers.figures import MONEY, Numbers, lead_revenue  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

DIMENSIONS = ("page", "source", "campaign", "ref", "day")
_LEAD_KEYS = {"page": "page_id", "source": "utm_source", "campaign": "utm_campaign",
              "ref": "ref"}


@dataclass
class Report:
    """The totals and, when grouped, one Numbers per group key."""

    total: Numbers
    rows: dict[str, Numbers]
    by: str | None = None


def _day(column):
    return func.date(column)


def _group_key(by: str | None, entity, time_column):
    """The SQL expression to group on for a dimension."""
    if by is None:
        return None
    if by == "day":
        return _day(time_column)
    return getattr(entity, _LEAD_KEYS[by])


def _run(stmt, key) -> dict:
    """Execute an aggregate; return {group: value} (group None when ungrouped)."""
    if key is None:
        return {None: db.session.execute(stmt).one()}
    stmt = stmt.add_columns(key).group_by(key)
    return {row[-1]: row[:-1] for row in db.session.execute(stmt)}


def in_period(stmt, column, start: datetime | None, end: datetime | None):
    """`stmt` limited to the rows whose `column` falls in [start, end) (open bounds:
    no limit)."""
    if start is not None:
        stmt = stmt.where(column >= start)
    if end is not None:
        stmt = stmt.where(column < end)
    return stmt


def report(*, start: datetime | None = None, end: datetime | None = None,
           page_id: int | None = None, by: str | None = None) -> Report:
    """The metrics for a period, optionally for one page and grouped by a dimension.

    Whole-day periods (the dashboard's, the API's) are read from the rollups, brought
    up to date first; other periods are aggregated from the rows themselves."""
    if by is not None and by not in DIMENSIONS:
        raise ValueError(f"by must be one of {', '.join(DIMENSIONS)}")
    groups = None
    if uses_rollups(start, end):
        groups = _from_rollups(start, end, page_id, by)
    if groups is None:
        groups = _from_tables(start, end, page_id, by)
    for numbers in groups.values():
        for name in MONEY:
            setattr(numbers, name, Decimal(str(getattr(numbers, name) or 0)).quantize(
                Decimal("0.01")))
    costs = spend.spend_by(start, end, page_id, by)
    failed = deliverability.counts_by(start, end, page_id, by)
    if by is None:
        total = groups.get(None, Numbers())
        total.spend = costs.get(None, Decimal("0.00"))
        total.bounces, total.complaints = failed.get(None, (0, 0))
        return Report(total=total, rows={}, by=None)
    rows = _named(groups, by)
    for name, amount in costs.items():
        rows.setdefault(name, Numbers()).spend += amount
    for name, (bounces, complaints) in _named(failed, by).items():
        numbers = rows.setdefault(name, Numbers())
        numbers.bounces, numbers.complaints = bounces, complaints
    total = report(start=start, end=end, page_id=page_id).total
    return Report(total=total, rows=dict(sorted(rows.items())), by=by)


def _named(groups: dict, by: str) -> dict:
    """{row name: value} of {group key: value}: "(none)" for no key, a page's slug."""
    rows = {("(none)" if group is None else str(group)): value
            for group, value in groups.items()}
    if by == "page":
        slugs = dict(db.session.execute(select(Page.id, Page.slug)).all())
        rows = {slugs.get(int(k), k) if k.isdigit() else k: v for k, v in rows.items()}
    return rows


def uses_rollups(start: datetime | None, end: datetime | None) -> bool:
    """Whether a period is made of whole UTC days (or open), which the rollups hold."""
    return all(bound is None or bound.time() == time() for bound in (start, end))


def _from_rollups(start: datetime | None, end: datetime | None, page_id: int | None,
                  by: str | None) -> dict | None:
    """The groups of a whole-day report from the rollups, on a connection of its own
    that first folds in what changed; None when the fold cannot run now (the tables
    are locked by a long writer), so the caller reads the rows instead."""
    with db.engine.connect() as connection:
        try:
            rollups.refresh(connection)
        except OperationalError as error:
            log.warning("report rollups not refreshed, reading the tables: %s", error)
            return None
        return _read_rollups(connection, start.date() if start else None,
                             end.date() if end else None, page_id, by)


_FIRSTS = {"delivered": "delivered", "opened": "opened", "clicked": "clicked",
           "unsubscribed": "unsubscribes"}


def _read_rollups(connection, start: date | None, end: date | None, page_id: int | None,
                  by: str | None) -> dict:
    """The groups of a report from rollup_counts and rollup_firsts (see capture.numbers.rollups):
    sums over the days of the period, the distinct counts as first occurrences."""
    groups: dict = {}
    dimension = by if by in ("source", "campaign", "ref") else "source"

    def key_of(table):
        if by is None:
            return None
        return {"page": table.c.page_id, "day": table.c.day}.get(by, table.c.value)

    def within(stmt, table, *, firsts: bool = False):
        if start is not None:
            stmt = stmt.where(table.c.day >= start)
        if end is not None:
            stmt = stmt.where(table.c.day < end)
        if firsts and by != "day":
            # A (lead or visitor, group) counts at its first day inside the period.
            earlier = table.c.prev_day.is_(None)
            stmt = stmt.where(earlier | (table.c.prev_day < start) if start else earlier)
        return stmt

    table = RollupCount.__table__
    key = key_of(table)
    columns = [table.c.page_id] + ([key] if key is not None and by != "page" else [])
    stmt = (select(*columns, *(func.sum(table.c[name]) for name in rollup_shares.COUNT_FIELDS))
            .where(table.c.dimension == dimension).group_by(*columns))
    if page_id is not None:
        stmt = stmt.where(table.c.page_id == page_id)
    payouts = dict(connection.execute(select(Page.id, Page.payout)).all())
    for row in connection.execute(within(stmt, table)):
        page, group = row[0], (row[0] if by == "page" else row[1] if key is not None else None)
        values = dict(zip(rollup_shares.COUNT_FIELDS, row[len(columns):], strict=True))
        numbers = groups.setdefault(group, Numbers())
        for name in rollup_shares.COUNT_FIELDS:
            if hasattr(numbers, name):
                setattr(numbers, name, getattr(numbers, name) + int(values[name]))
        payout = Decimal(payouts.get(page) or 0)
        numbers.upgrade_revenue += Decimal(int(values["upgrade_cents"])) / 100
        numbers.imported_upgrade_revenue += Decimal(int(values["imported_upgrade_cents"])) / 100
        numbers.payout += int(values["approved"]) * payout
        numbers.imported_payout += int(values["imported_approved"]) * payout

    table = RollupFirst.__table__
    key = key_of(table)
    columns = [table.c.metric] + ([key] if key is not None else [])
    stmt = (select(*columns, func.sum(table.c.count))
            .where(table.c.metric.in_(rollup_shares.LEAD_FIRSTS), table.c.dimension == dimension)
            .group_by(*columns))
    if page_id is not None:
        stmt = stmt.where(table.c.page_id == page_id)
    for metric, *rest in connection.execute(within(stmt, table, firsts=True)):
        numbers = groups.setdefault(rest[0] if key is not None else None, Numbers())
        setattr(numbers, _FIRSTS[metric], int(rest[-1]))

    columns = [key] if key is not None else []
    stmt = (select(*columns, func.sum(table.c.count))
            .where(table.c.metric == "visitors",
                   table.c.dimension == (dimension if by == dimension else ""))
            .group_by(*columns))
    if page_id is not None:
        stmt = stmt.where(table.c.page_id == page_id)
    elif by == "page":
        stmt = stmt.where(table.c.page_id != rollup_shares.ALL_PAGES)
    else:
        stmt = stmt.where(table.c.page_id == rollup_shares.ALL_PAGES)
    for *rest, number in connection.execute(within(stmt, table, firsts=True)):
        if number is None:  # no visitor at all (an aggregate without groups)
            continue
        groups.setdefault(rest[0] if key is not None else None, Numbers()).visitors = int(number)
    if by == "page" or page_id is not None:
        _leads_are_optins(groups)
    return groups


def _leads_are_optins(groups: dict) -> None:
    """A page's leads are the opt-ins on it (a person may have opted in on several)."""
    for numbers in groups.values():
        numbers.leads = numbers.optins


def _from_tables(start: datetime | None, end: datetime | None, page_id: int | None,
                 by: str | None) -> dict:
    """The groups of a report aggregated from the rows themselves."""
    groups: dict = {}

    def put(values: dict, *names: str) -> None:
        for group, row in values.items():
            numbers = groups.setdefault(group, Numbers())
            for name, value in zip(names, row, strict=True):
                setattr(numbers, name, value if value is not None else getattr(numbers, name))

    def add(values: dict, *names: str) -> None:
        for group, row in values.items():
            numbers = groups.setdefault(group, Numbers())
            for name, value in zip(names, row, strict=False):
                setattr(numbers, name, getattr(numbers, name) + (value or 0))

    def for_page(stmt, column):
        return stmt.where(column == page_id) if page_id is not None else stmt

    # Visitors: distinct cookies per group, bots left out.
    key = _group_key(by, Visit, Visit.created_at)
    stmt = select(func.count(distinct(Visit.visitor_id))).where(Visit.is_bot.is_(False))
    stmt = for_page(in_period(stmt, Visit.created_at, start, end), Visit.page_id)
    put(_run(stmt, key), "visitors")

    # Opt-ins of the period and their review, confirmation and payout: the first of
    # each lead is the lead's own row (its people counted apart, opt-ins and imported),
    # the later ones are rows of their own (`later`), each grouped where it came from.
    for entity, later in ((Lead, False), (Optin, True)):
        key = _group_key(by, entity, entity.created_at)
        approved = entity.review == "approved"
        stmt = select(
            func.count(case((entity.imported.is_(False), 1))),
            func.count(case((approved, 1))),
            func.count(case((entity.review == "rejected", 1))),
            func.count(case((entity.review == "pending", 1))),
            func.count(Lead.confirmed_at),
            func.coalesce(func.sum(case((approved, Page.payout), else_=0)), 0),
            func.coalesce(func.sum(case((approved & entity.imported.is_(True), Page.payout),
                                        else_=0)), 0),
            func.count(case((entity.imported.is_(True), 1))),
        ).select_from(entity)
        if later:
            stmt = stmt.join(Lead, Lead.id == Optin.lead_id).where(Optin.first.is_(False))
        stmt = stmt.outerjoin(Page, Page.id == entity.page_id)
        stmt = for_page(in_period(stmt, entity.created_at, start, end), entity.page_id)
        names = ("optins", "approved", "rejected", "pending", "confirmed", "payout",
                 "imported_payout")
        add(_run(stmt, key), *names, *(() if later else ("imported",)))
        if not later:
            for numbers in groups.values():
                numbers.leads = numbers.optins
    if by == "page" or page_id is not None:
        _leads_are_optins(groups)

    # Duplicates, grouped by where the repeat opt-in came from.
    if by in (None, "page", "day"):
        key = None if by is None else (Event.page_id if by == "page" else _day(Event.created_at))
    else:
        key = Event.data[_LEAD_KEYS[by]].as_string()
    stmt = select(func.count(Event.id)).where(Event.kind == "duplicate")
    stmt = for_page(in_period(stmt, Event.created_at, start, end), Event.page_id)
    put(_run(stmt, key), "duplicates")

    # The activity numbers below need the lead's row only to group or filter by it.
    needs_lead = page_id is not None or by not in (None, "day")

    def with_lead(stmt, column):
        return stmt.join(Lead, Lead.id == column) if needs_lead else stmt

    # Leads delivered in the period (at least one sequence email sent).
    key = _group_key(by, Lead, Delivery.sent_at)
    stmt = with_lead(select(func.count(distinct(Delivery.lead_id))), Delivery.lead_id)
    stmt = stmt.where(Delivery.status == "sent")
    stmt = for_page(in_period(stmt, Delivery.sent_at, start, end), Lead.page_id)
    put(_run(stmt, key), "delivered")

    # Opens, clicks, unsubscribes: distinct leads by people; raw counts alongside.
    key = _group_key(by, Lead, Event.created_at)
    human = Event.machine.is_(False)
    stmt = (
        select(
            func.count(distinct(case((human & (Event.kind == "open"), Event.lead_id)))),
            func.count(distinct(case((human & (Event.kind == "click"), Event.lead_id)))),
            func.count(case((Event.kind == "open", 1))),
            func.count(case((Event.kind == "click", 1))),
            func.count(distinct(case((Event.kind == "unsubscribe", Event.lead_id)))),
        )
        .where(Event.kind.in_(("open", "click", "unsubscribe")))
    )
    stmt = with_lead(stmt, Event.lead_id)
    stmt = for_page(in_period(stmt, Event.created_at, start, end), Lead.page_id)
    put(_run(stmt, key), "opened", "clicked", "opens_raw", "clicks_raw", "unsubscribes")

    # Upgrades in the period.
    key = _group_key(by, Lead, Upgrade.created_at)
    stmt = (select(func.count(Upgrade.id), func.coalesce(func.sum(Upgrade.amount), 0),
                   func.coalesce(func.sum(case((Lead.imported.is_(True), Upgrade.amount),
                                               else_=0)), 0))
            .join(Lead, Lead.id == Upgrade.lead_id))
    stmt = for_page(in_period(stmt, Upgrade.created_at, start, end), Lead.page_id)
    put(_run(stmt, key), "upgrades", "upgrade_revenue", "imported_upgrade_revenue")

    return groups


def currency_label() -> str:
    """The currency of the money numbers when every page uses the same one, else ''."""
    codes = db.session.scalars(select(Page.currency).distinct()).all()
    return codes[0] if len(codes) == 1 else ""
