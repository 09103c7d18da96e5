"""Dashboard area: webhooks — the endpoints that receive lead events, their signing
secrets, their recent deliveries with a button to send one again, and a test event."""

from flask import abort, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import BooleanField, SelectField, SelectMultipleField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from capture.webhooks import endpoints, outbound
from capture.webhooks.events import EVENTS
from capture.admin import bp
from capture.db import db
from capture.models import Page, Webhook, WebhookDelivery

PER_PAGE = 50
# What each event means, beside its checkbox.
EVENT_HINTS = {
    "lead.created": "someone opted in (a repeat sign-up of a known address is not a new lead)",
    "lead.confirmed": "a lead clicked the double opt-in link",
    "lead.approved": "a lead was approved, by the page's rules or by you",
    "lead.rejected": "a lead was rejected, with the reason",
    "lead.unsubscribed": "a lead unsubscribed",
    "lead.complained": "a lead marked an email as spam (they are unsubscribed)",
    "upgrade.recorded": "a lead bought an upgrade (postback, or entered by hand)",
}
FILTERS = {"": "All", "pending": "Pending", "failed": "Failed", "delivered": "Delivered"}


class WebhookForm(FlaskForm):
    """An endpoint as the owner sets it up."""

    url = StringField("Endpoint URL")
    events = SelectMultipleField("Events", choices=[SelectChoice(e) for e in EVENTS],
                                 widget=ListWidget(prefix_label=False),
                                 option_widget=CheckboxInput())
    page = SelectField("Page", validate_choice=False)
    active = BooleanField("Active: send events to this endpoint", default=True)

    def set_pages(self) -> None:
        """The page filter's choices: every page, or all of them."""
        pages = db.session.scalars(select(Page).order_by(Page.slug)).all()
        self.page.choices = [SelectChoice("", "Every page")] + [
            SelectChoice(str(p.id), f"/p/{p.slug} · {p.title}") for p in pages]

    def validate_url(self, field) -> None:
        try:
            field.data = endpoints.check_url(field.data)
        except outbound.UrlError as error:
            raise ValidationError(str(error)) from None

    def validate_events(self, field) -> None:
        if not field.data:
            raise ValidationError("Choose at least one event.")

    def validate_page(self, field) -> None:
        if field.data and field.data not in {choice.value for choice in self.page.choices}:
            raise ValidationError("That page no longer exists; choose another.")

    def apply(self, webhook: Webhook) -> None:
        """Copy the checked values onto the endpoint."""
        webhook.url = self.url.data
        webhook.events = [event for event in EVENTS if event in self.events.data]
        webhook.page_id = int(self.page.data) if self.page.data else None
        webhook.active = bool(self.active.data)


def _webhook_or_404(webhook_id: int) -> Webhook:
    webhook = db.session.get(Webhook, webhook_id)
    if webhook is None:
        abort(404)
    return webhook


def _editor(form: WebhookForm, webhook: Webhook | None, status: int = 200):
    return render_template("admin/webhooks/form.html", form=form, webhook=webhook,
                           hints=EVENT_HINTS), status


@bp.get("/webhooks", endpoint="webhooks")
def webhooks_index():
    """Every endpoint with what is waiting, what failed and its latest delivery."""
    return render_template("admin/webhooks/index.html", rows=endpoints.overview())


@bp.route("/webhooks/new", methods=["GET", "POST"])
def webhooks_new():
    """Add an endpoint; its signing secret is made here and shown on its page."""
    form = WebhookForm() if request.method == "POST" else WebhookForm(formdata=None)
    form.set_pages()
    if request.method == "GET":
        form.events.data = list(EVENTS)
        return _editor(form, None)
    if not form.validate():
        return _editor(form, None, 422)
    webhook = Webhook(secret=endpoints.new_secret())
    form.apply(webhook)
    db.session.add(webhook)
    db.session.commit()
    flash("Webhook added. Copy its signing secret below into the receiving app to check "
          "each request's signature.", "success")
    return redirect(url_for("admin.webhook", webhook_id=webhook.id))


