"""The `flask --app wsgi rollups …` commands: rebuild the report rollups."""

import time

import click
from flask.cli import AppGroup
from sqlalchemy.exc import OperationalError

from capture.db import db
from capture.numbers import rollups

rollups_cli = AppGroup("rollups", help="The per-day tables the reports read.")


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
