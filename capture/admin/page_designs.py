"""Dashboard area: pages — the previews behind the editor's gallery of designs: the
page as it is typed (or as saved) shown in each design, for the live thumbnails."""

from flask import abort, current_app

from capture.admin import bp
from capture.admin.pages import PageForm, page_or_404, _preview
from capture.pages.definition import (
    page_templates_dir,
    page_to_dict,
    preview_values,
    validate_page,
)
from capture.pages.designs import gallery


def _with_design(values: dict, design: str):
    """The preview of `values` shown with another design (404 for an unknown one)."""
    if design not in {d.file for d in gallery(page_templates_dir())}:
        abort(404)
    return _preview({**values, "template": design})


@bp.post("/pages/designs/<design>")
def pages_design_preview(design: str):
    """A gallery thumbnail: the editor's current, unsaved values in another design."""
    data, _ = PageForm().page_data()
    clean, _ = validate_page(data, sequences_dir=current_app.config["SEQUENCES_DIR"],
                             templates_dir=page_templates_dir())
    return _with_design(preview_values(clean, page_templates_dir()), design)


@bp.get("/pages/<int:page_id>/designs/<design>")
def pages_design_preview_saved(page_id: int, design: str):
    """A gallery thumbnail before any change: the saved page in another design."""
    values = page_to_dict(page_or_404(page_id))
    return _with_design(preview_values(values, page_templates_dir()), design)
