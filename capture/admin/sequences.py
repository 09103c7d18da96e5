"""Dashboard area: sequences. Each folder's settings, steps and problems, the numbers
of each step (and of each subject of a step's subject test), a sandboxed preview of a
step and a test email of it to the owner."""

from datetime import timedelta

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from capture.leads import addresses
from capture.mail import backends
from capture.numbers import attribution, periods, sequence_steps
from capture.numbers.broadcasts import SubjectNumbers, step_subjects
from capture.mail import compose
from capture.mail import actions, condition_checks, trigger_checks, triggers
from capture.segments import words
from capture.admin import bp
from capture.web.headers import content_security_policy
from capture.db import db
from capture.models import Lead, Page
from capture.mail.library import Library
from capture.mail.sequences import Sequence, Step
from capture.wording import counted

# The dashboard's policy, but the preview frame (sandboxed, no script; it inherits
# this policy) may use the email's own inline styles and its images.
PREVIEW_POLICY = content_security_policy(style_src="'self' 'unsafe-inline'",
                                         img_src="* data:")


@bp.get("/sequences")
def sequences():
    """Every sequence folder: settings, steps with timing, problems, step numbers."""
    period = periods.period(request.args.get("period") or "all")
    numbers = {(row.sequence, row.step): row
               for row in sequence_steps.steps(start=period.start, end=period.end)}
    pages: dict[str, list[str]] = {}
    for name, slug in db.session.execute(
        select(Page.sequence, Page.slug).where(Page.sequence.is_not(None)).order_by(Page.slug)
    ):
        pages.setdefault(name, []).append(slug)
    folders = []
    library = Library.current().all()
    held = trigger_checks.status(library).held
    for sequence in library:
        keys = {step.key for step in sequence.steps}
        removed = [row for (name, key), row in numbers.items()
                   if name == sequence.name and key not in keys]
        lead, _ = _preview_lead(sequence, "")
        # A `when:` naming a page, tag, sequence or broadcast that does not exist
        # holds its step, as a broken file does.
        references = condition_checks.all_reference_problems(sequence)
        folders.append({
            "sequence": sequence,
            "problems": sorted(sequence.all_problems() + references,
                               key=lambda p: (p.file, p.line)),
            "held_steps": {p.file.rpartition("/")[2] for p in references},
            "notes": condition_checks.tag_problems(sequence),
            "sample": lead.name,
            "steps": [(step, _timing(sequence, step, index),
                       numbers.get((sequence.name, step.key))
                       or sequence_steps.StepNumbers(sequence.name, step.key),
                       *_subject(sequence, step, lead))
                      for index, step in enumerate(sequence.steps)],
            "removed": removed,
            "pages": pages.get(sequence.name, []),
            "starts": triggers.describe(sequence.start_on, pages.get(sequence.name, []),
                                        sequence.reenter),
            "held": held.get(sequence.name, []),
        })
    problem_count = sum(len(folder["problems"]) + len(folder["held"]) for folder in folders)
    return render_template("admin/sequences/index.html", folders=folders, period=period,
                           periods=periods.PERIODS, problem_count=problem_count,
                           root=Library.current().root, describe=words.describe,
                           attribution_days=attribution.window_days())


@bp.get("/sequences/<name>/<step_key>")
def sequences_step(name: str, step_key: str):
    """One step rendered for the sample lead (or ?lead=<email>) in a sandboxed frame."""
    sequence, step = _find(name, step_key)
    lead, lead_note = _preview_lead(sequence, request.args.get("lead", ""))
    rendered, error = None, None
    if step.ok:
        try:
            rendered = compose.render_step(
                sequence, step, lead, getattr(lead, "page", None),
                unsubscribe_url=actions.preview_unsubscribe_url())
        except compose.RenderError as failure:
            error = str(failure)
    index = sequence.steps.index(step)
    subjects = (step_subjects(sequence=name, step=step.key).get((name, step.key))
                or [SubjectNumbers(number, text) for number, text in enumerate(step.subjects)])
    response = render_template(
        "admin/sequences/step.html", sequence=sequence, step=step, rendered=rendered,
        error=error, lead=lead, lead_email=request.args.get("lead", "").strip(),
        lead_note=lead_note, timing=_timing(sequence, step, index), describe=words.describe,
        previous=sequence.steps[index - 1] if index else None,
        next=sequence.steps[index + 1] if index + 1 < len(sequence.steps) else None,
        owner_email=current_user.email, subjects=subjects,
        attribution_days=attribution.window_days(),
    )
    return response, 200, {"Content-Security-Policy": PREVIEW_POLICY}


