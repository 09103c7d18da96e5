"""Dashboard area: the leads table (search, filters, bulk review, export, erase) and
one lead's page (every field, attribution, consent, history and the owner's actions)."""

import secrets

import pycountry
from flask import (
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from capture import clock
from capture.leads import upgrades
from capture.leads import exports
from capture.leads import queries
from capture.leads import erasure, lifecycle, optins
from capture.leads import tags
from capture.admin import bp
from capture.db import db
from capture.models import REVIEW_STATES, SUBSCRIPTION_STATES, Lead, Optin, Page
from capture.wording import counted


class RejectForm(FlaskForm):
    """Reject with a reason (kept on the lead and in its timeline)."""

    reason = StringField("Reason", validators=[
        DataRequired(message="Give a reason for rejecting."),
        Length(max=lifecycle.REASON_MAX_LENGTH),
    ])


class UpgradeForm(FlaskForm):
    """An upgrade the owner records by hand (a sale the postback did not report)."""

    amount = StringField("Amount", validators=[
        DataRequired(message="Enter the amount, like 19.90.")])
    currency = StringField("Currency", validators=[
        DataRequired(message="Enter a currency code, like USD.")])
    txn = StringField("Transaction id", validators=[Optional(), Length(max=200)])

    def validate_amount(self, field) -> None:
        """A positive amount with at most two decimals."""
        try:
            upgrades.parse_amount(field.data)
        except upgrades.UpgradeError as error:
            raise ValidationError(_without_field_name(error)) from None

    def validate_currency(self, field) -> None:
        """An ISO 4217 code."""
        try:
            upgrades.parse_currency(field.data)
        except upgrades.UpgradeError as error:
            raise ValidationError(_without_field_name(error)) from None


def _without_field_name(error: Exception) -> str:
    """'amount: x is not …' → 'x is not …' (the form shows it beside the field)."""
    text = str(error)
    return text.split(": ", 1)[1] if ": " in text else text


# --- the table ------------------------------------------------------------------------

@bp.get("/leads", endpoint="leads")
def leads_table():
    """Leads matching the search and filters, a page at a time."""
    filters, problems = queries.parse_filters(request.args)
    table = queries.lead_table(filters, after=_cursor("after"), before=_cursor("before"),
                                    per_page=current_app.config["LEADS_PER_PAGE"])
    return render_template(
        "admin/leads/index.html", filters=filters, problems=problems, table=table,
        pages=queries.pages_for_filter(), sources=queries.known_sources(),
        segments=queries.segments_for_filter(),
        review_states=REVIEW_STATES, subscription_states=SUBSCRIPTION_STATES,
        no_source=queries.NO_SOURCE, back=request.full_path.rstrip("?"),
    )


def _is_id(value: str) -> bool:
    """A row id as the table writes it: ASCII digits that fit a database integer."""
    return value.isascii() and value.isdigit() and len(value) <= 18


def _cursor(name: str) -> int | None:
    value = request.args.get(name, "")
    return int(value) if _is_id(value) else None


@bp.get("/leads/export.csv")
def leads_export():
    """The CSV of every lead the table's current filters match (not just one page)."""
    filters, _ = queries.parse_filters(request.args)
    lines = exports.csv_lines(filters=filters)
    name = f"leads-{clock.utcnow():%Y-%m-%d}.csv"
    return Response(stream_with_context(lines), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.post("/leads/bulk")
def leads_bulk():
    """Approve or reject the ticked leads."""
    back = _back_to_table(request.form.get("back"))
    limit = current_app.config["LEADS_BULK_LIMIT"]
    ids = [int(value) for value in request.form.getlist("lead") if _is_id(value)][:limit]
    action = request.form.get("action", "")
    if not ids:
        flash("Tick at least one lead first.", "error")
        return redirect(back)
    if action not in ("approve", "reject"):
        flash("Choose Approve or Reject.", "error")
        return redirect(back)
    try:
        changed = lifecycle.review_many(ids, action, request.form.get("reason", ""))
    except ValueError as error:
        flash(str(error), "error")
        return redirect(back)
    done = "Approved" if action == "approve" else "Rejected"
    unchanged = len(ids) - changed
    message = f"{done} {counted(changed, 'lead')}."
    if unchanged:
        message += f" {unchanged} already {done.lower()} or gone: left as they were."
    flash(message, "success")
    return redirect(back)


def _back_to_table(target: str | None) -> str:
    """The table with the owner's filters, never an address outside it."""
    table = url_for("admin.leads")
    if target and (target == table or target.startswith(table + "?")):
        return target
    return table


# --- one lead ---------------------------------------------------------------------------

def _lead_or_404(lead_id: int) -> Lead:
    lead = db.session.get(Lead, lead_id)
    if lead is None:
        abort(404)
    return lead


@bp.get("/leads/<int:lead_id>")
def lead(lead_id: int):
    """Everything about one lead and the owner's actions on it."""
    return _render_lead(_lead_or_404(lead_id))


def _render_lead(lead: Lead, reject_form: RejectForm | None = None,
                 upgrade_form: UpgradeForm | None = None, status: int = 200):
    page = lead.page
    if upgrade_form is None:
        upgrade_form = UpgradeForm(formdata=None, currency=page.currency if page else "USD")
    return render_template(
        "admin/leads/detail.html", lead=lead, page=page, history=queries.history(lead),
        fields=_field_values(lead, page), country=_country_name(lead.country),
        reject_form=reject_form or RejectForm(formdata=None), upgrade_form=upgrade_form,
        tags=tags.tag_rows(lead.id), optins=optins.of_lead(lead.id),
    ), status


def _field_values(lead: Lead, page: Page | None) -> list[tuple[str, str]]:
    """The page's own fields as (label, value), in the page's order; values whose field
    was since removed from the page keep their stored name as the label."""
    labels = {field["name"]: field["label"] for field in (page.fields if page else [])}
    values = dict(lead.fields or {})
    shown = [(labels[name], values.pop(name)) for name in labels if name in values]
    shown += sorted(values.items())
    return [(label, _as_text(value)) for label, value in shown]


def _as_text(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return "" if value is None else str(value)


def _country_name(code: str | None) -> str:
    """'DE' → 'Germany (DE)'; an unknown code as it is."""
    if not code:
        return ""
    country = pycountry.countries.get(alpha_2=code)
    return f"{country.name} ({code})" if country else code


@bp.post("/leads/<int:lead_id>/approve")
def lead_approve(lead_id: int):
    """Approve: the lead joins its page's sequence."""
    lead = _lead_or_404(lead_id)
    if lifecycle.approve(lead):
        flash(f"{lead.email} is approved.", "success")
    else:
        flash(f"{lead.email} was already approved.")
    return redirect(url_for("admin.lead", lead_id=lead.id))


@bp.post("/leads/<int:lead_id>/reject")
def lead_reject(lead_id: int):
    """Reject with a reason: the lead's sequences stop."""
    lead = _lead_or_404(lead_id)
    form = RejectForm()
    if not form.validate():
        return _render_lead(lead, reject_form=form, status=422)
    if lifecycle.reject(lead, form.reason.data):
        flash(f"{lead.email} is rejected.", "success")
    else:
        flash(f"{lead.email} was already rejected for that reason.")
    return redirect(url_for("admin.lead", lead_id=lead.id))


@bp.post("/leads/<int:lead_id>/optins/<int:optin_id>/review")
def lead_optin_review(lead_id: int, optin_id: int):
    """Approve or reject one of the person's later opt-ins (`decision`; a rejection
    needs a `reason`). The first opt-in is the lead's own review: lead_approve, lead_reject."""
    lead = _lead_or_404(lead_id)
    optin = db.session.get(Optin, optin_id)
    if optin is None or optin.lead_id != lead.id:
        abort(404)
    back = url_for("admin.lead", lead_id=lead.id, _anchor="optins")
    if erasure.is_erased(lead):
        flash(f"Lead #{lead.id} is erased: its opt-ins are not reviewed any more.", "error")
        return redirect(back)
    try:
        decision = optins.review(optin, request.form.get("decision", ""),
                                 request.form.get("reason", ""), by="owner")
    except ValueError as error:
        flash(str(error), "error")
        return redirect(back)
    if decision.changed:
        flash(decision.message, "success")
    else:
        flash(decision.message)
    return redirect(back)


@bp.post("/leads/<int:lead_id>/upgrade")
def lead_upgrade(lead_id: int):
    """Record an upgrade by hand; a transaction id seen before changes nothing."""
    lead = _lead_or_404(lead_id)
    form = UpgradeForm()
    if not form.validate():
        return _render_lead(lead, upgrade_form=form, status=422)
    txn = (form.txn.data or "").strip() or f"manual-{secrets.token_hex(8)}"
    upgrade, created = upgrades.record_upgrade(
        lead, upgrades.parse_amount(form.amount.data),
        upgrades.parse_currency(form.currency.data), txn, source="manual")
    if created:
        flash(f"Recorded an upgrade of {upgrade.amount:.2f} {upgrade.currency}.", "success")
    else:
        flash(f"Transaction {upgrade.txn} was recorded before; nothing changed.", "error")
    return redirect(url_for("admin.lead", lead_id=lead.id))


@bp.post("/leads/<int:lead_id>/unsubscribe")
def lead_unsubscribe(lead_id: int):
    """Unsubscribe on the lead's behalf (asked by reply or by phone, say)."""
    lead = _lead_or_404(lead_id)
    if lifecycle.unsubscribe(lead, source="owner"):
        flash(f"{lead.email} is unsubscribed; no more sequence emails go out.", "success")
    else:
        flash(f"{lead.email} was already unsubscribed.")
    return redirect(url_for("admin.lead", lead_id=lead.id))


@bp.route("/leads/<int:lead_id>/erase", methods=["GET", "POST"])
def lead_erase(lead_id: int):
    """GET asks to confirm; POST erases the person (the numbers stay) and suppresses
    the address as a keyed hash."""
    lead = _lead_or_404(lead_id)
    if erasure.is_erased(lead):
        flash(f"Lead #{lead.id} was already erased.")
        return redirect(url_for("admin.lead", lead_id=lead.id))
    if request.method == "GET":
        return render_template("admin/leads/erase.html", lead=lead)
    erasure.erase(lead, by="owner")
    # The address is not repeated here: the message travels in the session cookie.
    flash(f"Erased lead #{lead_id}. A new sign-up from its address will be ignored.",
          "success")
    return redirect(url_for("admin.leads"))
