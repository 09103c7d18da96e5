"""Which email earned each upgrade: the last one the lead clicked, in one SQL statement.

The rule (docs/use/numbers.md): an upgrade is credited to the email — sequence step or
broadcast — whose link the lead last clicked in the CAPTURE_ATTRIBUTION_DAYS before the
upgrade. Only a person's clicks count (`Event.machine` false: link scanners left out);
a click at the very moment of the upgrade counts; an upgrade with no such click is
credited to no email. The last click is a correlated subquery per upgrade that walks the
lead's events backwards on `ix_events_lead_created`, the same SQL on SQLite and
PostgreSQL: no Python loop over upgrades, whatever their number.
"""

from datetime import datetime

from flask import current_app
from sqlalchemy import DateTime, Integer, Select, func, literal, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.functions import FunctionElement

from capture.models import Delivery, Event, Upgrade


class days_before(FunctionElement):  # noqa: N801 - reads as the SQL function it renders
    """`moment` minus a whole number of days, in the database's own date arithmetic."""

    type = DateTime()
    name = "days_before"
    inherit_cache = True


@compiles(days_before, "sqlite")
def _days_before_sqlite(element, compiler, **kw) -> str:
    # SQLite keeps DateTime as 'YYYY-MM-DD HH:MM:SS.ffffff' text: the result has the same
    # shape (to the millisecond), so the comparison stays a text comparison.
    moment, days = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"strftime('%Y-%m-%d %H:%M:%f', {moment}, '-' || {days} || ' days')"


@compiles(days_before)
def _days_before_standard(element, compiler, **kw) -> str:
    # Standard SQL interval arithmetic: PostgreSQL's, and what str(statement) shows.
    moment, days = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"({moment} - CAST({days} AS INTEGER) * INTERVAL '1 day')"


def window_days() -> int:
    """CAPTURE_ATTRIBUTION_DAYS."""
    return int(current_app.config["ATTRIBUTION_DAYS"])


def credited(*, days: int | None = None, start: datetime | None = None,
             end: datetime | None = None) -> Select:
    """Every upgrade (made in [start, end) when given) with the email it is credited to:
    columns upgrade_id, lead_id, amount, upgraded_at, delivery_id (None: no email)."""
    days = window_days() if days is None else days
    click = aliased(Event)
    last_click = (
        select(click.delivery_id)
        .where(click.lead_id == Upgrade.lead_id,
               click.kind == "click",
               click.machine.is_(False),
               click.delivery_id.is_not(None),
               click.created_at <= Upgrade.created_at,
               click.created_at >= days_before(Upgrade.created_at,
                                               literal(days, Integer)))
        .order_by(click.created_at.desc(), click.id.desc())
        .limit(1)
        .correlate(Upgrade)
        .scalar_subquery()
    )
    stmt = select(Upgrade.id.label("upgrade_id"), Upgrade.lead_id, Upgrade.amount,
                  Upgrade.created_at.label("upgraded_at"), last_click.label("delivery_id"))
    if start is not None:
        stmt = stmt.where(Upgrade.created_at >= start)
    if end is not None:
        stmt = stmt.where(Upgrade.created_at < end)
    return stmt


def credited_emails(*, days: int | None = None, start: datetime | None = None,
                    end: datetime | None = None) -> Select:
    """The credited upgrades per email: columns delivery_id, broadcast_id, sequence,
    step, upgrades (a count) and revenue (their amounts), one row per delivery that
    earned at least one upgrade. Sum it by broadcast_id, or by (sequence, step) where
    broadcast_id is None.

    The upgrades are grouped by delivery first: a grouped subquery is worked out once,
    whereas a plain join lets SQLite walk the deliveries and work out the last click
    of every upgrade again for each of them."""
    rows = credited(days=days, start=start, end=end).subquery("credited")
    per_delivery = (select(rows.c.delivery_id, func.count().label("upgrades"),
                           func.sum(rows.c.amount).label("revenue"))
                    .where(rows.c.delivery_id.is_not(None))
                    .group_by(rows.c.delivery_id)
                    .subquery("per_delivery"))
    return (select(per_delivery.c.delivery_id, Delivery.broadcast_id, Delivery.sequence,
                   Delivery.step, per_delivery.c.upgrades, per_delivery.c.revenue)
            .join(Delivery, Delivery.id == per_delivery.c.delivery_id))
