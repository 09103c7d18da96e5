"""Blueprint for the links inside emails: unsubscribe (and, later, opens and clicks)."""

from flask import Blueprint, abort, render_template, request
from sqlalchemy import select

from capture import leads, tokens
from capture.extensions import csrf, db
from capture.models import Lead

bp = Blueprint("tracking", __name__)


def _lead_for(token: str) -> Lead:
    ref = tokens.read("unsubscribe", token)
    lead = db.session.scalar(select(Lead).where(Lead.public_ref == ref)) if ref else None
    if lead is None:
        abort(404)
    return lead


@bp.get("/u/<token>")
def unsubscribe_page(token: str):
    """A page with one button. Never unsubscribes by itself: mail scanners open links."""
    lead = _lead_for(token)
    return render_template("unsubscribe.html", lead=lead, done=False)


@bp.post("/u/<token>")
@csrf.exempt
def unsubscribe(token: str):
    """RFC 8058 one-click: no cookie, login or CSRF token; 200, idempotent."""
    lead = _lead_for(token)
    leads.unsubscribe(lead, source="one-click" if "List-Unsubscribe" in request.form else "page")
    return render_template("unsubscribe.html", lead=lead, done=True)
