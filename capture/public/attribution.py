"""Visits and attribution: the visitor cookie, UTM parameters, ref and referrer."""

import secrets
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlsplit

from flask import Request, Response, current_app
from sqlalchemy import insert
from werkzeug.datastructures import MultiDict

from capture.public.bots import is_bot_user_agent
from capture.db import db
from capture.models import ATTRIBUTION_KEYS, Page, Visit

VISITOR_COOKIE = "capture_vid"
_MAX_VALUE = 200


def visitor_id(request: Request) -> tuple[str, bool]:
    """The visitor's first-party id and whether it is new (the cookie must be set)."""
    current = request.cookies.get(VISITOR_COOKIE, "")
    if len(current) == 32 and all(c in "0123456789abcdef" for c in current):
        return current, False
    return secrets.token_hex(16), True


def set_visitor_cookie(response: Response, vid: str) -> None:
    """Remember the visitor for VISITOR_COOKIE_DAYS."""
    config = current_app.config
    response.set_cookie(
        VISITOR_COOKIE,
        vid,
        max_age=config["VISITOR_COOKIE_DAYS"] * 86400,
        httponly=True,
        samesite="Lax",
        secure=config["SESSION_COOKIE_SECURE"],
    )


def attribution_from_query(args: Mapping[str, str]) -> dict[str, str | None]:
    """The utm_* and ref values of a query string, trimmed; absent ones are None."""
    result: dict[str, str | None] = {}
    for key in ATTRIBUTION_KEYS:
        value = args.get(key, "")
        value = "".join(ch for ch in value if ch.isprintable()).strip()[:_MAX_VALUE]
        result[key] = value or None
    return result


def record_visit(page: Page, request: Request, vid: str, connection=None,
                 variant: str | None = None) -> int:
    """Store one page view with its attribution and the page variant shown (on
    `connection`, else the session's); its id (committed by the caller)."""
    return _add_visit(page, request, vid, request.referrer, request.url,
                      attribution_from_query(request.args), connection, variant)


def record_embedded_visit(page: Page, request: Request, host_url: str | None,
                          host_referrer: str | None) -> int:
    """Store one view of a page's form embedded on another site; its id (committed by
    the caller). The host page's address is the landing URL and its query the
    attribution; when it carries none, the snippet's own query (`?utm_source=…` on its
    action or token URL) is used. The visitor cookie cannot travel across sites, so
    each view gets a visitor id of its own."""
    landing = _web_url(host_url)
    attribution = attribution_from_query(MultiDict(parse_qsl(urlsplit(landing or "").query)))
    if not any(attribution.values()):
        attribution = attribution_from_query(request.args)
    return _add_visit(page, request, secrets.token_hex(16), _web_url(host_referrer),
                      landing, attribution)


# A plain INSERT built once: every page view writes a visit, and the ORM's unit of
# work for one row costs several times the statement.
_INSERT_VISIT = insert(Visit.__table__)


def _add_visit(page: Page, request: Request, vid: str, referrer: str | None,
               landing_url: str | None, attribution: dict[str, str | None],
               connection=None, variant: str | None = None) -> int:
    """Insert the visit row: values cut to their columns, the user agent from the
    request, bots marked. Returns its id."""
    user_agent = request.headers.get("User-Agent", "")
    connection = connection if connection is not None else db.session.connection()
    result = connection.execute(_INSERT_VISIT, {
        "page_id": page.id,
        "visitor_id": vid,
        "referrer": (referrer or "")[:1000] or None,
        "landing_url": (landing_url or "")[:2000] or None,
        "user_agent": user_agent[:500] or None,
        "is_bot": is_bot_user_agent(user_agent),
        "variant": variant,
        **attribution,
    })
    return result.inserted_primary_key[0]


def _web_url(value: str | None) -> str | None:
    """An http(s) URL as sent by a browser script, without control characters; None for
    anything else (a javascript: or data: URL is no place a visitor came from)."""
    if not isinstance(value, str):
        return None
    value = "".join(ch for ch in value if ch.isprintable()).strip()
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    return value if parts.scheme in ("http", "https") and parts.netloc else None
