"""The `.venv/bin/flask --app wsgi broadcasts …` commands: check, list, count, preview,
send, cancel and test the broadcast files."""

import sys

import click
from email_validator import EmailNotValidError
from flask.cli import AppGroup
from sqlalchemy import select

from capture.db import db
from capture.leads import addresses
from capture.mail import backends, broadcast_actions, broadcasts, compose, subject_tests
from capture.mail.broadcast_actions import Refused
from capture.commands.sequences import echo_rendered
from capture.models import Lead
from capture.numbers.broadcasts import broadcast_numbers

broadcasts_cli = AppGroup("broadcasts", help="Check, schedule and follow one-off emails to a "
                                             "segment (files in broadcasts/).")


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


@broadcasts_cli.command("check")
def check() -> None:
    """Validate every broadcast file; print file:line: message for each problem (exit 1
    if any), and a note for each file edited after it was sent."""
    problems, notes = broadcast_actions.check()
    for line in problems + notes:
        click.echo(line)
    count = len(broadcasts.names())
    if problems:
        click.echo(f"{len(problems)} problem(s) in {count} broadcast file(s).", err=True)
        sys.exit(1)
    click.echo(f"{count} broadcast file(s), no problems.")


@broadcasts_cli.command("list")
def list_command() -> None:
    """One line per broadcast: name, state (with a subject test's phase while it
    sends), audience, sent, open and click rates (people, not machines), revenue
    credited to it; the winner of a subject test."""
    found = broadcast_actions.statuses()
    if not found:
        click.echo(f"No broadcasts yet: write one in {broadcasts.folder()}/<name>.md.")
        return
    numbers = broadcast_numbers([s.row.id for s in found if s.row is not None])
    click.echo(f"{'name':<28}{'state':<19}" + "".join(
        f"{c:>10}" for c in ("audience", "sent", "open", "click", "revenue")))
    for item in found:
        n = numbers.get(item.row.id) if item.row is not None else None
        if n is not None and item.state in ("sending", "sent", "cancelled"):
            audience = str(n.recipients)
        else:
            audience = _audience(item)
        cells = (audience, n.delivered if n else 0, _percent(n.open_rate if n else None),
                 _percent(n.click_rate if n else None), f"{n.revenue:.2f}" if n else "0.00")
        mark = " (file edited since send)" if item.differs and item.file is not None else ""
        if item.row is not None and item.row.winner is not None:
            mark += f" ({subject_tests.label(item.row.winner)} won)"
        click.echo(f"{item.name[:27]:<28}{item.label:<19}"
                   + "".join(f"{str(c):>10}" for c in cells) + mark)


def _audience(item: broadcast_actions.Status) -> str:
    try:
        return str(broadcast_actions.audience(item.name))
    except Refused:
        return "problem"


@broadcasts_cli.command("count")
@click.argument("name")
def count(name: str) -> None:
    """Print how many leads broadcast NAME would reach now (a number on the last line)."""
    try:
        number = broadcast_actions.audience(name)
    except Refused as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{name}: subscribed, unsuppressed leads in its segment now:")
    click.echo(str(number))


@broadcasts_cli.command("preview")
@click.argument("name")
@click.option("--lead", "email", help="Render for this lead instead of a sample one.")
def preview(name: str, email: str | None) -> None:
    """Print the rendered subject, text and HTML of broadcast NAME."""
    lead = None
    if email:
        lead = db.session.scalar(select(Lead).where(Lead.email == addresses.stored_form(email)))
        if lead is None:
            raise click.ClickException(f"no lead with email {email!r}")
    try:
        rendered = broadcast_actions.preview(name, lead)
    except Refused as error:
        raise click.ClickException(str(error)) from None
    echo_rendered(rendered)


@broadcasts_cli.command("send")
@click.argument("name")
@click.option("--at", "at", help="When to send: an ISO time with its offset, like "
                                 "2026-05-04T09:00+02:00 (default: the file's send_at, "
                                 "else now).")
def send(name: str, at: str | None) -> None:
    """Freeze broadcast NAME's content and schedule it (now when no time is given)."""
    when = None
    if at is not None:
        when = broadcasts.parse_time(at)
        if when is None:
            raise click.ClickException(f"--at {at!r}: use an ISO time with its offset, like "
                                       "2026-05-04T09:00+02:00")
    try:
        outcome = broadcast_actions.send(name, when)
    except Refused as error:
        for line in str(error).splitlines():
            click.echo(line, err=True)
        click.echo(f"{name}: nothing sent.", err=True)
        sys.exit(1)
    click.echo(outcome.message)


@broadcasts_cli.command("cancel")
@click.argument("name")
def cancel(name: str) -> None:
    """Stop broadcast NAME: what is not sent yet is not sent."""
    try:
        outcome = broadcast_actions.cancel(name)
    except Refused as error:
        raise click.ClickException(str(error)) from None
    click.echo(outcome.message)


@broadcasts_cli.command("test")
@click.argument("name")
@click.argument("email")
def test(name: str, email: str) -> None:
    """Send one copy of broadcast NAME to EMAIL (not counted, nothing recorded)."""
    try:
        address = addresses.normalize_email(email)
    except EmailNotValidError as error:
        raise click.ClickException(f"{email!r}: {error}") from None
    try:
        broadcast_actions.send_test(name, address)
    except Refused as error:
        raise click.ClickException(str(error)) from None
    except compose.RenderError as error:
        raise click.ClickException(f"{name}.md: template error: {error}") from None
    except backends.MailError as error:
        raise click.ClickException(f"not sent: {error}") from None
    click.echo(f"Sent a test of {name} to {address}.")
