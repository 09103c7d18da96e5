"""Ad spend: the cost rows (day, source, campaign, page, amount, currency), how they are
checked and saved (a row for the same day, source, campaign and page replaces the
earlier one, so importing a file again is safe), read from CSV, and summed for the
reports (`spend_by`), which derive cost per lead, profit and ROI from it
(`capture.numbers.figures`).

Money is never converted: a row's currency must be its page's, or for a row of no
page the one currency all pages share; anything else is refused with the reason.
"""

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import delete, func, select

from capture.db import db
from capture.models import Cost, Page

COLUMNS = ("date", "source", "campaign", "page", "amount", "currency")
NONE = "(none)"
MAX_TEXT = 200
MAX_AMOUNT = Decimal("999999999999.99")
# Ids per DELETE … IN (well under SQLite's limit of bound values).
_CHUNK = 500


@dataclass(frozen=True)
class CostRow:
    """One checked row, ready to save."""

    day: date
    source: str
    campaign: str
    page_id: int | None
    amount: Decimal
    currency: str


@dataclass
class Checked:
    """Rows read from a file or a request: the good ones and one message per bad one
    ("line 3: amount: …")."""

    rows: list[CostRow] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class Pages:
    """The pages' ids and currencies by slug, and the site's currency (the one all
    pages share, else None), read once per batch of rows."""

    def __init__(self) -> None:
        self.by_slug = {slug: (page_id, currency) for page_id, slug, currency in
                        db.session.execute(select(Page.id, Page.slug, Page.currency))}
        currencies = {currency for _, currency in self.by_slug.values()}
        self.site_currency = currencies.pop() if len(currencies) == 1 else None


def check_row(values: dict[str, Any], pages: Pages) -> tuple[CostRow | None, list[str]]:
    """One row from its values (strings from CSV or JSON values): the row, or the
    problems, each naming its column."""
    problems: list[str] = []
    day = _day(values.get("date"), problems)
    source = _text(values, "source", problems)
    campaign = _text(values, "campaign", problems)
    slug = _text(values, "page", problems)
    page_id, page_currency = None, pages.site_currency
    if slug:
        if slug not in pages.by_slug:
            problems.append(f"page: no page with slug {slug!r}")
        else:
            page_id, page_currency = pages.by_slug[slug]
    amount = _amount(values.get("amount"), problems)
    currency = str(values.get("currency") or "").strip().upper()
    if not currency:
        problems.append("currency: required, an ISO 4217 code like USD")
    elif len(currency) != 3 or not currency.isalpha():
        problems.append(f"currency: {currency[:10]!r} is no ISO 4217 code like USD")
    elif slug and page_id is not None and currency != page_currency:
        problems.append(f"currency: {currency} is not the page's currency ({page_currency}); "
                        "Capture converts nothing")
    elif not slug and page_currency is None:
        problems.append("page: required while your pages use different currencies (or "
                        "there is no page yet): spend must be in its page's currency")
    elif not slug and currency != page_currency:
        problems.append(f"currency: {currency} is not your pages' currency "
                        f"({page_currency}); Capture converts nothing")
    if problems:
        return None, problems
    return CostRow(day, source, campaign, page_id, amount, currency), []


def _day(value: Any, problems: list[str]) -> date | None:
    text = str(value or "").strip()
    if not text:
        problems.append("date: required, like 2026-03-01")
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        problems.append(f"date: {text[:20]!r} is no date like 2026-03-01")
        return None


def _text(values: dict[str, Any], name: str, problems: list[str]) -> str:
    value = values.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        problems.append(f"{name}: must be text")
        return ""
    text = " ".join(value.split())
    if len(text) > MAX_TEXT:
        problems.append(f"{name}: at most {MAX_TEXT} characters")
    return "" if text == NONE else text


def _amount(value: Any, problems: list[str]) -> Decimal | None:
    if isinstance(value, bool) or value is None or str(value).strip() == "":
        problems.append("amount: required, like 120.50")
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        problems.append(f"amount: {str(value)[:20]!r} is no amount like 120.50")
        return None
    if not amount.is_finite() or amount < 0 or amount > MAX_AMOUNT:
        problems.append("amount: must be 0 or more (at most 999999999999.99)")
        return None
    if amount != amount.quantize(Decimal("0.01")):
        problems.append("amount: at most two decimals")
        return None
    return amount


