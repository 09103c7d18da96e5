"""Blueprint for the URLs inside emails and from buyers: the open pixel, clicks,
unsubscribe and the upgrade postback. Thin: the work is in `leads.engagement`,
`leads.lifecycle` and `leads.upgrades`."""

import base64

from flask import (
    Blueprint,
    abort,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
)
from flask_babel import gettext
from sqlalchemy import select

from capture.leads import engagement
from capture.leads import decisions, lifecycle, upgrades
from capture import languages, links
from capture.mail import compose
from capture.public.forms import VisitorForm
from capture.db import csrf, db, is_unavailable, unavailable_reason
from capture.models import Enrollment, Lead

bp = Blueprint("tracking", __name__)

# The smallest transparent GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_POSTBACK_KEYS = {"lead", "amount", "currency", "txn", "sig"}


# The pixel's own headers: never cached, so every open is asked for.
PIXEL_HEADERS = {"Content-Type": "image/gif",
                 "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
                 "Pragma": "no-cache"}


def record_open_safely(token: str, user_agent: str | None) -> None:
    """Log a genuine open; an open is never worth a broken image, so a failure is
    logged (one line when the database is away) and the pixel shown all the same."""
    try:
        engagement.record_open(token, user_agent)
    except Exception as error:
        db.session.rollback()
        if is_unavailable(error):  # one line each, not a traceback per open
            current_app.logger.error("open not recorded, database unavailable: %s",
                                     unavailable_reason(error))
        else:
            current_app.logger.exception("open not recorded")


@bp.get("/o/<token>")
def pixel(token: str):
    """The open pixel: always the GIF, whatever the token; logs only genuine opens.
    (Served by `capture.public.tracking_wsgi` before Flask; this route answers HEAD.)"""
    record_open_safely(token, request.headers.get("User-Agent"))
    return PIXEL, 200, PIXEL_HEADERS


@bp.get("/c/<token>")
def click(token: str):
    """Log the click and go to the URL stored for this link; 404 for anything else.
    (A known token's click is served by `capture.public.tracking_wsgi` before Flask.)"""
    url = engagement.record_click(token, request.headers.get("User-Agent"))
    if url is None:
        abort(404)
    return redirect(url, code=302)


def _lead_for(token: str) -> tuple[Lead, int | None]:
    """The lead (and the email) an unsubscribe token names, or 404; the page speaks
    the email's language."""
    found = links.read_unsubscribe(token)
    lead = (db.session.scalar(select(Lead).where(Lead.public_ref == found[0]))
            if found else None)
    if lead is None:
        abort(404)
    languages.use(compose.delivery_language(lead, found[1]))
    return lead, found[1]


class UnsubscribeForm(VisitorForm):
    """The unsubscribe page's form: "Unsubscribe from everything" (the default) or,
    for a sequence's email, "Only stop these emails" (`choice=sequence`).

    Its CSRF token is checked for the sequence choice only. Unsubscribing from
    everything is also RFC 8058's one-click POST, which carries no cookie or token; a
    forged cross-site POST can do no more than that one-click could, to the one lead
    whose secret token it holds."""


def _unsubscribe_page(lead: Lead, enrollment: Enrollment | None, *, done: str = "",
                      status: int = 200, notice: str = ""):
    """The page of an unsubscribe link: the choices while there is one to make, else
    what the lead's subscription now is. `done`: "everything" or "sequence", just
    chosen. Not cached: it holds a CSRF token."""
    html = render_template(
        "unsubscribe.html", lead=lead, done=done, notice=notice,
        form=UnsubscribeForm(formdata=None),
        unsubscribed=lead.subscription in ("unsubscribed", "bounced"),
        sequence=enrollment.sequence if enrollment is not None else "",
        may_leave=lifecycle.may_leave(lead, enrollment),
        left=(enrollment is not None and enrollment.stop_reason == lifecycle.LEFT_BY_LEAD),
    )
    response = make_response(html, status)
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.get("/u/<token>")
def unsubscribe_page(token: str):
    """The choices: unsubscribe from everything, or (for a sequence's email) stop only
    that sequence. Never changes anything by itself: mail scanners open links."""
    lead, delivery_id = _lead_for(token)
    return _unsubscribe_page(lead, lifecycle.email_enrollment(lead, delivery_id))


