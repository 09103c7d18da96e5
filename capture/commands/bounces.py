"""The `flask --app wsgi bounces …` commands: read the bounce mailbox now."""

import click
from flask.cli import AppGroup

from capture.mail import mailbox

bounces_cli = AppGroup("bounces", help="Read the bounce mailbox.")


@bounces_cli.command("fetch")
def fetch_command() -> None:
    """Read CAPTURE_BOUNCE_MAILBOX once, as the scheduler does: act on the bounces
    and complaints, move them to Processed, and print what was handled and what was
    left in place; exit 1 when the mailbox cannot be read."""
    try:
        done = mailbox.fetch()
    except mailbox.MailboxError as error:
        raise click.ClickException(f"bounce mailbox not read: {error}") from None
    if done is None:
        raise click.ClickException("CAPTURE_BOUNCE_MAILBOX is not set: there is no "
                                   "mailbox to read")
    click.echo(done.line())
