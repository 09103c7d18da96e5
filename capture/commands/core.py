"""The flask command groups: init, pages, leads."""

import json
import secrets
import sys
import time
from datetime import timedelta

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from flask_migrate import upgrade
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from capture import clock
from capture.pages import demo
from capture.leads import upgrades
from capture.leads import exports
from capture.leads.imports import importer
from capture.leads import addresses
from capture.numbers import metrics
from capture.numbers import rollups
from capture.db import db
from capture.commands.mail import mail_cli
from capture.models import Lead, Owner, Page
from capture.pages.schema import apply_page, page_to_dict, validate_page
from capture.commands.tokens import tokens_cli
from capture.commands.webhooks import webhooks_cli

pages_cli = AppGroup("pages", help="List, export and import opt-in pages as JSON.")
leads_cli = AppGroup("leads", help="Import and export leads, record upgrades.")
owner_cli = AppGroup("owner", help="Dashboard logins.")
rollups_cli = AppGroup("rollups", help="The per-day tables the reports read.")


def init_app(app: Flask) -> None:
    """Register the commands on the app."""
    app.cli.add_command(init_command)
    app.cli.add_command(pages_cli)
    app.cli.add_command(leads_cli)
    app.cli.add_command(report_command)
    app.cli.add_command(owner_cli)
    app.cli.add_command(tokens_cli)
    app.cli.add_command(webhooks_cli)
    app.cli.add_command(rollups_cli)
    app.cli.add_command(mail_cli)


@click.command("init")
@with_appcontext
def init_command() -> None:
    """Create or upgrade the schema, and add the demo page and sequence if missing."""
    from capture import MIGRATIONS_DIR

    upgrade(directory=MIGRATIONS_DIR)
    created = demo.install()
    click.echo("Database ready." + (f" Added: {', '.join(created)}." if created else ""))
    if db.session.scalar(select(func.count()).select_from(Owner)) == 0:
        click.echo("No dashboard login yet: .venv/bin/flask --app wsgi owner create YOU@EXAMPLE.COM")


@pages_cli.command("list")
def pages_list() -> None:
    """One line per page: slug, state, review mode, sequence, leads, title."""
    counts = dict(
        db.session.execute(select(Lead.page_id, func.count()).group_by(Lead.page_id)).all()
    )
    pages = db.session.scalars(select(Page).order_by(Page.slug)).all()
    if not pages:
        click.echo("No pages yet. Import some with: .venv/bin/flask --app wsgi pages import FILE")
        return
    click.echo(f"{'slug':<24} {'state':<11} {'review':<7} {'sequence':<16} {'leads':>7}  title")
    for page in pages:
        state = "published" if page.published else "draft"
        click.echo(
            f"{page.slug:<24} {state:<11} {page.review:<7} {page.sequence or '-':<16} "
            f"{counts.get(page.id, 0):>7}  {page.title}"
        )


