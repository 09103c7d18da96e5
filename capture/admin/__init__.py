"""The owner dashboard under /admin: one blueprint, one module per area.

Every view needs a logged-in owner (checked once, before every request of the
blueprint); every form carries a CSRF token (CSRFProtect), and a POST from another
site's origin is refused outright.
"""

import hmac
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import Blueprint, Config, Flask, abort, current_app, request
from flask_login import current_user

from capture.db import db, login_manager
from capture.models import Owner

bp = Blueprint("admin", __name__, url_prefix="/admin")
PUBLIC_ENDPOINTS = {"admin.login"}
# Views that accept a file, and their body limit from the settings.
UPLOAD_LIMITS: dict[str, Callable[[Config], int]] = {}
NAVIGATION = (
    ("admin.overview", "Overview"), ("admin.pages", "Pages"), ("admin.images", "Images"),
    ("admin.leads", "Leads"),
    ("admin.segments", "Segments"),
    ("admin.sequences", "Sequences"), ("admin.broadcasts", "Broadcasts"),
    ("admin.sources", "Sources"), ("admin.costs", "Ad spend"),
    ("admin.deliveries", "Deliveries"), ("admin.outbox", "Outbox"),
    ("admin.webhooks", "Webhooks"),
    ("admin.tokens", "API tokens"),
)


@login_manager.user_loader
def load_owner(session_id: str) -> Owner | None:
    """The owner of a session, or None (logged out, or the owner logged out since)."""
    owner_id, _, token = session_id.partition(".")
    owner = db.session.get(Owner, int(owner_id)) if owner_id.isdigit() else None
    if owner is None or not token or not hmac.compare_digest(token, owner.session_token):
        return None
    return owner


@bp.url_value_preprocessor
def body_limit(endpoint: str | None, values: dict | None) -> None:
    """A page's texts may be long (and multi-byte): the editor gets more room than the
    visitors' forms, and a logged-in owner's upload more still (UPLOAD_LIMITS). Set
    here because URL value preprocessors run before every before_request function,
    and the app's NUL-byte check reads the form first, with the visitors' limit."""
    if endpoint in PUBLIC_ENDPOINTS:
        return
    limit = current_app.config["ADMIN_MAX_CONTENT_LENGTH"]
    if endpoint in UPLOAD_LIMITS and current_user.is_authenticated:
        limit = UPLOAD_LIMITS[endpoint](current_app.config)
    request.max_content_length = limit


@bp.before_request
def require_owner():
    """Log-in for every dashboard page; no cross-site form posts."""
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        origin = request.headers.get("Origin")
        if origin and origin != "null" and not _same_origin(origin):
            abort(403)
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


def _same_origin(origin: str) -> bool:
    """True when the Origin header names this site (the request's host or BASE_URL)."""
    host = urlsplit(origin).netloc
    return host in (request.host, urlsplit(current_app.config["BASE_URL"]).netloc)


@bp.context_processor
def navigation() -> dict:
    """The sidebar: the dashboard areas this app has."""
    views = current_app.view_functions
    return {"admin_nav": [(e, label) for e, label in NAVIGATION if e in views],
            "admin_area": _area(request.endpoint or ""), "current_user": current_user}


def _area(endpoint: str) -> str:
    """The sidebar entry a view belongs to: admin.lead and admin.leads_export are
    Leads, admin.pages_edit is Pages …"""
    for area, _ in NAVIGATION:
        singular = area.removesuffix("s")
        if endpoint in (area, singular) or endpoint.startswith((area + "_", singular + "_")):
            return area
    return ""


@bp.after_request
def no_caching(response):
    """Dashboard pages hold private data: never stored by browsers or proxies."""
    response.headers["Cache-Control"] = "private, no-store"
    return response


def init_app(app: Flask) -> None:
    """Register the dashboard and its log-in."""
    from capture.admin import (  # noqa: F401  (each module registers its views on bp)
        account,
        auth,
        broadcasts,
        costs,
        deliveries,
        images,
        imports,
        lead_tags,
        leads,
        outbox,
        overview,
        page_actions,
        page_designs,
        page_tests,
        pages,
        segments,
        sequences,
        sources,
        tokens,
        webhooks,
    )

    # No global context processor: visitor pages never look at the login state.
    login_manager.init_app(app, add_context_processor=False)
    app.register_blueprint(bp)
