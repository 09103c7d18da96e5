"""Dashboard area: ad spend — the cost rows of the last days, a form for one row, a CSV
upload, removing a row (`capture.numbers.spend`)."""

from datetime import timedelta

from flask import abort, flash, redirect, render_template, url_for
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from sqlalchemy import select

from capture import clock
from capture.admin import bp
from capture.db import db
from capture.models import Cost, Page
from capture.numbers import metrics, spend
from wtforms import BooleanField, DateField, SelectField, StringField
from wtforms.validators import InputRequired

DAYS = 90


class CostForm(FlaskForm):
    """One cost row; checked by `spend.check_row`, whose messages it shows."""

    date = DateField("Date", validators=[InputRequired("Give the day of the spend.")])
    source = StringField("Source (utm_source)")
    campaign = StringField("Campaign (utm_campaign)")
    page = SelectField("Page", choices=[])
    amount = StringField("Amount")
    currency = StringField("Currency")


class UploadForm(FlaskForm):
    """A cost CSV."""

    file = FileField("CSV file", validators=[FileRequired("Choose a CSV file to upload.")])
    skip_bad = BooleanField("Import the good lines even if some are bad")


def _page_choices() -> list[tuple[str, str]]:
    slugs = db.session.scalars(select(Page.slug).order_by(Page.slug)).all()
    return [("", "No one page")] + [(slug, slug) for slug in slugs]


def _index(form: CostForm | None = None, upload: UploadForm | None = None,
           problems: list[str] | None = None, status: int = 200):
    if form is None:
        form = CostForm(formdata=None, date=clock.utcnow().date(),
                        currency=metrics.currency_label() or "")
    form.page.choices = _page_choices()
    today = clock.utcnow().date()
    rows = spend.listing(today - timedelta(days=DAYS - 1), today + timedelta(days=1))
    slugs = dict(db.session.execute(select(Page.id, Page.slug)).all())
    return render_template("admin/costs.html", form=form,
                           upload=upload or UploadForm(formdata=None), problems=problems or [],
                           rows=rows, slugs=slugs, days=DAYS,
                           total=sum(row.amount for row in rows)), status


@bp.get("/costs")
def costs():
    """The cost rows of the last DAYS days and the two ways to add some."""
    return _index()


@bp.post("/costs")
def costs_add():
    """Add one cost row (replacing a row of the same day, source, campaign and page)."""
    form = CostForm()
    form.page.choices = _page_choices()
    if not form.validate():
        return _index(form, status=422)
    row, problems = spend.check_row({
        "date": form.date.data.isoformat(), "source": form.source.data,
        "campaign": form.campaign.data, "page": form.page.data,
        "amount": form.amount.data, "currency": form.currency.data}, spend.Pages())
    if row is None:
        for problem in problems:
            name, _, message = problem.partition(": ")
            field = getattr(form, "date" if name == "date" else name, None)
            (field.errors if field is not None else form.amount.errors).append(message)
        return _index(form, status=422)
    added, _ = spend.save([row])
    db.session.commit()
    flash(f"Spend of {row.amount:.2f} {row.currency} on {row.day.isoformat()} "
          + ("added." if added else "replaced the earlier row of that day, source, "
             "campaign and page."), "success")
    return redirect(url_for("admin.costs"))


@bp.post("/costs/upload")
def costs_upload():
    """Import a cost CSV: nothing while a line is bad (each one listed), unless the
    owner asked to import the good lines."""
    upload = UploadForm()
    if not upload.validate():
        return _index(upload=upload, status=422)
    try:
        text = upload.file.data.read().decode("utf-8")
    except UnicodeDecodeError:
        return _index(upload=upload, problems=["The file is not UTF-8 text: save it as "
                                               "UTF-8 CSV."], status=422)
    checked = spend.read_csv(text)
    if checked.problems and (not upload.skip_bad.data or not checked.rows):
        return _index(upload=upload, problems=checked.problems, status=422)
    added, replaced = spend.save(checked.rows)
    db.session.commit()
    skipped = (f"; {len(checked.problems)} bad line(s) skipped" if checked.problems else "")
    flash(f"Imported {added + replaced} cost row(s): {added} added, {replaced} "
          f"replaced{skipped}.", "success")
    return redirect(url_for("admin.costs"))


@bp.post("/costs/<int:cost_id>/delete")
def costs_delete(cost_id: int):
    """Remove one cost row."""
    row = db.session.get(Cost, cost_id)
    if row is None:
        abort(404)
    db.session.delete(row)
    db.session.commit()
    flash(f"Removed the spend of {row.amount:.2f} {row.currency} on {row.day.isoformat()}.",
          "success")
    return redirect(url_for("admin.costs"))