@pages_cli.command("export")
@click.argument("slug", required=False)
def pages_export(slug: str | None) -> None:
    """Print pages as a JSON list (all of them, or the one named SLUG)."""
    query = select(Page).order_by(Page.slug)
    if slug:
        query = query.where(Page.slug == slug)
    pages = db.session.scalars(query).all()
    if slug and not pages:
        raise click.ClickException(f"no page with slug {slug!r}")
    json.dump([page_to_dict(page) for page in pages], sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


@pages_cli.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8"))
def pages_import(file) -> None:
    """Create or update pages (matched by slug) from a JSON file ('-' for stdin).

    Every page is checked first; if any problem is found, each is printed on its own
    line and nothing is changed."""
    name = getattr(file, "name", "<stdin>")
    try:
        data = json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        _fail([f"{name}: not valid JSON: {error}"])
    items = data if isinstance(data, list) else [data]
    problems: list[str] = []
    cleaned: list[dict] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        clean, errors = validate_page(
            item,
            sequences_dir=current_app.config["SEQUENCES_DIR"],
            templates_dir=demo.page_templates_dir(),
        )
        slug = item.get("slug") if isinstance(item, dict) else None
        where = f"{name}: page {index + 1}" + (f" ({slug})" if isinstance(slug, str) else "")
        if isinstance(slug, str):
            if slug in seen:
                errors.append("slug: used by another page in this file")
            seen.add(slug)
        problems.extend(f"{where}: {error}" for error in errors)
        cleaned.append(clean)
    if problems:
        _fail(problems)

    created = updated = 0
    for clean in cleaned:
        page = db.session.scalar(select(Page).where(Page.slug == clean["slug"]))
        if page is None:
            page = Page()
            db.session.add(page)
            created += 1
        else:
            updated += 1
        apply_page(page, clean)
    db.session.commit()
    click.echo(f"Imported {len(cleaned)} page(s): {created} created, {updated} updated.")


def _fail(lines: list[str]) -> None:
    for line in lines:
        click.echo(line, err=True)
    click.echo(f"{len(lines)} problem(s); nothing was changed.", err=True)
    sys.exit(1)


@leads_cli.command("export")
@click.option("--status", help="A review state (pending, approved, rejected) or a "
              "subscription state (unconfirmed, subscribed, unsubscribed, bounced).")
@click.option("--page", "slug", help="Only leads that opted in on this page.")
def leads_export(status: str | None, slug: str | None) -> None:
    """Print leads as CSV, one row per lead."""
    try:
        exports.write_leads_csv(sys.stdout, status=status, page_slug=slug)
    except ValueError as error:
        raise click.ClickException(str(error)) from None


@leads_cli.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--page", "slug", required=True, help="The page the leads join.")
@click.option("--map", "mappings", multiple=True, metavar="COLUMN=FIELD",
              help="Map a column to a field (email, name, country, consent, consented_at, "
              "utm_*, ref or a page field); COLUMN= ignores it. Repeatable.")
@click.option("--dry-run", is_flag=True, help="Check every row and report; write nothing.")
@click.option("--encoding", default="utf-8", show_default=True, help="The file's encoding.")
@click.option("--delimiter", help="The column separator (default: guessed from the header).")
def leads_import(file: str, slug: str, mappings: tuple[str, ...], dry_run: bool,
                 encoding: str, delimiter: str | None) -> None:
    """Import the people in the CSV FILE as leads of a page, and print the report:
    every rejected row with its line and reason, then the counts."""
    def rejected(result: importer.RowResult) -> None:
        if result.outcome == "rejected":
            click.echo(f"line {result.line}: {result.detail}")

    try:
        report = importer.import_file(
            file, slug, overrides=importer.parse_map_options(mappings), dry_run=dry_run,
            encoding=encoding, delimiter=delimiter, on_row=rejected)
    except importer.UnusableFile as error:
        raise click.ClickException(str(error)) from None
    for line in report.lines():
        click.echo(line)
    if report.to_confirm and not dry_run:
        click.echo(f"Confirmation emails to send: {report.to_confirm} (by the scheduler, "
                   "within the sending rate cap).")


@leads_cli.command("upgrade")
@click.argument("email")
@click.argument("amount")
@click.option("--currency", default="USD", show_default=True, help="ISO 4217 code.")
@click.option("--txn", help="Transaction id (default: one is made up); a repeat changes nothing.")
def leads_upgrade(email: str, amount: str, currency: str, txn: str | None) -> None:
    """Record an upgrade (a purchase) by hand for the lead with EMAIL."""
    lead = db.session.scalar(select(Lead).where(Lead.email == addresses.stored_form(email)))
    if lead is None:
        raise click.ClickException(f"no lead with email {email!r}")
    try:
        value = upgrades.parse_amount(amount)
        code = upgrades.parse_currency(currency)
        upgrade, created = upgrades.record_upgrade(
            lead, value, code, txn or f"manual-{secrets.token_hex(8)}", source="manual")
    except upgrades.UpgradeError as error:
        raise click.ClickException(str(error)) from None
    if created:
        click.echo(f"Recorded {upgrade.amount} {upgrade.currency} for {lead.email}.")
    else:
        click.echo(f"Transaction {upgrade.txn} was already recorded; nothing changed.")


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


@click.command("report")
@click.option("--page", "slug", help="Only this page.")
@click.option("--by", type=click.Choice((*metrics.DIMENSIONS, "step")),
              help="One row per group; 'step' gives one row per sequence step.")
@click.option("--days", type=click.IntRange(min=1), help="Only the last N days (default: all).")
@with_appcontext
def report_command(slug: str | None, by: str | None, days: int | None) -> None:
    """Print the metrics (visitors, leads and imported leads, conversion, approval,
    opens, clicks, revenue …)."""
    page_id = None
    if slug:
        page_id = db.session.scalar(select(Page.id).where(Page.slug == slug))
        if page_id is None:
            raise click.ClickException(f"no page with slug {slug!r}")
    start = clock.utcnow() - timedelta(days=days) if days else None
    if by == "step":
        _print_steps(metrics.steps(start=start))
        return
    result = metrics.report(start=start, page_id=page_id, by=by)
    columns = ("visitors", "leads", "imported", "conv", "approved", "rejected", "appr",
               "delivered", "open", "click", "unsubs", "upgrades", "revenue", "per visitor")
    click.echo(f"{by or '':<24}" + "".join(f"{c:>12}" for c in columns))
    rows = [*result.rows.items(), ("total", result.total)]
    for name, n in rows:
        epv = "-" if n.earnings_per_visitor is None else f"{n.earnings_per_visitor:.4f}"
        cells = (n.visitors, n.leads, n.imported, _percent(n.conversion_rate), n.approved,
                 n.rejected, _percent(n.approval_rate), n.delivered, _percent(n.open_rate),
                 _percent(n.click_rate), n.unsubscribes, n.upgrades, f"{n.revenue:.2f}", epv)
        click.echo(f"{str(name)[:24]:<24}" + "".join(f"{str(c):>12}" for c in cells))
    total = result.total
    click.echo(f"Raw opens {total.opens_raw}, raw clicks {total.clicks_raw} (machine-made "
               f"included); duplicates {total.duplicates}; payout {total.payout:.2f}.")


def _print_steps(rows: list) -> None:
    """The per-step table of `report --by step`."""
    if not rows:
        click.echo("No sequence email sent yet.")
        return
    click.echo(f"{'sequence':<20}{'step':<20}" + "".join(
        f"{c:>12}" for c in ("sent", "opened", "open", "clicked", "click", "unsubs")))
    for row in rows:
        cells = (row.sent, row.opened, _percent(row.open_rate), row.clicked,
                 _percent(row.click_rate), row.unsubscribed)
        click.echo(f"{row.sequence[:19]:<20}{row.step[:19]:<20}"
                   + "".join(f"{str(c):>12}" for c in cells))


@owner_cli.command("create")
@click.argument("email")
@click.option("--password", help="The password (prompted for, hidden, when left out).")
def owner_create(email: str, password: str | None) -> None:
    """Create a dashboard login for EMAIL."""
    from capture.admin.auth import create_owner

    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        owner = create_owner(email, password)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    login_url = f"{current_app.config['BASE_URL']}/admin/login"
    click.echo(f"Owner {owner.email} created. Log in at {login_url}")


@owner_cli.command("password")
@click.argument("email")
@click.option("--password", help="The new password (prompted for, hidden, when left out).")
def owner_password(email: str, password: str | None) -> None:
    """Set a new password for the dashboard login EMAIL; its sessions all end."""
    from capture.admin.account import set_password

    owner = db.session.scalar(select(Owner).where(Owner.email == email.strip().lower()))
    if owner is None:
        raise click.ClickException(f"no owner {email!r} (see: .venv/bin/flask --app wsgi owner create)")
    if password is None:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    try:
        set_password(owner, password)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Password of {owner.email} changed; every session of it is logged out.")


@rollups_cli.command("rebuild")
def rollups_rebuild() -> None:
    """Build the report rollups again from the rows (after changing leads with plain
    SQL, say). Writers wait while it runs: about a minute at 1,000,000 leads."""
    started = time.monotonic()
    try:
        with db.engine.connect() as connection:
            rollups.rebuild(connection)
    except OperationalError as error:
        raise click.ClickException(
            "could not take the tables (another writer holds them); nothing changed, "
            f"run it again: {str(error.orig).strip().splitlines()[0]}") from None
    click.echo(f"Rebuilt the report rollups in {time.monotonic() - started:.1f} s.")