@bp.post("/u/<token>")
@csrf.exempt  # RFC 8058; the sequence choice checks the form's token (UnsubscribeForm)
def unsubscribe(token: str):
    """Unsubscribe from everything: the page's default button, and RFC 8058 one-click
    (no cookie, login or CSRF token); 200, idempotent. With `choice=sequence` (and the
    page's CSRF token), leave only the sequence the email came from."""
    lead, delivery_id = _lead_for(token)
    one_click = "List-Unsubscribe" in request.form
    if not one_click and request.form.get("choice") == "sequence":
        enrollment = lifecycle.email_enrollment(lead, delivery_id)
        if not UnsubscribeForm().validate():
            notice = gettext("This page had expired. Please choose again.")
            return _unsubscribe_page(lead, enrollment, status=400, notice=notice)
        left = lifecycle.leave_sequence(lead, delivery_id)
        return _unsubscribe_page(lead, left or enrollment, done="sequence" if left else "")
    lifecycle.unsubscribe(lead, source="one-click" if one_click else "page",
                          delivery_id=delivery_id)
    return _unsubscribe_page(lead, None, done="everything")


@bp.route("/postback/review", methods=["GET", "POST"])
@csrf.exempt
def postback_review():
    """A buyer's decision on a lead (`lead`, `review`, `reason`, optionally `page` for
    the person's later opt-in there), signed like the upgrade postback.

    JSON answers: 200 taken (`changed: false` for a replay), 400 a missing or invalid
    value, 403 a bad signature, 404 an unknown lead or no opt-in on that page, 409 an
    erased person."""
    values = request.values
    if any(len(values.getlist(key)) > 1 for key in values):
        return {"ok": False, "error": "each parameter may be given once"}, 400
    params = {key: values[key] for key in values}
    missing = sorted({"lead", "review", "sig"} - set(params))
    if missing:
        return {"ok": False, "error": f"missing: {', '.join(missing)}"}, 400
    if not upgrades.signature_valid(params, current_app.config["POSTBACK_SECRET"]):
        return {"ok": False, "error": "bad signature"}, 403
    try:
        outcome = decisions.decide(params["lead"], params["review"], params.get("reason", ""),
                                   by="postback", page=params.get("page") or None)
    except decisions.DecisionError as error:
        return {"ok": False, "error": str(error)}, error.status
    return {"ok": True, "changed": outcome.changed, "returned": outcome.returned}, 200


@bp.route("/postback/upgrade", methods=["GET", "POST"])
@csrf.exempt
def postback_upgrade():
    """Record an upgrade reported by a store or buyer, signed with the postback secret.

    JSON answers: 200 recorded (or a replay of a known txn), 400 a missing or invalid
    value, 403 a bad signature, 404 an unknown lead."""
    values = request.values
    if any(len(values.getlist(key)) > 1 for key in values):
        return {"ok": False, "error": "each parameter may be given once"}, 400
    params = {key: values[key] for key in values}
    missing = sorted(_POSTBACK_KEYS - set(params))
    if missing:
        return {"ok": False, "error": f"missing: {', '.join(missing)}"}, 400
    if not upgrades.signature_valid(params, current_app.config["POSTBACK_SECRET"]):
        return {"ok": False, "error": "bad signature"}, 403
    try:
        amount = upgrades.parse_amount(params["amount"])
        currency = upgrades.parse_currency(params["currency"])
    except upgrades.UpgradeError as error:
        return {"ok": False, "error": str(error)}, 400
    lead = db.session.scalar(select(Lead).where(Lead.public_ref == params["lead"]))
    if lead is None:
        return {"ok": False, "error": "unknown lead"}, 404
    try:
        upgrade, created = upgrades.record_upgrade(lead, amount, currency, params["txn"],
                                                     source="postback")
    except upgrades.UpgradeError as error:
        return {"ok": False, "error": str(error)}, 400
    return {"ok": True, "upgrade": upgrade.id, "replay": not created}, 200
