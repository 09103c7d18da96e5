"""The `flask --app wsgi mail …` commands: check the mail settings by sending, and the
sending domain's DNS records."""

from types import SimpleNamespace

import click
from email_validator import EmailNotValidError
from flask import current_app
from flask.cli import AppGroup

from capture.leads import addresses
from capture.mail import backends
from capture.mail import compose, dkim

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


@mail_cli.command("check")
@click.option("--nameserver", metavar="IP[:PORT]",
              help="Ask this nameserver instead of the system's.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="Seconds to wait for DNS.")
def check_command(nameserver: str | None, timeout: float) -> None:
    """Look up the SPF, DKIM and DMARC records of the sending domain (the
    CAPTURE_MAIL_FROM domain) and say what they hold: the DKIM record's key matches
    CAPTURE_DKIM_KEY_FILE's, differs or is missing. When DNS cannot be reached it
    says so in one line (exit 0: nothing is known, nothing is wrong)."""
    from capture.mail import dns_records  # dnspython: here, not in every web worker

    try:
        lookup = dns_records.resolver_lookup(nameserver, timeout)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--nameserver") from None
    expected = dns_records.Expected(current_app.config["MAIL_FROM_ADDRESS"].domain,
                                    dkim.configured_signer())
    for line in dns_records.warnings(expected):
        click.echo(line, err=True)
    try:
        lines = dns_records.report(expected, lookup)
    except dns_records.DnsUnreachable as error:
        click.echo(f"DNS could not be reached ({error}): nothing is known about the SPF, "
                   f"DKIM and DMARC records of {expected.from_domain}.")
        return
    click.echo(f"Sending domain: {expected.from_domain}")
    for line in lines:
        click.echo(line)
