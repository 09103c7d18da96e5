"""The `flask --app wsgi init` command: create or upgrade the database, add the demo."""

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import func, select

from capture.db import MIGRATIONS_DIR, db, migrations
from capture.models import Owner
from capture.pages import demo


@click.command("init")
@with_appcontext
def init_command() -> None:
    """Create or upgrade the schema, and add the demo page and sequence if missing."""
    migrations(current_app)
    from flask_migrate import upgrade

    upgrade(directory=MIGRATIONS_DIR)
    created = demo.install()
    click.echo("Database ready." + (f" Added: {', '.join(created)}." if created else ""))
    if db.session.scalar(select(func.count()).select_from(Owner)) == 0:
        click.echo("No dashboard login yet: .venv/bin/flask --app wsgi owner create YOU@EXAMPLE.COM")
