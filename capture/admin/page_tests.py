"""Dashboard area: a page's Test tab — its variants' numbers with a chart, the
variants' editor (add, change, weight, remove), and pause, resume and promote.

Every check is `validate_page`'s (through `capture.pages.service`), so the tab and
`pages import` accept exactly the same tests; the numbers are
`capture.numbers.variants`'.
"""

import json

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    FieldList,
    Form,
    FormField,
    HiddenField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice

from capture.admin import bp
from capture.admin.design_fields import image_choices, keeping
from capture.admin.pages import page_or_404
from capture.db import db
from capture.models import Page
from capture.numbers import variants as page_tests
from capture.pages import variants
from capture.pages.definition import (
    page_templates_dir,
    page_to_dict,
    template_names,
    validate_page,
)
from capture.pages.service import pause_variant, promote_variant, save_page

# The texts a variant may change, as the form shows them (fields, template and image
# apart).
TEXTS = ("headline", "body", "button", "consent", "thank_you", "image_alt", "video_url")
# The image choice that takes the page's image away in a variant ("" keeps it).
NO_IMAGE = "-"
# The bars of the chart: (what, label); each scaled to its largest value.
BARS = (("conversion_rate", "Conversion"), ("earnings_per_visitor", "Earnings per visitor"),
        ("probability_best", "Probability best"))
BAR_WIDTH = 140


class VariantForm(Form):
    """One variant of the test: a row of the tab's editor. An empty input keeps the
    page's own value."""

    original = HiddenField()
    key = StringField("Key")
    weight = StringField("Weight")
    paused = BooleanField("Paused")
    remove = BooleanField("Remove")
    headline = StringField("Headline")
    body = TextAreaField("Text of the page")
    button = StringField("Button text")
    template = SelectField("Design", validate_choice=False)
    image = SelectField("Image", validate_choice=False)
    image_alt = StringField("Image description")
    video_url = StringField("Video")
    consent = TextAreaField("Consent checkbox text")
    thank_you = TextAreaField("Thank-you text")
    fields = TextAreaField("Form fields (JSON)")


class TestForm(FlaskForm):
    """The page's weight (variant a) and its variants, with one empty row to add one."""

    a_weight = StringField("Weight of the page itself (a)")
    rows = FieldList(FormField(VariantForm), max_entries=variants.MAX_VARIANTS + 1)

    def fill(self, page: Page) -> None:
        """Show the page's test, and an empty row for a new variant."""
        self.a_weight.data = "" if page.variant_a_weight is None else str(page.variant_a_weight)
        for variant in page.variants or []:
            self.rows.append_entry({
                "original": variant["key"], "key": variant["key"],
                "weight": "" if variant.get("weight") is None else str(variant["weight"]),
                "paused": bool(variant.get("paused")),
                "template": variant.get("template", ""),
                "image": (NO_IMAGE if variant.get("image") == "" else variant.get("image", "")),
                "fields": (json.dumps(variant["fields"], indent=1, ensure_ascii=False)
                           if "fields" in variant else ""),
                **{name: variant.get(name, "") for name in TEXTS}})
        if len(self.rows.entries) < variants.MAX_VARIANTS:
            self.rows.append_entry({})
        self.set_choices()

    def set_choices(self) -> None:
        """The page templates on disk and the uploaded images, after "the page's own"
        (an image that is gone stays listed, so the problem is shown instead of
        silently changed)."""
        choices = [SelectChoice("", "Same as the page")] + [
            SelectChoice(name) for name in template_names(page_templates_dir())]
        images = [SelectChoice("", "Same as the page"), SelectChoice(NO_IMAGE, "No image"),
                  *image_choices()]
        for row in self.rows.entries:
            row.form.template.choices = choices
            row.form.image.choices = keeping(images, row.form.image.data)

    def test_data(self, page: Page) -> tuple[list, object, list[str]]:
        """The variants and the weight of "a" as typed, in the JSON format (an empty
        input: the page's own value; a variant cleared to an empty text in JSON keeps
        it), and the fields that are not JSON, one line each."""
        stored = {v["key"]: v for v in page.variants or []}
        result, problems = [], []
        for row in self.rows.entries:
            form = row.form
            key = (form.key.data or "").strip().lower()
            if form.remove.data or not key:
                continue
            before = stored.get(form.original.data or "", {})
            variant = {"key": key, "weight": _number(form.weight.data),
                       "paused": bool(form.paused.data)}
            for name in TEXTS:
                value = (form[name].data or "").strip()
                if value or before.get(name) == "":
                    variant[name] = value
            if form.template.data:
                variant["template"] = form.template.data
            if form.image.data:
                variant["image"] = "" if form.image.data == NO_IMAGE else form.image.data
            if (form.fields.data or "").strip():
                try:
                    variant["fields"] = json.loads(form.fields.data)
                except json.JSONDecodeError as error:
                    problems.append(
                        f"variants[{len(result)}] ({key}).fields: not valid JSON: {error}")
            result.append(variant)
        return result, _number(self.a_weight.data), problems


