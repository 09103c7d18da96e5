"""Dashboard area: broadcasts. The list (state, progress, audience, numbers), one
broadcast's page (audience now, frozen content in a sandboxed preview, numbers,
progress, a subject test's phase, winner and numbers per subject) and the owner's
buttons: send now, schedule, cancel, a test to an address."""

from datetime import UTC, datetime

from email_validator import EmailNotValidError
from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from capture.admin import bp
from capture.leads import addresses
from capture.mail import backends, broadcast_actions, broadcast_tests, compose
from capture.mail import broadcasts as broadcast_files
from capture.mail.broadcast_actions import Refused
from capture.numbers.broadcasts import (
    BroadcastNumbers,
    SubjectNumbers,
    broadcast_numbers,
    broadcast_subjects,
)
from capture.web.headers import content_security_policy

# The dashboard's policy, but the preview frame (sandboxed, no script) may use the
# email's own inline styles and its images.
PREVIEW_POLICY = content_security_policy(style_src="'self' 'unsafe-inline'",
                                         img_src="* data:")


def _numbers(found: list[broadcast_actions.Status]) -> dict[str, BroadcastNumbers | None]:
    rows = {s.row.id: s.name for s in found if s.row is not None}
    numbers = broadcast_numbers(list(rows))
    return {name: numbers.get(broadcast_id) for broadcast_id, name in rows.items()}


def _audience(item: broadcast_actions.Status) -> int | None:
    """The audience now (None when the file has a problem)."""
    try:
        return broadcast_actions.audience(item.name)
    except Refused:
        return None


@bp.get("/broadcasts")
def broadcasts():
    """Every broadcast: drafts (files), scheduled, sending, sent and cancelled ones."""
    found = broadcast_actions.statuses()
    numbers = _numbers(found)
    rows = []
    for item in found:
        progress = broadcast_actions.progress(item.row) if item.row is not None else None
        started = item.state in ("sending", "sent", "cancelled")
        rows.append({"item": item, "numbers": numbers.get(item.name),
                     "audience": item.row.recipients if started else _audience(item),
                     "progress": progress})
    return render_template("admin/broadcasts/index.html", rows=rows,
                           folder=broadcast_files.folder())


@bp.get("/broadcasts/<name>")
def broadcasts_detail(name: str):
    """One broadcast: its state, audience now, progress, numbers, the content it sends
    (frozen once sent) rendered in a sandboxed frame, and the owner's buttons."""
    try:
        item = broadcast_actions.status(name)
    except Refused:
        abort(404)
    rendered, error = None, None
    try:
        rendered = broadcast_actions.preview(name)
    except Refused as failure:
        error = str(failure)
    row = item.row
    response = render_template(
        "admin/broadcasts/detail.html", item=item, rendered=rendered, error=error,
        audience=_audience(item), numbers=_numbers([item]).get(name),
        subjects=(broadcast_subjects([row]).get(row.id, []) if row is not None
                  else [SubjectNumbers(index, text)
                        for index, text in enumerate(item.file.subjects)]),
        test=row.test if row is not None else item.file.test,
        test_text=broadcast_tests.describe(row if row is not None else item.file),
        progress=broadcast_actions.progress(item.row) if item.row is not None else None,
        problems=[str(p) for p in item.file.problems] if item.file else [],
        owner_email=current_user.email)
    return response, 200, {"Content-Security-Policy": PREVIEW_POLICY}


@bp.post("/broadcasts/<name>/send")
def broadcasts_send(name: str):
    """Send now, or schedule at the form's time (a datetime-local in UTC, or with an
    offset)."""
    at = None
    when = request.form.get("at", "").strip()
    if when:
        at = broadcast_files.parse_time(when) or broadcast_files.parse_time(when + "+00:00")
        if at is None:
            flash(f"{when!r} is not a date and time.", "error")
            return redirect(url_for("admin.broadcasts_detail", name=name))
    try:
        outcome = broadcast_actions.send(name, at)
    except Refused as error:
        flash(f"Nothing was sent: {error}", "error")
    else:
        flash(outcome.message, "success" if outcome.changed else "info")
    return redirect(url_for("admin.broadcasts_detail", name=name))


@bp.post("/broadcasts/<name>/cancel")
def broadcasts_cancel(name: str):
    """Cancel: what is not sent yet is not sent."""
    try:
        outcome = broadcast_actions.cancel(name)
    except Refused:
        abort(404)
    flash(outcome.message, "success" if outcome.changed else "info")
    return redirect(url_for("admin.broadcasts_detail", name=name))


@bp.post("/broadcasts/<name>/test")
def broadcasts_test(name: str):
    """One copy to the address given (the owner's own by default), not counted."""
    typed = request.form.get("email", "").strip() or current_user.email
    back = url_for("admin.broadcasts_detail", name=name)
    try:
        address = addresses.normalize_email(typed)
    except EmailNotValidError as error:
        flash(f"The test email was not sent: {error}", "error")
        return redirect(back)
    try:
        broadcast_actions.send_test(name, address)
    except (Refused, compose.RenderError, backends.MailError) as error:
        flash(f"The test email was not sent: {error}", "error")
    else:
        flash(f"Test email sent to {address}.", "success")
    return redirect(back)


@bp.app_template_filter("utc_input")
def utc_input(value: datetime | None) -> str:
    """A time as a datetime-local input's value (UTC)."""
    return (value or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M")
