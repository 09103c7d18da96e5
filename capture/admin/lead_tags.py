"""Dashboard: tags on one lead (its Tags panel: add, remove) and on many (the leads
table's bulk add and remove, for the ticked leads or every lead the filters match)."""

from urllib.parse import parse_qs, urlsplit

from flask import current_app, flash, redirect, request, url_for
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from capture.admin import bp
from capture.admin.leads import _back_to_table, _is_id, _lead_or_404
from capture.db import db
from capture.leads import queries, tags
from capture.models import Lead
from capture.wording import counted

# Leads per transaction of a bulk action: about 0.1 s of SQLite's write lock each.
BULK_COMMIT_LEADS = 1000
# What the form's tag box may hold: names separated by commas or spaces.
_SEPARATORS = str.maketrans({",": " ", ";": " "})


def _names(text: str | None) -> list[str]:
    """The names typed into a tag box (TagError for the first that is no tag name)."""
    return tags.check_names((text or "").translate(_SEPARATORS).split())


@bp.post("/leads/<int:lead_id>/tags")
def lead_tags_add(lead_id: int):
    """Add the typed tags to one lead (cause `dashboard`)."""
    lead = _lead_or_404(lead_id)
    try:
        names = _names(request.form.get("tags"))
    except tags.TagError as error:
        flash(f"Nothing added: {error}.", "error")
        return redirect(url_for("admin.lead", lead_id=lead.id, _anchor="tags"))
    if not names:
        flash("Type a tag name first.", "error")
    elif tags.add_tags([lead.id], names, "dashboard"):
        db.session.commit()
        flash(f"Tagged {lead.email}: {', '.join(names)}.", "success")
    else:
        flash(f"{lead.email} has {'this tag' if len(names) == 1 else 'these tags'} already.")
    return redirect(url_for("admin.lead", lead_id=lead.id, _anchor="tags"))


@bp.post("/leads/<int:lead_id>/tags/remove")
def lead_tags_remove(lead_id: int):
    """Take one tag off the lead."""
    lead = _lead_or_404(lead_id)
    try:
        names = _names(request.form.get("tag"))
    except tags.TagError as error:
        flash(f"Nothing removed: {error}.", "error")
        return redirect(url_for("admin.lead", lead_id=lead.id, _anchor="tags"))
    if names and tags.remove_tags([lead.id], names, "dashboard"):
        db.session.commit()
        flash(f"Removed {', '.join(names)} from {lead.email}.", "success")
    else:
        flash(f"{lead.email} did not have that tag: nothing changed.")
    return redirect(url_for("admin.lead", lead_id=lead.id, _anchor="tags"))


@bp.post("/leads/tags")
def leads_tags():
    """Add or remove a tag on the ticked leads, or on every lead the table's filters
    match (`scope=all`: the filters are read from the table's address)."""
    back = _back_to_table(request.form.get("back"))
    action = request.form.get("tag_action", "")
    try:
        names = _names(request.form.get("bulk_tags"))
    except tags.TagError as error:
        flash(f"Nothing changed: {error}.", "error")
        return redirect(back)
    if action not in ("add", "remove"):
        flash("Choose Add tag or Remove tag.", "error")
        return redirect(back)
    if not names:
        flash("Type a tag name first.", "error")
        return redirect(back)
    if request.form.get("scope") == "all":
        filters, _ = queries.parse_filters(MultiDict(parse_qs(urlsplit(back).query)))
        ids = list(db.session.scalars(queries.filter_leads(select(Lead.id), filters)))
    else:
        limit = current_app.config["LEADS_BULK_LIMIT"]
        ids = [int(value) for value in request.form.getlist("lead") if _is_id(value)][:limit]
    if not ids:
        flash("Tick at least one lead first (or choose every lead that matches).", "error")
        return redirect(back)
    change = tags.add_tags if action == "add" else tags.remove_tags
    changed = 0
    # One transaction per chunk: tagging every lead of a large list never holds the
    # database's write lock long enough to keep a sign-up waiting.
    for start in range(0, len(ids), BULK_COMMIT_LEADS):
        changed += change(ids[start:start + BULK_COMMIT_LEADS], names, "dashboard")
        db.session.commit()
    if action == "add":
        message = f"Added {', '.join(names)}: {counted(changed, 'tag')} given to " \
                  f"{counted(len(ids), 'lead')}"
    else:
        message = f"Removed {', '.join(names)}: {counted(changed, 'tag')} taken off " \
                  f"{counted(len(ids), 'lead')}"
    unchanged = len(ids) * len(names) - changed
    if unchanged:
        message += f"; {unchanged:,} {'were' if unchanged != 1 else 'was'} so already"
    flash(message + ".", "success")
    return redirect(back)
