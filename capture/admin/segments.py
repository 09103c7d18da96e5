"""Dashboard area: saved segments — the list with each one's live count and a link to
its leads, a form to write one in the segment language (checked before it is saved),
and deleting."""

from flask import abort, flash, redirect, render_template, request, url_for

from capture.admin import bp
from capture.segments import saved as saved_segments
from capture.segments.language import KEYS

# What a new segment's text box shows, as an example of the language.
EXAMPLE = """pages: [webinar]
tags:
  any: [vip]
clicked:
  within_days: 30
"""


@bp.get("/segments")
def segments():
    """Every saved segment with its members and audience now."""
    return render_template("admin/segments/index.html", segments=saved_segments.listed())


def _form(name: str, definition: str, *, segment=None, errors=None, status: int = 200):
    return render_template("admin/segments/edit.html", name=name, definition=definition,
                           segment=segment, errors=errors or {}, keys=KEYS,
                           example=EXAMPLE), status


@bp.get("/segments/new")
def segments_new():
    """An empty form, with an example in its placeholder."""
    return _form("", "")


@bp.get("/segments/<int:segment_id>")
def segments_edit(segment_id: int):
    """The form of one saved segment."""
    segment = saved_segments.get(segment_id)
    if segment is None:
        abort(404)
    return _form(segment.name, segment.definition, segment=segment)


@bp.post("/segments/new", endpoint="segments_create")
@bp.post("/segments/<int:segment_id>", endpoint="segments_save")
def segments_save(segment_id: int | None = None):
    """Save the form; on a problem show it again, as typed, with nothing stored."""
    segment = None
    if segment_id is not None:
        segment = saved_segments.get(segment_id)
        if segment is None:
            abort(404)
    name = request.form.get("name", "")
    definition = request.form.get("definition", "")
    try:
        saved = saved_segments.save(name, definition, segment_id)
    except saved_segments.SavedSegmentError as error:
        return _form(name, definition, segment=segment, errors={error.field: str(error)},
                     status=422)
    flash(f"Segment “{saved.name}” is saved.", "success")
    return redirect(url_for("admin.segments"))


@bp.post("/segments/<int:segment_id>/delete")
def segments_delete(segment_id: int):
    """Delete a saved segment (broadcasts keep their own copy of their segment)."""
    name = saved_segments.delete(segment_id)
    if name is None:
        abort(404)
    flash(f"Segment “{name}” is deleted.", "success")
    return redirect(url_for("admin.segments"))
