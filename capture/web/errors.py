"""Error pages: a visitor sees one clear sentence, never a traceback.

A database that is locked or unreachable for a moment is not a bug: the request is
rolled back, logged once (one line, no traceback) and answered `503` with
`Retry-After`. A visitor's opt-in comes back with what they typed, so nothing is
lost silently: either the lead is stored (and they are thanked) or they are told
to submit again.
"""

from flask import Flask, current_app, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from capture import api
from capture.db import db
from capture.public.optin import csrf_failed

MESSAGES = {
    400: ("Bad request", "The request could not be understood."),
    404: ("Not found", "There is nothing at this address. Check the link and try again."),
    405: ("Not allowed", "This address does not accept that kind of request."),
    413: ("Too large", "What you sent is larger than this site accepts."),
    415: ("Not a form", "This address only accepts a submitted form."),
    429: ("Slow down", "Too many requests. Please wait a minute and try again."),
    500: ("Something went wrong", "Please try again in a moment."),
    503: ("Please try again in a moment",
          "The site is busy for a moment and could not finish that. "
          "Please try again in a few seconds."),
}
# What the opt-in form says when the sign-up could not be saved.
OPTIN_RETRY = ("We could not finish your sign-up just now. "
               "Please submit the form again in a moment.")
RETRY_AFTER_SECONDS = 5
# PostgreSQL refusing a write in a read-only transaction (a standby after a failover,
# default_transaction_read_only): the site cannot take writes now, which is no bug.
READ_ONLY_SQLSTATE = "25006"


def init_app(app: Flask) -> None:
    """Register the handlers."""
    app.register_error_handler(CSRFError, csrf_failed)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(sa_exc.DBAPIError, database_error)
    app.register_error_handler(sa_exc.TimeoutError, database_error)
    app.register_error_handler(Exception, unexpected_error)


# Machine-facing URLs: their errors are JSON with a stable shape.
JSON_PREFIXES = ("/postback/",)


def http_error(error: HTTPException):
    """An HTTP error as a short page with its status (JSON for machine URLs)."""
    if error.code is None or error.code < 400:
        return error
    if request.path.startswith("/api/"):  # no API operation matched: JSON all the same
        return api.errors.http_error(error)
    title, message = MESSAGES.get(error.code, (error.name, error.description))
    if request.path.startswith(JSON_PREFIXES):
        return {"ok": False, "error": message}, error.code
    return render_template("error.html", title=title, message=message), error.code


def unexpected_error(error: Exception):
    """A bug: logged with its traceback for the owner, a plain 500 for the visitor."""
    current_app.logger.exception("unhandled error")
    title, message = MESSAGES[500]
    return render_template("error.html", title=title, message=message), 500


def is_unavailable(error: Exception) -> bool:
    """True when the database could not be reached or was locked (a moment's
    trouble), not when a query was wrong (a bug)."""
    if isinstance(error, sa_exc.TimeoutError):  # every pooled connection was busy
        return True
    if getattr(getattr(error, "orig", None), "sqlstate", None) == READ_ONLY_SQLSTATE:
        return True
    return isinstance(error, (sa_exc.OperationalError, sa_exc.InterfaceError)) or bool(
        getattr(error, "connection_invalidated", False))


def unavailable_reason(error: Exception) -> str:
    """The first line of the driver's message, for one log line (no traceback, no
    SQL parameters)."""
    return str(getattr(error, "orig", None) or error).strip().splitlines()[0][:300]


def database_error(error: Exception):
    """503 with Retry-After for a locked or unreachable database; other database
    errors are bugs (500)."""
    if not is_unavailable(error):
        return unexpected_error(error)
    _rollback()
    current_app.logger.error("database unavailable for %s %s: %s", request.method,
                             request.path, unavailable_reason(error))
    title, message = MESSAGES[503]
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"}
    if request.path.startswith(JSON_PREFIXES):
        return {"ok": False, "error": message}, 503, headers
    response = None
    if request.endpoint == "pages.submit" and request.view_args:
        response = _optin_again(request.view_args.get("slug"))
    if response is None:
        response = _unavailable_page(title, message)
    response.status_code = 503
    response.headers.update(headers)
    return response


def _rollback() -> None:
    try:
        db.session.rollback()
    except sa_exc.SQLAlchemyError:  # the connection is gone; the session is reset anyway
        pass


def _optin_again(slug: str | None):
    """The opt-in page again, holding what the visitor typed, with a notice to submit
    it again; None when the page itself cannot be read now."""
    from capture.models import Page
    from capture.public.forms import form_class
    from capture.public.render import render_page

    try:
        page = db.session.scalar(select(Page).where(Page.slug == slug, Page.published))
        if page is None:
            return None
        return render_page(page, form_class(page)(), 503, OPTIN_RETRY)
    except sa_exc.SQLAlchemyError:
        _rollback()
        return None


def _unavailable_page(title: str, message: str):
    """The short 503 page; an opt-in's own values ride along in a "Try again" button,
    so nothing typed is lost even when the page itself cannot be read."""
    resubmit = []
    if request.endpoint == "pages.submit":
        resubmit = [(key, value) for key, values in request.form.lists() for value in values]
        message = OPTIN_RETRY
    try:
        return current_app.make_response(render_template(
            "unavailable.html", title=title, message=message, resubmit=resubmit,
            action=request.path))
    except sa_exc.SQLAlchemyError:  # a template that needed the database (the log-in)
        _rollback()
        return current_app.make_response(f"<!doctype html><title>{title}</title>"
                                         f"<h1>{title}</h1><p>{message}</p>")
