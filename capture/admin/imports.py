"""Dashboard area: importing a list (upload a CSV, map its columns with a preview, run
the import and read its report).

The upload waits between the steps in the instance folder under a random name (never
a name from the request) with a small JSON file beside it (the original file name,
the page, the encoding); both are deleted when the import runs or is discarded, and
abandoned ones after UPLOAD_HOURS.
"""

import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from sqlalchemy import select
from wtforms import SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired

from capture.leads.imports import importer
from capture.admin import UPLOAD_LIMITS, bp
from capture.db import db
from capture.leads.imports.files import (
    auto_mapping,
    inspect,
    require_email_column,
    sample_rows,
    targets,
)
from capture.models import Page
from capture.leads.fields import one_line

PREVIEW_ROWS = 10
# Uploads never imported nor discarded are deleted after this long.
UPLOAD_HOURS = 24
ENCODINGS = [SelectChoice("utf-8", "UTF-8 (most files, and Excel's “CSV UTF-8”)"),
             SelectChoice("cp1252", "Windows (Excel's plain “CSV”, Western Europe)")]
_TOKEN = re.compile(r"^[0-9a-f]{32}$")
# The form fields besides the file (CSRF token, page, encoding) get this much room.
_FORM_ROOM = 64 * 1024

UPLOAD_LIMITS["admin.leads_import"] = lambda config: config["IMPORT_MAX_BYTES"] + _FORM_ROOM


class UploadForm(FlaskForm):
    """Step 1: the file, the page its people join and its encoding."""

    file = FileField("CSV file", validators=[FileRequired("Choose a CSV file to upload.")])
    page = SelectField("Page", validators=[DataRequired("Choose the page the leads join.")])
    encoding = SelectField("Text encoding", choices=ENCODINGS, default="utf-8")


class MappingForm(FlaskForm):
    """Step 2: the page and one field per column (added per file by `_mapping_form`)."""

    page = SelectField("Page", validators=[DataRequired("Choose the page the leads join.")])


def _pages() -> list[Page]:
    return list(db.session.scalars(select(Page).order_by(Page.slug)))


def _page_choices(pages: list[Page]) -> list[SelectChoice]:
    return [SelectChoice(page.slug, f"{page.title} ({page.slug})") for page in pages]


# --- where uploads wait -----------------------------------------------------------------

def _folder() -> Path:
    folder = Path(current_app.instance_path) / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _paths(token: str) -> tuple[Path, Path]:
    """The upload and its details; 404 unless `token` is one of ours in shape."""
    if not _TOKEN.match(token):
        abort(404)
    folder = _folder()
    return folder / f"{token}.csv", folder / f"{token}.json"


def _discard(token: str) -> None:
    for path in _paths(token):
        path.unlink(missing_ok=True)


def _remove_abandoned() -> None:
    """Delete uploads older than UPLOAD_HOURS (left at the mapping step)."""
    cutoff = time.time() - UPLOAD_HOURS * 3600
    for path in _folder().iterdir():
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except OSError:  # removed meanwhile
            continue


def _details(token: str) -> dict[str, Any] | None:
    """The upload's details, or None when it was imported, discarded or never existed."""
    data_path, meta_path = _paths(token)
    try:
        details = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return details if data_path.exists() else None


def _save_details(token: str, details: dict[str, Any]) -> None:
    _, meta_path = _paths(token)
    meta_path.write_text(json.dumps(details), encoding="utf-8")


# --- step 1: upload ---------------------------------------------------------------------

@bp.route("/leads/import", methods=["GET", "POST"])
def leads_import():
    """Upload a CSV file for a page."""
    pages = _pages()
    form = UploadForm()
    form.page.choices = _page_choices(pages)
    if request.method == "GET" and request.args.get("page"):
        form.page.data = request.args["page"]
    limit = current_app.config["IMPORT_MAX_BYTES"]

    def page_with(status: int = 200):
        return render_template("admin/imports/upload.html", form=form, pages=pages,
                               limit_text=_megabytes(limit)), status

    if not pages or not form.validate_on_submit():
        return page_with(422 if request.method == "POST" and pages else 200)
    _remove_abandoned()
    token = secrets.token_hex(16)
    data_path, _ = _paths(token)
    form.file.data.save(data_path)
    problem = None
    if data_path.stat().st_size > limit:
        problem = f"The file is larger than {_megabytes(limit)}. Import it with the command line."
    else:
        page = next((page for page in pages if page.slug == form.page.data), None)
        try:
            shape = inspect(data_path, encoding=form.encoding.data)
            if page is not None:
                require_email_column(shape, page)
        except importer.UnusableFile as error:
            # The saved file's random name means nothing to the owner.
            problem = str(error).removeprefix(f"{data_path.name}: ")
            problem = problem[:1].upper() + problem[1:]
    if problem:
        data_path.unlink(missing_ok=True)
        form.file.errors.append(problem)
        return page_with(422)
    name = one_line(re.split(r"[\\/]", form.file.data.filename or "")[-1])[:100] or "upload.csv"
    _save_details(token, {"name": name, "page": form.page.data,
                          "encoding": form.encoding.data})
    return redirect(url_for("admin.leads_import_map", token=token))


