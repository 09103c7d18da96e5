"""The `flask --app wsgi intake …` commands: the queued sign-ups (capture.leads.intake)."""

import click
from flask.cli import AppGroup

from capture.leads import intake
from capture.numbers.attention import intake_backlog
from capture.wording import counted

intake_cli = AppGroup("intake", help="The sign-ups queued for the scheduler's processor.")


@intake_cli.command("status")
def status_command() -> None:
    """Print how many sign-ups wait (and since when) and how many failed."""
    held = intake_backlog()
    since = f", the oldest since {held.oldest:%Y-%m-%d %H:%M:%S} UTC" if held.oldest else ""
    click.echo(f"{held.waiting} waiting{since}; {held.failed} failed")
    if held.error:
        click.echo(f"last error: {held.error}")


@intake_cli.command("process")
def process_command() -> None:
    """Fold in every waiting sign-up now, as the scheduler does, and print how many."""
    click.echo(intake.process().line())


@intake_cli.command("retry")
def retry_command() -> None:
    """Queue the failed sign-ups again (after fixing what failed them); the scheduler
    folds them in on its next run."""
    count = intake.retry_failed()
    click.echo(f"{counted(count, 'failed sign-up')} queued again")
