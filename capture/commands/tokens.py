"""The `flask --app wsgi tokens …` commands: create, list and revoke API tokens."""

import click
from flask.cli import AppGroup

from capture.access import api_tokens

tokens_cli = AppGroup("tokens", help="Create, list and revoke API tokens.")


def _when(moment) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"


@tokens_cli.command("create")
@click.argument("name")
def create_command(name: str) -> None:
    """Create a token named NAME and print it (it is shown this once, never again)."""
    try:
        new = api_tokens.create(name)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Token {new.row.id} ({new.row.name}) created. Copy it now: it is not "
               "stored and cannot be shown again.", err=True)
    click.echo(new.token)


@tokens_cli.command("list")
def list_command() -> None:
    """One line per token: id, prefix, state, created, last used (UTC), name."""
    rows = api_tokens.all_tokens()
    if not rows:
        click.echo("No API tokens yet. Create one with: .venv/bin/flask --app wsgi tokens create NAME")
        return
    click.echo(f"{'id':>4}  {'prefix':<14} {'state':<8} {'created':<17} {'last used':<17} name")
    for row in rows:
        state = "revoked" if row.revoked_at else "active"
        click.echo(f"{row.id:>4}  {row.prefix + '…':<14} {state:<8} {_when(row.created_at):<17} "
                   f"{_when(row.last_used_at):<17} {row.name}")


@tokens_cli.command("revoke")
@click.argument("token_id", metavar="ID", type=click.IntRange(min=1))
def revoke_command(token_id: int) -> None:
    """Revoke the token with this ID (see `tokens list`): it stops working at once."""
    row = api_tokens.revoke(token_id)
    if row is None:
        raise click.ClickException(f"no token with id {token_id}")
    click.echo(f"Token {row.id} ({row.name}) is revoked.")
