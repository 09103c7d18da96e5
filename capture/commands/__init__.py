"""The flask command groups, one module each, registered by one function."""

from flask import Flask

from capture.commands import bounces, broadcasts, costs, dkim, intake, leads, mail, owner
from capture.commands import pages
from capture.commands import report, rollups, sequences, setup, tokens, webhooks


def register(app: Flask) -> None:
    """Add every command to `flask --app wsgi …`."""
    for command in (setup.init_command, pages.pages_cli, leads.leads_cli,
                    report.report_command, owner.owner_cli, tokens.tokens_cli,
                    webhooks.webhooks_cli, rollups.rollups_cli, mail.mail_cli,
                    sequences.sequences_cli, sequences.send_due,
                    sequences.scheduler_command, broadcasts.broadcasts_cli,
                    costs.costs_cli, dkim.dkim_cli, bounces.bounces_cli, intake.intake_cli):
        app.cli.add_command(command)