def _megabytes(size: int) -> str:
    """20971520 → '20 MB'; 1024 → '1 KB'."""
    return f"{size / 1024 / 1024:.0f} MB" if size >= 1024 * 1024 else f"{size // 1024} KB"


# --- step 2: map, preview, check, import ------------------------------------------------

def _mapping_form(headers: list[str], samples: list[tuple[int, list[str]]], page: Page,
                  pages: list[Page], submitted: bool) -> MappingForm:
    """The form for this file and page: one select per column, guessed unless
    `submitted` (then the owner's choices are read from the request)."""
    choices = [SelectChoice("", "— leave out —"),
               *(SelectChoice(name, label) for name, label in targets(page))]
    guessed = auto_mapping(headers, page, samples)
    fields = {f"column_{index}": SelectField(header, choices=choices,
                                             default=guessed[index] or "")
              for index, header in enumerate(headers)}
    form_class = type("FileMappingForm", (MappingForm,), fields)
    form = form_class() if submitted else form_class(formdata=None, page=page.slug)
    form.page.choices = _page_choices(pages)
    return form


def _chosen(form: MappingForm, headers: list[str]) -> list[str | None]:
    return [form[f"column_{index}"].data or None for index in range(len(headers))]


@bp.route("/leads/import/<token>", methods=["GET", "POST"])
def leads_import_map(token: str):
    """The columns with a field each, a preview of the first rows and what would become
    of them; then check the whole file, import it, or discard it."""
    details = _details(token)
    if details is None:
        flash("That upload is gone: it was imported or discarded. Upload the file again.",
              "error")
        return redirect(url_for("admin.leads_import"))
    data_path, _ = _paths(token)
    action = request.form.get("action", "preview") if request.method == "POST" else ""
    if action == "discard":
        _discard(token)
        flash(f"Discarded {details['name']}; nothing was imported.", "success")
        return redirect(url_for("admin.leads"))
    pages = _pages()
    try:
        shape = inspect(data_path, encoding=details["encoding"])
    except importer.UnusableFile:
        _discard(token)
        abort(404)
    chosen_slug = request.form.get("page") if request.method == "POST" else details["page"]
    page = next((p for p in pages if p.slug == chosen_slug), None)
    if page is None:
        page = next((p for p in pages if p.slug == details["page"]), None)
    if page is None and pages:
        flash("The page chosen for that upload no longer exists. Choose another one.", "error")
        page = pages[0]
        details["page"] = page.slug
        _save_details(token, details)
    if page is None:
        return redirect(url_for("admin.leads_import"))
    remapped = request.method == "POST" and page.slug != details["page"]
    if remapped:
        # Another page has other fields: its columns are guessed afresh.
        details["page"] = page.slug
        _save_details(token, details)
        flash(f"Columns mapped again for the page {page.slug}.", "success")
    samples = sample_rows(shape, PREVIEW_ROWS)
    submitted = request.method == "POST" and not remapped
    form = _mapping_form(shape.headers, samples, page, pages, submitted=submitted)
    status, report, problem = 200, None, ""
    if submitted and not form.validate():
        status = 422
    else:
        mapping = _chosen(form, shape.headers)
        try:
            # Said as soon as the page shows (no email column, say), not after Import.
            importer.check_mapping(shape.headers, mapping, page)
        except importer.UnusableFile as error:
            problem, status = str(error), 422 if submitted else 200
        else:
            if submitted and action == "import":
                return _run(token, details, shape, page, mapping)
            if submitted and action == "check":
                report = importer.run(shape, page, mapping, source=details["name"],
                                     dry_run=True)
    return render_template(
        "admin/imports/mapping.html", form=form, token=token, details=details, page=page,
        shape=shape, samples=samples, report=report,
        outcomes=_preview(shape, page, form), problem=problem,
    ), status


def _preview(shape, page: Page, form: MappingForm) -> dict[int, importer.RowResult]:
    """What would become of the first rows with the chosen mapping, by line."""
    mapping = _chosen(form, shape.headers)
    outcomes: dict[int, importer.RowResult] = {}

    def keep(result: importer.RowResult) -> None:
        outcomes[result.line] = result

    try:
        importer.run(shape, page, mapping, source="preview", dry_run=True,
                    limit=PREVIEW_ROWS, on_row=keep)
    except importer.UnusableFile:
        return {}
    return outcomes


def _run(token: str, details: dict[str, Any], shape, page: Page,
         mapping: list[str | None]):
    """Import the upload and show the report. The upload is taken first (renamed), so
    a second click cannot import it twice; it is deleted afterwards."""
    data_path, meta_path = _paths(token)
    running = data_path.with_suffix(".running")
    try:
        os.rename(data_path, running)
    except FileNotFoundError:
        flash("That upload is already being imported.", "error")
        return redirect(url_for("admin.leads"))
    shape.path = running
    try:
        report = importer.run(shape, page, mapping, source=details["name"])
    finally:
        running.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
    return render_template("admin/imports/report.html", report=report, page=page,
                           details=details)
