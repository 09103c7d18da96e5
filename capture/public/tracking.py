"""Blueprint for the URLs inside emails and from buyers: the open pixel, clicks,
unsubscribe and the upgrade postback. Thin: the work is in `leads.engagement`,
`leads.lifecycle` and `leads.upgrades`."""

import base64

from flask import Blueprint, abort, current_app, redirect, render_template, request
from sqlalchemy import select

from capture.leads import engagement
from capture.leads import lifecycle, upgrades
from capture import links
from capture.db import csrf, db, is_unavailable, unavailable_reason
from capture.models import Lead

bp = Blueprint("tracking", __name__)

# The smallest transparent GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_POSTBACK_KEYS = {"lead", "amount", "currency", "txn", "sig"}


@bp.get("/o/<token>")
def pixel(token: str):
    """The open pixel: always the GIF, whatever the token; logs only genuine opens."""
    try:
        engagement.record_open(token, request.headers.get("User-Agent"))
    except Exception as error:  # an open is never worth a broken image
        db.session.rollback()
        if is_unavailable(error):  # one line each, not a traceback per open
            current_app.logger.error("open not recorded, database unavailable: %s",
                                     unavailable_reason(error))
        else:
            current_app.logger.exception("open not recorded")
    return PIXEL, 200, {
        "Content-Type": "image/gif",
        "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
        "Pragma": "no-cache",
    }


@bp.get("/c/<token>")
def click(token: str):
    """Log the click and go to the URL stored for this link; 404 for anything else."""
    url = engagement.record_click(token, request.headers.get("User-Agent"))
    if url is None:
        abort(404)
    return redirect(url, code=302)


def _lead_for(token: str) -> tuple[Lead, int | None]:
    """The lead (and the email) an unsubscribe token names, or 404."""
    found = links.read_unsubscribe(token)
    lead = (db.session.scalar(select(Lead).where(Lead.public_ref == found[0]))
            if found else None)
    if lead is None:
        abort(404)
    return lead, found[1]


@bp.get("/u/<token>")
def unsubscribe_page(token: str):
    """A page with one button. Never unsubscribes by itself: mail scanners open links."""
    lead, _ = _lead_for(token)
    return render_template("unsubscribe.html", lead=lead, done=False)


@bp.post("/u/<token>")
@csrf.exempt
def unsubscribe(token: str):
    """RFC 8058 one-click: no cookie, login or CSRF token; 200, idempotent."""
    lead, delivery_id = _lead_for(token)
    source = "one-click" if "List-Unsubscribe" in request.form else "page"
    lifecycle.unsubscribe(lead, source=source, delivery_id=delivery_id)
    return render_template("unsubscribe.html", lead=lead, done=True)


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