def read_csv(text: str) -> Checked:
    """Check every line of a cost CSV (a header with the columns, any order; `source`,
    `campaign` and `page` may be empty or missing)."""
    checked = Checked()
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [name.strip().lower() for name in reader.fieldnames or []]
    missing = [name for name in ("date", "amount", "currency") if name not in header]
    unknown = [name for name in header if name not in COLUMNS]
    if missing or unknown:
        what = ([f"missing column {', '.join(missing)}"] if missing else []) + (
            [f"unknown column {', '.join(unknown)}"] if unknown else [])
        checked.problems.append(f"line 1: {'; '.join(what)} (columns: {', '.join(COLUMNS)})")
        return checked
    reader.fieldnames = header
    pages = Pages()
    for line, values in enumerate(reader, start=2):
        if None in values:
            checked.problems.append(f"line {line}: more cells than columns")
            continue
        if not any((value or "").strip() for value in values.values()):
            continue
        row, problems = check_row(values, pages)
        if row is None:
            checked.problems += [f"line {line}: {problem}" for problem in problems]
        else:
            checked.rows.append(row)
    if not checked.rows and not checked.problems:
        checked.problems.append("line 2: no cost rows in the file")
    return checked


def save(rows: Iterable[CostRow]) -> tuple[int, int]:
    """Save the rows, each replacing a row of the same day, source, campaign and page
    (the last one wins within the batch); the caller commits. Returns (added,
    replaced). One read of the rows of the batch's days, the replaced ones deleted
    by id and the new ones inserted together: a file of a year's spend is a few
    statements, not one per row."""
    latest = {(row.day, row.source, row.campaign, row.page_id): row for row in rows}
    if not latest:
        return 0, 0
    days = [key[0] for key in latest]
    gone, replaced_keys = [], set()
    for cost_id, *key in db.session.execute(
            select(Cost.id, Cost.day, Cost.source, Cost.campaign, Cost.page_id)
            .where(Cost.day.between(min(days), max(days)))):
        if tuple(key) in latest:
            gone.append(cost_id)
            replaced_keys.add(tuple(key))
    replaced = len(replaced_keys)
    for start in range(0, len(gone), _CHUNK):
        db.session.execute(delete(Cost).where(Cost.id.in_(gone[start:start + _CHUNK]))
                           .execution_options(synchronize_session=False))
    db.session.add_all(Cost(day=row.day, source=row.source, campaign=row.campaign,
                            page_id=row.page_id, amount=row.amount, currency=row.currency)
                       for row in latest.values())
    db.session.flush()
    return len(latest) - replaced, replaced


def listing(start: date | None = None, end: date | None = None) -> list[Cost]:
    """The cost rows of [start, end), newest day first."""
    stmt = select(Cost).order_by(Cost.day.desc(), Cost.source, Cost.campaign, Cost.id)
    if start is not None:
        stmt = stmt.where(Cost.day >= start)
    if end is not None:
        stmt = stmt.where(Cost.day < end)
    return list(db.session.scalars(stmt))


def spend_by(start: datetime | None, end: datetime | None, page_id: int | None,
             by: str | None) -> dict[str | None, Decimal]:
    """Spend of the days of the period, by the report's group names (page slug,
    source, campaign or ISO day; "(none)" for spend not tied to one; None for the
    total). By ref: nothing (spend has no ref): the total carries it."""
    if by == "ref":
        return {}
    key = {"page": Cost.page_id, "source": Cost.source, "campaign": Cost.campaign,
           "day": Cost.day}.get(by) if by else None
    stmt = select(func.coalesce(func.sum(Cost.amount), 0), *([key] if key is not None else []))
    if key is not None:
        stmt = stmt.group_by(key)
    if start is not None:
        stmt = stmt.where(Cost.day >= start.date())
    if end is not None:
        last = end.date() if end.time() == datetime.min.time() else end.date() + timedelta(1)
        stmt = stmt.where(Cost.day < last)
    if page_id is not None:
        stmt = stmt.where(Cost.page_id == page_id)
    slugs = dict(db.session.execute(select(Page.id, Page.slug)).all()) if by == "page" else {}
    totals: dict[str | None, Decimal] = {}
    for amount, *group in db.session.execute(stmt):
        name = None if key is None else _group_name(by, group[0], slugs)
        totals[name] = totals.get(name, Decimal(0)) + Decimal(amount or 0)
    return {name: amount for name, amount in totals.items() if amount or name is None}


def _group_name(by: str, value: Any, slugs: dict[int, str]) -> str:
    if by == "page":
        return slugs.get(value, NONE) if value is not None else NONE
    if by == "day":
        return value.isoformat() if isinstance(value, date) else str(value)
    return value or NONE