@bp.get("/webhooks/<int:webhook_id>")
def webhook(webhook_id: int):
    """One endpoint: its settings, its secret, its deliveries (newest first)."""
    hook = _webhook_or_404(webhook_id)
    status = request.args.get("status", "")
    status = status if status in FILTERS else ""
    number = min(max(request.args.get("page", 1, type=int) or 1, 1), 10**9)
    rows, total = endpoints.deliveries_of(hook.id, status or None,
                                         offset=(number - 1) * PER_PAGE, limit=PER_PAGE)
    pages = max((total + PER_PAGE - 1) // PER_PAGE, 1)
    if number > pages:
        return redirect(url_for("admin.webhook", webhook_id=hook.id, status=status or None,
                                page=pages))
    return render_template("admin/webhooks/detail.html", webhook=hook, rows=rows, total=total,
                           status=status, filters=FILTERS, page=number, pages=pages)


@bp.route("/webhooks/<int:webhook_id>/edit", methods=["GET", "POST"])
def webhooks_edit(webhook_id: int):
    """Change the URL, the events, the page filter or whether it is active."""
    hook = _webhook_or_404(webhook_id)
    if request.method == "GET":
        form = WebhookForm(formdata=None, url=hook.url, events=list(hook.events),
                           page=str(hook.page_id or ""), active=hook.active)
        form.set_pages()
        return _editor(form, hook)
    form = WebhookForm()
    form.set_pages()
    if not form.validate():
        return _editor(form, hook, 422)
    form.apply(hook)
    db.session.commit()
    flash("Webhook saved.", "success")
    return redirect(url_for("admin.webhook", webhook_id=hook.id))


@bp.post("/webhooks/<int:webhook_id>/enable")
def webhooks_enable(webhook_id: int):
    """Send events again; deliveries that waited go out on the next run."""
    return _set_active(_webhook_or_404(webhook_id), True)


@bp.post("/webhooks/<int:webhook_id>/disable")
def webhooks_disable(webhook_id: int):
    """Stop sending: no new events are queued and queued ones wait."""
    return _set_active(_webhook_or_404(webhook_id), False)


def _set_active(hook: Webhook, active: bool):
    hook.active = active
    db.session.commit()
    if active:
        flash(f"Webhook {hook.url} is active again.", "success")
    else:
        flash(f"Webhook {hook.url} is disabled: no new events are queued for it, and "
              "deliveries already queued wait until you enable it.", "success")
    return redirect(url_for("admin.webhook", webhook_id=hook.id))


@bp.post("/webhooks/<int:webhook_id>/secret")
def webhooks_secret(webhook_id: int):
    """Replace the signing secret (the old one stops verifying at once)."""
    hook = _webhook_or_404(webhook_id)
    hook.secret = endpoints.new_secret()
    db.session.commit()
    flash("New signing secret made: every request from now on is signed with it, so put "
          "it in the receiving app.", "success")
    return redirect(url_for("admin.webhook", webhook_id=hook.id))


@bp.post("/webhooks/<int:webhook_id>/test")
def webhooks_test(webhook_id: int):
    """Post a `webhook.test` event about a made-up lead now, and show the answer."""
    hook = _webhook_or_404(webhook_id)
    delivery = endpoints.send_test(hook)
    if delivery.status == "delivered":
        flash(f"Test event delivered: HTTP {delivery.status_code} in "
              f"{delivery.response_ms} ms.", "success")
    else:
        flash(f"Test event not delivered: {delivery.error}", "error")
    return redirect(url_for("admin.webhook", webhook_id=hook.id))


@bp.route("/webhooks/<int:webhook_id>/delete", methods=["GET", "POST"])
def webhooks_delete(webhook_id: int):
    """GET asks to confirm; POST removes the endpoint and its deliveries."""
    hook = _webhook_or_404(webhook_id)
    if request.method == "GET":
        return render_template("admin/webhooks/delete.html", webhook=hook)
    url = hook.url
    endpoints.delete(hook)
    flash(f"Deleted the webhook {url} and its deliveries.", "success")
    return redirect(url_for("admin.webhooks"))


@bp.post("/webhooks/deliveries/<int:delivery_id>/resend")
def webhook_delivery_resend(delivery_id: int):
    """Queue one delivery again: it is posted on the next scheduler run."""
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        abort(404)
    hook = delivery.webhook
    try:
        endpoints.resend(delivery)
    except ValueError as error:
        flash(f"Not queued: {error}", "error")
    else:
        note = "" if hook.active else " once you enable the webhook"
        flash(f"Delivery {delivery_id} ({delivery.event}) is queued: it is posted on the next "
              f"scheduler run{note}.", "success")
    status = request.form.get("status", "")
    return redirect(url_for("admin.webhook", webhook_id=hook.id,
                            status=status if status in FILTERS and status else None))
