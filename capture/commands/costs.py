"""The `flask --app wsgi costs …` commands: import ad spend from CSV and list it."""

from datetime import timedelta
from pathlib import Path

import click
from flask.cli import AppGroup
from sqlalchemy import select

from capture import clock
from capture.db import db
from capture.models import Page
from capture.numbers import spend

costs_cli = AppGroup("costs", help="Import and list ad spend (for profit and ROI).")


@costs_cli.command("import")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("--skip-bad", is_flag=True,
              help="Import the good lines and report the bad ones (else nothing is "
                   "imported while one line is bad).")
def costs_import(file: str, skip_bad: bool) -> None:
    """Import cost rows from a CSV with the columns date, source, campaign, page,
    amount, currency. A row for the same date, source, campaign and page replaces the
    earlier one: importing a file again is safe."""
    try:
        text = Path(file).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise click.ClickException(f"{file} is not UTF-8 text: save it as UTF-8 CSV") from None
    checked = spend.read_csv(text)
    for problem in checked.problems:
        click.echo(f"{file}:{problem.removeprefix('line ')}", err=True)
    if checked.problems and (not skip_bad or not checked.rows):
        raise click.ClickException(
            f"nothing imported: {len(checked.problems)} problem(s) above"
            + ("" if skip_bad else "; fix them, or import the good lines with --skip-bad"))
    added, replaced = spend.save(checked.rows)
    db.session.commit()
    skipped = f", skipped {len(checked.problems)} bad line(s)" if checked.problems else ""
    click.echo(f"Imported {added + replaced} cost row(s): {added} added, "
               f"{replaced} replaced{skipped}.")


@costs_cli.command("list")
@click.option("--days", type=click.IntRange(min=1), default=30, show_default=True,
              help="The last N days (UTC), today included.")
def costs_list(days: int) -> None:
    """One line per cost row, newest day first: date, source, campaign, page, amount."""
    today = clock.utcnow().date()
    rows = spend.listing(today - timedelta(days=days - 1), today + timedelta(days=1))
    if not rows:
        click.echo(f"No ad spend in the last {days} days. Import some with: "
                   ".venv/bin/flask --app wsgi costs import FILE")
        return
    slugs = dict(db.session.execute(select(Page.id, Page.slug)).all())
    click.echo(f"{'date':<10}  {'source':<20} {'campaign':<20} {'page':<20} {'amount':>12}")
    for row in rows:
        click.echo(f"{row.day.isoformat():<10}  {row.source or spend.NONE:<20} "
                   f"{row.campaign or spend.NONE:<20} "
                   f"{slugs.get(row.page_id, spend.NONE):<20} {row.amount:>8.2f} {row.currency}")
    total = sum(row.amount for row in rows)
    click.echo(f"{len(rows)} row(s), {total:.2f} in total"
               + ("" if len({row.currency for row in rows}) == 1 else " (several currencies)"))
