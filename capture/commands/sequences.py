"""The flask commands for sequences and sending: check, preview, plan, send-due,
scheduler."""

import sys
from datetime import timedelta

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from capture import clock, scheduler
from capture.leads import confirmations, intake
from capture.leads import addresses
from capture.mail import compose
from capture.mail import actions, condition_checks, engine, planning, trigger_checks
from capture.mail.library import Library
from capture.numbers import subject_winners
from capture.webhooks import delivery
from capture.db import db
from capture.models import Lead

sequences_cli = AppGroup("sequences", help="Check, preview and plan email sequences.")


@sequences_cli.command("check")
def check() -> None:
    """Validate every sequence file; print file:line: message for each problem."""
    library = Library.current()
    sequences = library.all()
    # What the files alone cannot show: pages that do not exist, tags nothing gives,
    # tag loops between sequences, and what the steps' `when:` names.
    try:
        held = trigger_checks.status(sequences, check_tags=True).held
        references = [p for sequence in sequences
                      for p in condition_checks.all_reference_problems(sequence)
                      + condition_checks.tag_problems(sequence)]
    except SQLAlchemyError as error:  # no database yet: the files are still checked
        db.session.rollback()
        click.echo(f"Triggers' and conditions' pages and tags not checked (database: "
                   f"{str(error).splitlines()[0]})", err=True)
        held, references = {}, []
    problems = [str(p) for p in sorted(
        [p for sequence in sequences for p in sequence.all_problems()] + references
        + [p for found in held.values() for p in found], key=lambda p: (p.file, p.line))]
    for line in problems:
        click.echo(line)
    count = len(library.names())
    if problems:
        click.echo(f"{len(problems)} problem(s) in {count} sequence(s).", err=True)
        sys.exit(1)
    click.echo(f"{count} sequence(s), no problems.")


@sequences_cli.command("preview")
@click.argument("name")
@click.argument("step")
@click.option("--lead", "email", help="Render for this lead instead of a sample one.")
def preview(name: str, step: str, email: str | None) -> None:
    """Print the rendered subject, text and HTML of step STEP of sequence NAME."""
    sequence = Library.current().get(name)
    if sequence is None:
        raise click.ClickException(f"no sequence folder {name!r}")
    found = sequence.step(step) or next(
        (s for s in sequence.steps if s.filename in (step, f"{step}.md")), None)
    if found is None:
        keys = ", ".join(s.key for s in sequence.steps) or "none"
        raise click.ClickException(f"no step {step!r} in {name} (steps: {keys})")
    if found.problems:
        raise click.ClickException("; ".join(str(p) for p in found.problems))
    lead = actions.sample_lead()
    if email:
        lead = db.session.scalar(select(Lead).where(Lead.email == addresses.stored_form(email)))
        if lead is None:
            raise click.ClickException(f"no lead with email {email!r}")
    unsubscribe = actions.preview_unsubscribe_url()
    try:
        rendered = compose.render_step(sequence, found, lead, getattr(lead, "page", None),
                                         unsubscribe_url=unsubscribe)
    except compose.RenderError as error:
        raise click.ClickException(str(error)) from None
    echo_rendered(rendered)


def echo_rendered(rendered: dict[str, str]) -> None:
    """Print a rendered email as `preview` shows it: subject (each one of a subject
    test), preheader, both parts."""
    click.echo(f"Subject: {rendered['subject']}")
    for index, subject in enumerate(rendered.get("subjects", [])[1:], start=2):
        click.echo(f"Subject {index}: {subject}")
    click.echo(f"Preheader: {rendered['preheader']}")
    click.echo("\n----- text -----")
    click.echo(rendered["text"])
    click.echo("----- html -----")
    click.echo(rendered["html"])


@sequences_cli.command("plan")
@click.argument("name", required=False)
@click.option("--days", default=7, show_default=True, help="How far ahead to look.")
@click.option("--limit", default=200, show_default=True, help="Most rows to print.")
@click.option("--lead", "email", help="Only this lead: each of its sequences, then its emails.")
def plan(name: str | None, days: int, limit: int, email: str | None) -> None:
    """Dry run: who gets which step when over the coming days, by the scheduler's
    own rules (as if every email were accepted). Sends nothing. Sequences with
    `start_on` triggers are listed first, in words."""
    now = clock.utcnow()
    for sequence, words, held in planning.ways_in(name):
        found = Library.current().get(sequence)
        if found is None or not found.start_on:
            continue
        click.echo(f"{sequence}: {words}")
        for problem in held:
            click.echo(f"  held, no lead is started by its triggers: {problem}")
    rows = planning.plan(now, now + timedelta(days=days), name, limit)
    if email:
        lead = db.session.scalar(select(Lead).where(Lead.email == addresses.stored_form(email)))
        if lead is None:
            raise click.ClickException(f"no lead with email {email!r}")
        for entry in planning.entries(lead.id):
            where = f"had {entry.last_step}" if entry.last_step else "no email yet"
            state = entry.state + (f" ({entry.stop_reason})" if entry.stop_reason else "")
            due = f", next at {entry.next_due_at:%Y-%m-%d %H:%M}" if entry.next_due_at else ""
            click.echo(f"{lead.email} in {entry.sequence} (time {entry.entry}): "
                       f"{state}, {where}{due}")
        rows = [row for row in rows if row.email == lead.email]
    if not rows:
        click.echo(f"Nothing due in the next {days} day(s).")
        return
    click.echo(f"{'when (UTC)':<17} {'lead':<32} {'sequence':<16} step")
    for row in rows:
        note = (" (retry)" if row.retry else "") + (f" (skipped: {row.skip})" if row.skip
                                                     else "") + (
            f" (held: {row.held})" if row.held else "")
        click.echo(f"{row.when:%Y-%m-%d %H:%M} {row.email:<32} {row.sequence:<16} {row.step}"
                   + note)


@click.command("send-due")
@with_appcontext
def send_due() -> None:
    """One scheduler tick, now: fold in the queued sign-ups, send the due emails, the
    queued confirmations and the due webhook deliveries; print a summary."""
    folded = intake.process()
    subject_winners.pick_due()
    summary = engine.tick()
    queued = confirmations.send_queued()
    hooks = delivery.deliver_due()
    click.echo(summary.line() + (f"; queued confirmations {queued}" if queued else "")
               + (f"; {hooks.line()}" if hooks.busy() else "")
               + (f"; {folded.line()}" if folded.stored or folded.failed else ""))


@click.command("scheduler")
@with_appcontext
def scheduler_command() -> None:
    """Run the sending job in the foreground until interrupted (Ctrl-C)."""
    app = current_app._get_current_object()
    click.echo(f"Scheduler running every {app.config['SCHEDULER_INTERVAL_SECONDS']}s; "
               "Ctrl-C stops it.")
    scheduler.run_foreground(app)
