"""The `flask --app wsgi owner …` commands: create a dashboard login, set its password."""

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from capture.access import owners
from capture.db import db
from capture.models import Owner

owner_cli = AppGroup("owner", help="Dashboard logins.")


@owner_cli.command("create")
@click.argument("email")
@click.option("--password", help="The password (prompted for, hidden, when left out).")
def owner_create(email: str, password: str | None) -> None:
    """Create a dashboard login for EMAIL."""
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        owner = owners.create_owner(email, password)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    login_url = f"{current_app.config['BASE_URL']}/admin/login"
    click.echo(f"Owner {owner.email} created. Log in at {login_url}")


@owner_cli.command("password")
@click.argument("email")
@click.option("--password", help="The new password (prompted for, hidden, when left out).")
def owner_password(email: str, password: str | None) -> None:
    """Set a new password for the dashboard login EMAIL; its sessions all end."""
    owner = db.session.scalar(select(Owner).where(Owner.email == email.strip().lower()))
    if owner is None:
        raise click.ClickException(f"no owner {email!r} (see: .venv/bin/flask --app wsgi owner create)")
    if password is None:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    try:
        owners.set_password(owner, password)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Password of {owner.email} changed; every session of it is logged out.")
