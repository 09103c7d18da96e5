"""Dashboard area: pages — list with numbers, editor with live preview (publish, copy
and share links are in page_actions.py).

The editor is a form over the page definition of `capture.pages.definition`; every check
is `validate_page`'s, so the dashboard and `pages import` accept exactly the same pages.
"""

import re
from collections import defaultdict
from types import SimpleNamespace

from flask import (
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import (
    BooleanField,
    FieldList,
    Form,
    FormField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice

from capture.numbers import metrics
from capture.mail.library import Library
from capture.admin import bp
from capture.admin.design_fields import DesignFields
from capture.db import db
from capture.languages import LANGUAGES
from capture.markup import render_markdown
from capture.models import Page
from capture.pages.definition import (
    DEFAULTS,
    FIELD_TYPES,
    apply_page,
    page_templates_dir,
    page_to_dict,
    preview_values,
    validate_page,
)
from capture.pages.service import save_page
from capture.pages.variants import promoted
from capture.public.forms import form_class
from capture.public.render import render_for, render_page, snippet

MAX_FIELD_ROWS = 40
BLANK_ROWS = 2  # empty rows under a page's fields, ready for a new one
# The preview shows the page as a visitor would, minus anything that could act:
# no script, no form submission, its own opaque origin.
PREVIEW_POLICY = ("sandbox; script-src 'none'; object-src 'none'; base-uri 'none'; "
                  "form-action 'none'; frame-ancestors 'self'")
TYPE_LABELS = {"text": "Text", "email": "Email", "tel": "Phone", "country": "Country",
               "select": "Choice list", "checkbox": "Checkbox"}
_LIST_SPLIT = re.compile(r"[,\s]+")
_PROBLEM_ROW = re.compile(r"^fields\[(\d+)\]")


class FieldRowForm(Form):
    """One form field of the page: a row of the editor's field table."""

    name = StringField("Name")
    label = StringField("Label")
    kind = SelectField("Type", choices=[SelectChoice(t, TYPE_LABELS.get(t, t))
                                        for t in FIELD_TYPES], validate_choice=False)
    required = BooleanField("Required")
    options = StringField("Options")


class PageForm(DesignFields, FlaskForm):
    """Every setting of a page, as an owner types it. The checks are validate_page's."""

    slug = StringField("Address")
    title = StringField("Title")
    headline = StringField("Headline")
    body = TextAreaField("Text of the page")
    rows = FieldList(FormField(FieldRowForm), max_entries=MAX_FIELD_ROWS)
    button = StringField("Button text")
    consent = TextAreaField("Consent checkbox text")
    double_opt_in = BooleanField("Double opt-in")
    proof_of_work = BooleanField("Ask the visitor's browser for a proof of work")
    sequence = SelectField("Email sequence", validate_choice=False)
    thank_you = TextAreaField("Thank-you text")
    redirect_url = StringField("Or send people to this address")
    review = SelectField("Review of new leads", validate_choice=False, choices=[
        SelectChoice("auto", "Automatic: approved unless a rule below rejects the lead"),
        SelectChoice("manual", "Manual: every lead waits for my approval")])
    countries = StringField("Only these countries")
    required_fields = StringField("Reject leads missing these fields")
    block_domains = TextAreaField("Blocked email domains")
    block_disposable = BooleanField("Reject disposable email addresses")
    payout = StringField("Payout per approved lead")
    currency = StringField("Currency")
    language = SelectField("Language", choices=[*map(SelectChoice, LANGUAGES, LANGUAGES.values())],
                           validate_choice=False)
    published = BooleanField("Published")
    allowed_origins = TextAreaField("Sites allowed to embed the form")
    tags = StringField("Tags for everyone who signs up here")

    # Where validate_page's problem names are shown (the rest: next to the field
    # of the same name).
    PROBLEM_FIELDS = {"rules.countries": "countries", "rules.required": "required_fields",
                      "rules.block_domains": "block_domains",
                      "rules.block_disposable": "block_disposable", "fields": "rows"}

    def set_choices(self) -> None:
        """Sequence folders and page templates as they are on disk now (a value that
        is gone stays listed, so the problem is shown instead of silently changed)."""
        sequences = Library.current().names()
        if self.sequence.data and self.sequence.data not in sequences:
            sequences.append(self.sequence.data)
        self.sequence.choices = [SelectChoice("", "No sequence")] + [
            SelectChoice(name) for name in sequences]
        self.set_design_choices()

    def fill(self, data: dict) -> None:
        """Show a page definition (JSON format) in the form."""
        rules = data.get("rules") or {}
        for key in ("slug", "title", "headline", "body", "button", "consent",
                    "double_opt_in", "proof_of_work", "thank_you", "review", "currency",
                    "language", "published"):
            getattr(self, key).data = data.get(key)
        self.fill_design(data)
        self.sequence.data = data.get("sequence") or ""
        self.redirect_url.data = data.get("redirect_url") or ""
        self.payout.data = str(data.get("payout", "0"))
        self.countries.data = ", ".join(rules.get("countries", []))
        self.required_fields.data = ", ".join(rules.get("required", []))
        self.block_domains.data = "\n".join(rules.get("block_domains", []))
        self.block_disposable.data = bool(rules.get("block_disposable"))
        self.allowed_origins.data = "\n".join(data.get("allowed_origins") or [])
        self.tags.data = ", ".join(data.get("tags") or [])
        while self.rows.entries:
            self.rows.pop_entry()
        for field in data.get("fields", []):
            self.rows.append_entry({
                "name": field["name"], "label": field.get("label", ""),
                "kind": field.get("type", "text"), "required": field.get("required", False),
                "options": ", ".join(field.get("options") or [])})
        self.add_blank_rows(BLANK_ROWS)

    def add_blank_rows(self, count: int) -> None:
        """Empty field rows at the end (as many as the limit allows)."""
        for _ in range(min(count, MAX_FIELD_ROWS - len(self.rows.entries))):
            self.rows.append_entry({"kind": "text"})

    def page_data(self) -> tuple[dict, list[int]]:
        """The page definition typed into the form, in the JSON format, and for each
        field of the definition the position of its row (an empty name drops a row)."""
        fields, positions = [], []
        for position, row in enumerate(self.rows.entries):
            name = (row.form.name.data or "").strip()
            if not name:
                continue
            field = {"name": name, "type": row.form.kind.data or "text",
                     "required": bool(row.form.required.data)}
            if (label := (row.form.label.data or "").strip()):
                field["label"] = label
            options = [o.strip() for o in (row.form.options.data or "").split(",")]
            if any(options):
                field["options"] = [o for o in options if o]
            fields.append(field)
            positions.append(position)
        data = {
            "slug": _text(self.slug.data).lower(),
            "title": _text(self.title.data),
            "headline": _text(self.headline.data),
            "body": self.body.data or "",
            "fields": fields,
            "button": _text(self.button.data),
            "consent": (self.consent.data or "").strip(),
            "double_opt_in": bool(self.double_opt_in.data),
            "proof_of_work": bool(self.proof_of_work.data),
            "sequence": self.sequence.data or None,
            "thank_you": self.thank_you.data or "",
            "redirect_url": _text(self.redirect_url.data) or None,
            "review": self.review.data,
            "rules": {
                "countries": _items(self.countries.data),
                "required": _items(self.required_fields.data),
                "block_domains": _items(self.block_domains.data),
                "block_disposable": bool(self.block_disposable.data),
            },
            "payout": _text(self.payout.data) or "0",
            "currency": _text(self.currency.data).upper(),
            **self.design_data(),
            "language": self.language.data or DEFAULTS["language"],
            "published": bool(self.published.data),
            "allowed_origins": [line.strip() for line in
                                (self.allowed_origins.data or "").splitlines() if line.strip()],
            "tags": _items(self.tags.data),
        }
        return data, positions

    def show_problems(self, problems: list[str], positions: list[int]) -> list[str]:
        """Put each `field: message` problem next to its input; return those that have
        no input of their own (shown above the form)."""
        unplaced = []
        row_errors: dict[int, list[str]] = defaultdict(list)
        field_errors: dict[str, list[str]] = defaultdict(list)
        for problem in problems:
            where, _, message = problem.partition(": ")
            if (match := _PROBLEM_ROW.match(where)) and int(match.group(1)) < len(positions):
                detail = where[match.end():].strip(" .")
                row_errors[positions[int(match.group(1))]].append(
                    f"{_row_part(detail)}{message}")
                continue
            name = self.PROBLEM_FIELDS.get(where, where)
            if name in self._fields and name != "csrf_token":
                field_errors[name].append(message)
            else:
                unplaced.append(problem)
        for name, messages in field_errors.items():
            self[name].errors = messages
        self.row_errors = dict(row_errors)
        return unplaced


def _text(value) -> str:
    return (value or "").strip()


def _items(value) -> list[str]:
    """A list typed as text: separated by commas, spaces or new lines."""
    return [item for item in _LIST_SPLIT.split(value or "") if item]


def _row_part(detail: str) -> str:
    """'(phone).options' → 'Options: ' (the row itself is shown with the message)."""
    if "." in detail:
        part = detail.rpartition(".")[2]
    else:
        part = "" if detail.startswith("(") else detail
    return f"{part.capitalize()}: " if part else ""


def page_or_404(page_id: int) -> Page:
    page = db.session.get(Page, page_id)
    if page is None:
        abort(404)
    return page


def _editor(form: PageForm, page: Page | None, status: int = 200, problems=()):
    snippets = None
    if page is not None and page.allowed_origins and page.double_opt_in:
        snippets = {"script": snippet(page), "plain": snippet(page, script=False)}
    return render_template("admin/pages/edit.html", form=form, page=page,
                           problems=list(problems), snippets=snippets,
                           row_errors=getattr(form, "row_errors", {})), status


def _submitted(page: Page | None):
    """Save the posted form onto `page` (a new page when None), or show it again:
    with more field rows when asked, with every problem (422) when invalid."""
    form = PageForm()
    form.set_choices()
    if "add_rows" in request.form:
        form.add_blank_rows(3)
        return _editor(form, page)
    data, positions = form.page_data()
    if page is not None:  # the test is edited on its own tab
        data.update(variants=page_to_dict(page)["variants"],
                    variant_a_weight=page.variant_a_weight)
    saved, problems = save_page(page, data, sequences_dir=current_app.config["SEQUENCES_DIR"],
                                templates_dir=page_templates_dir())
    if problems:
        unplaced = form.show_problems(problems, positions)
        return _editor(form, page, 422, unplaced)
    flash(f"Saved {saved.title}." + (" It is live." if saved.published else
                                     " It is a draft: publish it to make it live."), "success")
    return redirect(url_for("admin.pages_edit", page_id=saved.id))


@bp.get("/pages")
def pages():
    """Every page with its state and its numbers of all time."""
    all_pages = db.session.scalars(select(Page).order_by(Page.slug)).all()
    report = metrics.report(by="page")
    currencies = {page.currency for page in all_pages}
    return render_template(
        "admin/pages/list.html", pages=all_pages, rows=report.rows, total=report.total,
        empty=metrics.Numbers(),
        total_currency=currencies.pop() if len(currencies) == 1 else "")


@bp.route("/pages/new", methods=["GET", "POST"])
def pages_new():
    """Create a page: starts from a name and an email field."""
    if request.method == "POST":
        return _submitted(None)
    form = PageForm(formdata=None)
    form.fill({**DEFAULTS, "slug": "", "title": "", "fields": [
        {"name": "name", "label": "First name", "type": "text", "required": False},
        {"name": "email", "label": "Email", "type": "email", "required": True}]})
    form.set_choices()
    return _editor(form, None)


@bp.route("/pages/<int:page_id>/edit", methods=["GET", "POST"])
def pages_edit(page_id: int):
    """Edit every setting of a page, with a live preview."""
    page = page_or_404(page_id)
    if request.method == "POST":
        return _submitted(page)
    form = PageForm(formdata=None)
    form.fill(page_to_dict(page))
    form.set_choices()
    return _editor(form, page)


def _preview(values: dict, notice: str = ""):
    """Render the page's own template (or, with ?view=thanks, what visitors see right
    after signing up: "check your inbox" with double opt-in; with ?view=confirmed, what
    they see once they confirm) from values that are never stored: no row is added or
    changed and no visit is recorded."""
    page = apply_page(Page(), values)  # transient: never added to the session
    view = request.args.get("view")
    if view in ("thanks", "confirmed"):
        text = render_markdown(page.thank_you)
        if view == "confirmed" and page.double_opt_in:
            html = render_for(page, "confirmed.html", text=text,
                              lead=SimpleNamespace(subscription="subscribed"))
        else:  # the real thanks page: asks to check the inbox with double opt-in
            html = render_for(page, "thanks.html", text=text)
        response = make_response(html)
    else:
        response = render_page(page, form_class(page)(formdata=None), notice=notice)
    response.headers["Content-Security-Policy"] = PREVIEW_POLICY
    return response


@bp.post("/pages/preview")
def pages_preview():
    """The page as it would look with the editor's current, unsaved values."""
    form = PageForm()
    data, _ = form.page_data()
    clean, problems = validate_page(data, sequences_dir=current_app.config["SEQUENCES_DIR"],
                                    templates_dir=page_templates_dir())
    notice = ""
    if problems:
        notice = (f"Preview. {len(problems)} problem{'s' if len(problems) > 1 else ''} "
                  "to fix before this can be saved.")
    return _preview(preview_values(clean, page_templates_dir()), notice)


@bp.get("/pages/<int:page_id>/preview")
def pages_preview_saved(page_id: int):
    """The saved page as visitors see it (drafts too; with ?variant=b, as that variant
    of its test shows it), without counting a visit."""
    page = page_or_404(page_id)
    values = page_to_dict(page)
    if request.args.get("variant"):
        try:
            values = promoted(values, request.args["variant"])
        except ValueError:
            abort(404)
    return _preview(preview_values(values, page_templates_dir()))
