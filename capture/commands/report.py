"""The `flask --app wsgi report` command: the metrics as a table."""

from datetime import timedelta

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from capture import clock
from capture.db import db
from capture.models import Broadcast, Page
from capture.numbers import broadcasts, metrics, sequence_steps
from capture.numbers import variants as page_tests


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _money(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _chance(value: float | None) -> str:
    """A probability; one that rounds to 0 % or 100 % but is not says so."""
    if value is not None and 0 < value < 0.0005:
        return "<0.1%"
    if value is not None and 0.9995 <= value < 1:
        return ">99.9%"
    return _percent(value)


@click.command("report")
@click.option("--page", "slug", help="Only this page.")
@click.option("--by", type=click.Choice((*metrics.DIMENSIONS, "step", "broadcast", "variant")),
              help="One row per group; 'step' gives one row per sequence step, "
                   "'broadcast' one per broadcast, 'variant' one per variant of the "
                   "page's test (with --page).")
@click.option("--days", type=click.IntRange(min=1), help="Only the last N days (default: all).")
@with_appcontext
def report_command(slug: str | None, by: str | None, days: int | None) -> None:
    """Print the metrics (visitors, leads and opt-ins, imported leads, conversion,
    approval, opens, clicks, bounce and complaint rates, revenue, ad spend, profit, ROI …)."""
    if slug and by in ("step", "broadcast"):
        raise click.ClickException(f"--by {by} counts the emails to every page's leads: "
                                   "leave out --page")
    if by == "variant" and not slug:
        raise click.ClickException("--by variant shows one page's test: add --page SLUG")
    page_id = None
    if slug:
        page_id = db.session.scalar(select(Page.id).where(Page.slug == slug))
        if page_id is None:
            raise click.ClickException(f"no page with slug {slug!r}")
    start = clock.utcnow() - timedelta(days=days) if days else None
    if by == "variant":
        _print_variants(page_tests.test_report(db.session.get(Page, page_id), start=start))
        return
    if by == "step":
        _print_steps(sequence_steps.steps(start=start), broadcasts.step_subjects(start))
        return
    if by == "broadcast":
        _print_broadcasts(start)
        return
    result = metrics.report(start=start, page_id=page_id, by=by)
    columns = ("visitors", "leads", "optins", "imported", "conv", "approved", "rejected",
               "appr", "delivered", "open", "click", "unsubs", "bounce", "complaint",
               "upgrades", "revenue",
               "per visitor", "spend", "per appr", "profit", "roi")
    click.echo(f"{by or '':<24}" + "".join(f"{c:>12}" for c in columns))
    rows = [*result.rows.items(), ("total", result.total)]
    for name, n in rows:
        epv = "-" if n.earnings_per_visitor is None else f"{n.earnings_per_visitor:.4f}"
        cells = (n.visitors, n.leads, n.optins, n.imported, _percent(n.conversion_rate),
                 n.approved, n.rejected, _percent(n.approval_rate), n.delivered,
                 _percent(n.open_rate), _percent(n.click_rate), n.unsubscribes,
                 _percent(n.bounce_rate), _percent(n.complaint_rate), n.upgrades,
                 f"{n.revenue:.2f}", epv, f"{n.spend:.2f}", _money(n.cost_per_approved_lead),
                 f"{n.profit:.2f}", _percent(n.roi))
        click.echo(f"{str(name)[:24]:<24}" + "".join(f"{str(c):>12}" for c in cells))
    total = result.total
    click.echo(f"Raw opens {total.opens_raw}, raw clicks {total.clicks_raw} (machine-made "
               f"included); duplicates {total.duplicates}; payout {total.payout:.2f}.")


def _print_steps(rows: list, subjects: dict) -> None:
    """The per-step table of `report --by step`; under a step with a subject test, a
    row per subject (`subject 1`, …) with its text at the end."""
    if not rows:
        click.echo("No sequence email sent yet.")
        return
    click.echo(f"{'sequence':<20}{'step':<20}" + "".join(
        f"{c:>12}" for c in ("sent", "opened", "open", "clicked", "click", "unsubs",
                             "bounces", "complaints", "bounce", "complaint", "upgrades",
                             "revenue")))
    for row in rows:
        cells = (row.sent, row.opened, _percent(row.open_rate), row.clicked,
                 _percent(row.click_rate), row.unsubscribed, row.bounces, row.complaints,
                 _percent(row.bounce_rate), _percent(row.complaint_rate), row.upgrades,
                 f"{row.revenue:.2f}")
        click.echo(f"{row.sequence[:19]:<20}{row.step[:19]:<20}"
                   + "".join(f"{str(c):>12}" for c in cells))
        for n in subjects.get((row.sequence, row.step), []):
            cells = (n.delivered, n.opens, _percent(n.open_rate), n.clicks,
                     _percent(n.click_rate), n.unsubscribes, n.bounces, n.complaints,
                     _percent(n.bounce_rate), _percent(n.complaint_rate), n.upgrades,
                     f"{n.revenue:.2f}")
            click.echo(f"{'':<22}{n.label:<18}" + "".join(f"{str(c):>12}" for c in cells)
                       + f"  {n.subject}")


def _print_broadcasts(start) -> None:
    """The per-broadcast table of `report --by broadcast` (see `broadcasts.started_in`);
    under a broadcast with a subject test, a row per subject, the winner marked."""
    rows = broadcasts.started_in(start)
    if not rows:
        click.echo("No broadcast sent yet.")
        return
    subjects = broadcasts.broadcast_subjects(db.session.scalars(
        select(Broadcast).where(Broadcast.id.in_([n.broadcast_id for n in rows]))).all())
    columns = ("state", "recipients", "delivered", "opens", "open", "clicks", "click",
               "unsubs", "bounces", "complaints", "bounce", "complaint", "upgrades",
               "revenue")
    click.echo(f"{'broadcast':<24}" + "".join(f"{c:>11}" for c in columns))
    for n in rows:
        cells = (n.state, n.recipients, n.delivered, n.opens, _percent(n.open_rate),
                 n.clicks, _percent(n.click_rate), n.unsubscribes, n.bounces, n.complaints,
                 _percent(n.bounce_rate), _percent(n.complaint_rate), n.upgrades,
                 f"{n.revenue:.2f}")
        click.echo(f"{n.name[:23]:<24}" + "".join(f"{str(c):>11}" for c in cells))
        for s in subjects.get(n.broadcast_id, []):
            name = s.label + (" (won)" if s.winner else "")
            cells = ("", "", s.delivered, s.opens, _percent(s.open_rate), s.clicks,
                     _percent(s.click_rate), s.unsubscribes, s.bounces, s.complaints,
                     _percent(s.bounce_rate), _percent(s.complaint_rate), s.upgrades,
                     f"{s.revenue:.2f}")
            click.echo(f"  {name:<22}" + "".join(f"{str(c):>11}" for c in cells)
                       + f"  {s.subject}")


def _print_variants(report: page_tests.TestReport) -> None:
    """The per-variant table of `report --by variant`, and its warnings."""
    columns = ("state", "share", "visitors", "leads", "conv", "approved", "rejected", "appr",
               "revenue", "per visitor", "P(best)")
    click.echo(f"{'variant':<12}" + "".join(f"{c:>12}" for c in columns))
    for n in report.rows:
        epv = "-" if n.earnings_per_visitor is None else f"{n.earnings_per_visitor:.4f}"
        cells = (n.state, _percent(n.share), n.visitors, n.leads, _percent(n.conversion_rate),
                 n.approved, n.rejected, _percent(n.approval_rate), f"{n.revenue:.2f}", epv,
                 _chance(n.probability_best))
        click.echo(f"{n.key[:12]:<12}" + "".join(f"{str(c):>12}" for c in cells))
    if not report.compared:
        click.echo("This page has had no test yet: add variants in the dashboard or the page JSON.")
    for warning in report.warnings:
        click.echo(f"Warning: {warning}")
    click.echo(f"Money in {report.currency}. P(best): the probability that the variant has "
               "the highest earnings per visitor (docs/use/pages.md, Page tests).")
