"""CSV export of leads, safe to open in a spreadsheet."""

import csv
import re
from collections import defaultdict
from decimal import Decimal
from collections.abc import Iterable, Iterator
from typing import TextIO

from sqlalchemy import func, select

from capture.numbers import metrics
from capture.db import db
from capture.leads.tags import tags_of
from capture.leads.queries import LeadFilters, filter_leads, opted_in_on, table_order
from capture.models import REVIEW_STATES, SUBSCRIPTION_STATES, Lead, Optin, Page, Upgrade

COLUMNS = (
    "email", "name", "page", "review", "subscription", "utm_source", "utm_medium",
    "utm_campaign", "ref", "created_at", "confirmed_at", "upgrades", "revenue", "tags",
    "pages",
)
# Between a lead's tags in its cell: the separator the import's `tags` column reads.
TAG_SEPARATOR = ";"
# Between the slugs of the pages a person opted in on (the `pages` column).
PAGE_SEPARATOR = ";"
# A spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# A spreadsheet set to another separator (";" in much of Europe) splits a cell at it,
# quotes or not: a formula character right after one would start a cell of its own.
_FORMULA_AFTER_SEPARATOR = re.compile(r"([,;\t|])(?=[=+\-@])")


def neutralize(value: object) -> str:
    """A cell's text with a quote before each formula start: at the beginning, and
    after any character a spreadsheet may take as the separator."""
    text = "" if value is None else str(value)
    text = _FORMULA_AFTER_SEPARATOR.sub(r"\1'", text)
    return "'" + text if text.startswith(_FORMULA_START) else text


def write_leads_csv(out: TextIO, *, status: str | None = None, page_slug: str | None = None,
                    filters: LeadFilters | None = None) -> int:
    """Write the header and one row per lead matching the filters; return the count.

    `status` and `page_slug` are the CLI's filters; `filters` are the dashboard table's
    (search, review, subscription, page, source, dates), whose order the rows follow.
    A page, either way, selects every person with an opt-in on it, first or later.
    Raises ValueError for an unknown status or page."""
    count = -1
    for line in csv_lines(status=status, page_slug=page_slug, filters=filters):
        out.write(line)
        count += 1
    return count


def csv_lines(*, status: str | None = None, page_slug: str | None = None,
              filters: LeadFilters | None = None) -> Iterator[str]:
    """The CSV text line by line (header first), for streaming a large export.

    Raises ValueError at once (before any line) for an unknown status or page."""
    query = _leads_query(status, page_slug, filters)
    return _lines(query)


def _leads_query(status: str | None, page_slug: str | None, filters: LeadFilters | None):
    upgrades = (
        select(
            Upgrade.lead_id,
            func.count().label("count"),
            func.sum(Upgrade.amount).label("amount"),
        )
        .group_by(Upgrade.lead_id)
        .subquery()
    )
    query = (
        select(Lead, Page.slug, Page.payout, upgrades.c.count, upgrades.c.amount)
        .outerjoin(Page, Lead.page_id == Page.id)
        .outerjoin(upgrades, upgrades.c.lead_id == Lead.id)
        # An erased lead is nobody any more: no row of an export of people.
        .where(Lead.subscription != "erased")
    )
    if filters is not None:
        query = filter_leads(query, filters).order_by(*table_order(filters))
    else:
        query = query.order_by(Lead.id)
    if status:
        if status in REVIEW_STATES:
            query = query.where(Lead.review == status)
        elif status in SUBSCRIPTION_STATES:
            query = query.where(Lead.subscription == status)
        else:
            states = ", ".join(REVIEW_STATES + SUBSCRIPTION_STATES)
            raise ValueError(f"unknown status {status!r}; use one of {states}")
    if page_slug:
        if db.session.scalar(select(Page.id).where(Page.slug == page_slug)) is None:
            raise ValueError(f"no page with slug {page_slug!r}")
        query = query.where(opted_in_on(page_slug))
    return query


class _Line:
    """A file-like object that keeps the last line the csv writer wrote."""

    text = ""

    def write(self, text: str) -> None:
        self.text = text


def _lines(query) -> Iterator[str]:
    line = _Line()
    # Every cell quoted: a separator inside a value never ends the cell.
    writer = csv.writer(line, quoting=csv.QUOTE_ALL)
    writer.writerow(COLUMNS)
    yield line.text
    # A thousand leads at a time, their tags and pages in one query each per thousand.
    for rows in db.session.execute(query.execution_options(yield_per=1000)).partitions():
        names = tags_of(row[0].id for row in rows)
        pages, later_payouts = _pages_of([row[0].id for row in rows])
        for lead, slug, payout, upgrade_count, upgrade_amount in rows:
            # The person's revenue: the first opt-in's payout and upgrades, and the
            # payout of each approved later opt-in.
            revenue = (metrics.lead_revenue(lead.review, payout, upgrade_amount)
                       + later_payouts.get(lead.id, 0))
            row = (
                lead.email, lead.name, slug, lead.review, lead.subscription, lead.utm_source,
                lead.utm_medium, lead.utm_campaign, lead.ref, lead.created_at.isoformat(),
                lead.confirmed_at.isoformat() if lead.confirmed_at else "",
                upgrade_count or 0, f"{revenue:.2f}", TAG_SEPARATOR.join(names[lead.id]),
                PAGE_SEPARATOR.join(pages[lead.id]),
            )
            writer.writerow([neutralize(value) for value in row])
            yield line.text


def _pages_of(lead_ids: Iterable[int]) -> tuple[dict[int, list[str]], dict[int, Decimal]]:
    """The slugs of the pages each lead opted in on, in opt-in order (the first
    first, as `optins.of_lead`; a deleted page's opt-in has no slug to give), and the
    payout of each lead's approved later opt-ins."""
    slugs: dict[int, list[str]] = defaultdict(list)
    later: dict[int, Decimal] = defaultdict(Decimal)
    rows = db.session.connection().execute(
        select(Optin.lead_id, Page.slug, Optin.first, Optin.review, Page.payout)
        .join(Page, Page.id == Optin.page_id)
        .where(Optin.lead_id.in_(list(lead_ids)))
        .order_by(Optin.lead_id, Optin.first.desc(), Optin.created_at, Optin.id))
    for lead_id, slug, first, review, payout in rows:
        slugs[lead_id].append(slug)
        if not first and review == "approved" and payout:
            later[lead_id] += Decimal(payout)
    return slugs, later
