"""The `flask --app wsgi leads …` commands: export and import leads, record an upgrade,
a person's data and erasing it."""

import json
import secrets
import sys

import click
from flask.cli import AppGroup
from sqlalchemy import select

from capture.db import db
from capture import suppression
from capture.leads import addresses, erasure, exports, intake, personal_data, upgrades
from capture.leads.imports import importer
from capture.models import Lead
from capture.wording import counted

leads_cli = AppGroup("leads", help="Import and export leads, record upgrades, give or "
                     "erase a person's data.")


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


def _lead_or_none(email: str) -> Lead | None:
    """The lead with this address (as typed), if there is one (erased leads keep no
    address)."""
    lead = db.session.scalar(select(Lead).where(Lead.email == addresses.stored_form(email)))
    return None if lead is None or erasure.is_erased(lead) else lead


@leads_cli.command("data")
@click.argument("email")
def leads_data(email: str) -> None:
    """Print everything stored about the person with EMAIL as JSON: the lead, its
    fields and consent, opt-ins, tags, timeline, emails, visits, upgrades, sequences,
    and what the intake holds. An address with no lead whose sign-ups wait or failed
    in the intake prints those alone."""
    lead = _lead_or_none(email)
    if lead is not None:
        document = personal_data.personal_data(lead)
    else:
        held = personal_data.held_by_intake(addresses.stored_form(email))
        if not held:
            raise click.ClickException(f"no lead with email {email!r}")
        document = {"lead": None, "intake": held}
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


@leads_cli.command("erase")
@click.argument("email")
def leads_erase(email: str) -> None:
    """Erase the person with EMAIL: their values go, the numbers of past reports stay
    (the rows are kept, anonymous), and the address is kept only as a keyed hash on
    the suppression list. An address with no lead whose sign-ups wait or failed in the
    intake has those deleted (and is suppressed the same way). No prompt: it is meant
    for scripts too."""
    lead = _lead_or_none(email)
    if lead is None:
        _erase_held(email)
        return
    lead_id = lead.id
    erasure.erase(lead, by="cli")
    click.echo(f"Erased lead #{lead_id}; its address is suppressed (as a keyed hash).")


def _erase_held(email: str) -> None:
    """Erase the sign-ups of an address that has no lead (yet, or because they
    failed); exit 1 with one line when there are none."""
    stored = addresses.stored_form(email)
    count = intake.forget(stored)
    if not count:
        raise click.ClickException(f"no lead with email {email!r}")
    suppression.suppress_erased(stored)
    db.session.commit()
    click.echo(f"No lead with email {email!r}: erased its {counted(count, 'sign-up')} "
               "held in the intake; its address is suppressed (as a keyed hash).")
