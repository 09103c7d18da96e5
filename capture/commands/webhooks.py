"""The `flask --app wsgi webhooks …` commands: list the endpoints, deliver what is due."""

import click
from flask.cli import AppGroup

from capture.webhooks import delivery, endpoints

webhooks_cli = AppGroup("webhooks", help="List webhook endpoints and deliver due events.")


@webhooks_cli.command("list")
def list_command() -> None:
    """One line per endpoint: id, state, pending and failed deliveries, page, events, URL."""
    rows = endpoints.overview()
    if not rows:
        click.echo("No webhooks yet. Add one in the dashboard: /admin/webhooks")
        return
    click.echo(f"{'id':>4}  {'state':<8} {'pending':>7} {'failed':>6}  {'page':<16} "
               "events / url")
    for hook, counts, _ in rows:
        state = "active" if hook.active else "disabled"
        pending = counts.get("pending", 0) + counts.get("sending", 0)
        page = hook.page.slug if hook.page else "(all)"
        click.echo(f"{hook.id:>4}  {state:<8} {pending:>7} {counts.get('failed', 0):>6}  "
                   f"{page[:16]:<16} {','.join(hook.events)}")
        click.echo(f"{'':>46}{hook.url}")


@webhooks_cli.command("send-due")
def send_due_command() -> None:
    """Post the due deliveries now (what the scheduler does each run); print a summary."""
    click.echo(delivery.deliver_due().line())