@bp.post("/sequences/<name>/<step_key>/test")
def sequences_test(name: str, step_key: str):
    """Send this step to the logged-in owner, subject prefixed "[Test] "."""
    sequence, step = _find(name, step_key)
    lead_email = request.form.get("lead", "").strip()
    back = url_for("admin.sequences_step", name=name, step_key=step_key,
                   **({"lead": lead_email} if lead_email else {}))
    if not step.ok or sequence.problems:
        flash("Fix the problems of this sequence before sending a test.", "error")
        return redirect(back)
    lead, _ = _preview_lead(sequence, lead_email)
    try:
        actions.send_test(sequence, step, current_user.email, lead)
    except (compose.RenderError, backends.MailError) as error:
        flash(f"The test email was not sent: {error}", "error")
    else:
        flash(f"Test email sent to {current_user.email}.", "success")
    return redirect(back)


def _find(name: str, step_key: str) -> tuple[Sequence, Step]:
    """The sequence folder and step the URL names, or 404."""
    library = Library.current()
    sequence = library.get(name) if name in library.names() else None
    step = sequence.step(step_key) if sequence is not None else None
    if step is None:
        abort(404)
    return sequence, step


def _preview_lead(sequence: Sequence, email: str):
    """The lead to render for: the one with this email, else the sample lead on a
    page that uses the sequence. Also a note when the email matched nobody."""
    email = email.strip()
    if email:
        lead = db.session.scalar(select(Lead).where(Lead.email == addresses.stored_form(email)))
        if lead is not None:
            return lead, ""
    page = db.session.scalar(
        select(Page).where(Page.sequence == sequence.name).order_by(Page.id).limit(1))
    note = f"No lead with the email {email}: showing the sample lead." if email else ""
    return actions.sample_lead(page), note


def _subject(sequence: Sequence, step: Step, lead) -> tuple[str, str]:
    """The step's subject rendered for `lead`, and ''; or, when it cannot be
    rendered, the subject as written and why (a broken file says so by its badge)."""
    if not step.ok:
        return step.subject or step.filename, ""
    try:
        return compose.render_subject(sequence, step, lead, getattr(lead, "page", None),
                                        unsubscribe_url=actions.preview_unsubscribe_url()), ""
    except compose.RenderError as error:
        return step.subject, f"not rendered: {error}"


def _duration(delay: timedelta) -> str:
    """`2 days`, `1 week`, `3 hours`, `90 minutes`."""
    minutes = int(delay.total_seconds() // 60)
    for size, unit in ((7 * 24 * 60, "week"), (24 * 60, "day"), (60, "hour"), (1, "minute")):
        if minutes % size == 0:
            count = minutes // size
            return counted(count, unit)
    return f"{minutes} minutes"


def _timing(sequence: Sequence, step: Step, index: int) -> str:
    """When a step goes out, in words (what the file says when it is unreadable)."""
    after = "the lead is enrolled" if index == 0 else "the previous email"
    if "delay" in step.unreadable:
        text = f"Delay unreadable: \"{step.unreadable['delay']}\" (use 0, 30m, 2h, 3d or 1w)"
    elif not step.delay:
        text = "Right after " + after
    else:
        text = f"{_duration(step.delay)} after {after}"
    if "at" in step.unreadable:
        text += f"; time of day unreadable: \"{step.unreadable['at']}\""
    elif step.at is not None:
        text += f", at {step.at:%H:%M} ({sequence.timezone.key})"
    return text
