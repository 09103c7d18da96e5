"""The `flask --app wsgi mail …` commands: check the mail settings by sending."""

from types import SimpleNamespace

import click
from email_validator import EmailNotValidError
from flask import current_app
from flask.cli import AppGroup

from capture.leads import addresses
from capture.mail import backends
from capture.mail import compose

mail_cli = AppGroup("mail", help="Check the mail settings.")

TEST_SUBJECT = "Capture test email"
TEST_TEXT = ("This is a test email from Capture (flask --app wsgi mail test).\n\n"
             "It arrived, so your mail settings work.\n")
TEST_HTML = ("<p>This is a test email from Capture (<code>flask --app wsgi mail test</code>).</p>"
             "<p>It arrived, so your mail settings work.</p>")


@mail_cli.command("test")
@click.argument("address")
def test_command(address: str) -> None:
    """Send one test email to ADDRESS through the configured backend and print the
    answer (for SMTP, the server's final reply); on failure, the reason and exit 1."""
    try:
        to = addresses.normalize_email(address)
    except EmailNotValidError as error:
        raise click.ClickException(f"{address!r} is not an email address: {error}") from None
    message = compose.new_message(SimpleNamespace(name="", email=to), TEST_SUBJECT,
                                    TEST_TEXT, TEST_HTML)
    where = _backend_name()
    try:
        answer = backends.send(message)
    except backends.MailError as error:
        raise click.ClickException(f"not sent through {where}: {error}") from None
    click.echo(f"Sent to {to} through {where}: {answer}")


def _backend_name() -> str:
    """The configured backend as the owner set it: smtp names its server."""
    config = current_app.config
    if config["MAIL_BACKEND"] == "smtp":
        return f"smtp {config['SMTP_HOST']}:{config['SMTP_PORT']}"
    return config["MAIL_BACKEND"]