def _number(text: str | None):
    """A typed weight: a whole number when it is one, None when empty, else the text
    itself (which the definition's check refuses with its message)."""
    text = (text or "").strip()
    if not text:
        return None
    return int(text) if text.isdigit() else text


def _dirs() -> dict[str, str]:
    return {"sequences_dir": current_app.config["SEQUENCES_DIR"],
            "templates_dir": page_templates_dir()}


def _tab(page: Page, form: TestForm, status: int = 200, problems=()):
    report = page_tests.test_report(page)
    return render_template("admin/pages/test.html", page=page, form=form, report=report,
                           chart=_chart(report), problems=list(problems),
                           a_share=(variants.test_of(page).shares()[variants.PAGE_KEY]
                                    if page.variants else None)), status


def _chart(report: page_tests.TestReport) -> list[dict]:
    """One group of bars per variant compared: each bar's width and label."""
    rows = [row for row in report.compared if row.visitors]
    if not rows:
        return []
    tops = {name: max((float(getattr(row, name) or 0) for row in rows), default=0)
            for name, _ in BARS}
    return [{"key": row.key, "bars": [
        {"name": name, "label": label, "value": getattr(row, name),
         "width": round(BAR_WIDTH * float(getattr(row, name) or 0) / tops[name], 1)
         if tops[name] else 0}
        for name, label in BARS]} for row in rows]


@bp.route("/pages/<int:page_id>/test", methods=["GET", "POST"])
def pages_test(page_id: int):
    """The page's test: numbers per variant and the variants' editor."""
    page = page_or_404(page_id)
    if request.method == "GET":
        form = TestForm(formdata=None)
        form.fill(page)
        return _tab(page, form)
    form = TestForm()
    form.set_choices()
    tested, a_weight, problems = form.test_data(page)
    data = {**page_to_dict(page), "variants": tested, "variant_a_weight": a_weight}
    if problems:  # fields that are not JSON: show the other problems too, save nothing
        problems += validate_page(data, **_dirs())[1]
    else:
        _, problems = save_page(page, data, **_dirs())
    if problems:
        db.session.rollback()
        return _tab(page, form, 422, problems)
    flash(f"Saved the test of {page.title}." if page.variants else
          f"{page.title} has no test now.", "success")
    return redirect(url_for("admin.pages_test", page_id=page.id))


@bp.post("/pages/<int:page_id>/test/<key>/pause")
def pages_test_pause(page_id: int, key: str):
    """Pause a variant: no new visitors get it; visitors who saw it keep it."""
    return _act(page_id, key, "pause")


@bp.post("/pages/<int:page_id>/test/<key>/resume")
def pages_test_resume(page_id: int, key: str):
    """Run a paused variant again."""
    return _act(page_id, key, "resume")


@bp.post("/pages/<int:page_id>/test/<key>/promote")
def pages_test_promote(page_id: int, key: str):
    """Make the variant the page and end the test (its numbers stay)."""
    return _act(page_id, key, "promote")


def _act(page_id: int, key: str, action: str):
    page = page_or_404(page_id)
    try:
        if action == "promote":
            _, problems = promote_variant(page, key, **_dirs())
        else:
            _, problems = pause_variant(page, key, action == "pause", **_dirs())
    except ValueError:
        abort(404)
    if problems:
        db.session.rollback()
        flash("Nothing was changed: " + "; ".join(problems), "error")
    elif action == "promote":
        flash(f"Variant {key} is the page now and the test has ended; its numbers stay "
              "below." if key != variants.PAGE_KEY else
              "The test has ended and the page stays as it is; its numbers stay below.",
              "success")
    else:
        flash(f"Variant {key} is paused: new visitors no longer get it; those who saw it "
              "keep it." if action == "pause" else f"Variant {key} runs again.", "success")
    return redirect(url_for("admin.pages_test", page_id=page_id))
