"""Error pages: a visitor sees one clear sentence, never a traceback.

A database that is locked or unreachable for a moment is not a bug: the request is
rolled back, logged once (one line, no traceback) and answered `503` with
`Retry-After`. A view may give its own answer then (`answer_unavailable`): the
visitor's opt-in comes back with what they typed, so nothing is lost silently:
either the lead is stored (and they are thanked) or they are told to submit again.
An area with its own error shape (the API's JSON) answers the HTTP errors under its
path itself (`answer_errors_under`), also for a URL that matched no view.
"""

from collections.abc import Callable, Sequence

from flask import Flask, Response, current_app, render_template, request
from flask_babel import lazy_gettext
from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from capture import languages
from capture.db import db, is_unavailable, unavailable_reason
from capture.models import Page

# In the language of the request: a page's for its visitors, English elsewhere.
# An error before a view chose it (an unknown page, a body too large or not a form)
# speaks the page's language when the URL names a page, else what the visitor's
# browser asks for (`speak_to_the_visitor`).
MESSAGES = {
    400: (lazy_gettext("Bad request"), lazy_gettext("The request could not be understood.")),
    404: (lazy_gettext("Not found"),
          lazy_gettext("There is nothing at this address. Check the link and try again.")),
    405: (lazy_gettext("Not allowed"),
          lazy_gettext("This address does not accept that kind of request.")),
    413: (lazy_gettext("Too large"),
          lazy_gettext("What you sent is larger than this site accepts.")),
    415: (lazy_gettext("Not a form"),
          lazy_gettext("This address only accepts a submitted form.")),
    429: (lazy_gettext("Slow down"),
          lazy_gettext("Too many requests. Please wait a minute and try again.")),
    500: (lazy_gettext("Something went wrong"), lazy_gettext("Please try again in a moment.")),
    503: (lazy_gettext("Please try again in a moment"),
          lazy_gettext("The site is busy for a moment and could not finish that. "
                       "Please try again in a few seconds.")),
}
RETRY_AFTER_SECONDS = 5
# Where the app keeps the answers views and areas registered (app.extensions).
PATH_HANDLERS = "capture.error_handlers_by_path"
UNAVAILABLE_ANSWERS = "capture.unavailable_answers"


def init_app(app: Flask) -> None:
    """Register the handlers."""
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(sa_exc.DBAPIError, database_error)
    app.register_error_handler(sa_exc.TimeoutError, database_error)
    app.register_error_handler(Exception, unexpected_error)


def answer_errors_under(app: Flask, prefix: str,
                        handler: Callable[[HTTPException], Response]) -> None:
    """Let `handler` answer every HTTP error under the path `prefix`, also when no
    view matched (so no blueprint's own handler could run)."""
    app.extensions.setdefault(PATH_HANDLERS, {})[prefix] = handler


def answer_unavailable(app: Flask, endpoint: str,
                       answer: Callable[[], Response | None]) -> None:
    """Let `answer` make the 503 response when the database fails during the view
    `endpoint`; when it returns None, the plain 503 page is sent."""
    app.extensions.setdefault(UNAVAILABLE_ANSWERS, {})[endpoint] = answer


# Machine-facing URLs: their errors are JSON with a stable shape.
JSON_PREFIXES = ("/postback/",)


def http_error(error: HTTPException):
    """An HTTP error as a short page with its status (JSON for machine URLs)."""
    if error.code is None or error.code < 400:
        return error
    for prefix, handler in current_app.extensions.get(PATH_HANDLERS, {}).items():
        if request.path.startswith(prefix):  # also when no view of the area matched
            return handler(error)
    title, message = MESSAGES.get(error.code, (error.name, error.description))
    if request.path.startswith(JSON_PREFIXES):
        return {"ok": False, "error": str(message)}, error.code
    by_header = speak_to_the_visitor()
    response = current_app.make_response(
        (render_template("error.html", title=title, message=message), error.code))
    if by_header:
        response.vary.add("Accept-Language")  # a cache must not give it to another
    return response


# The owner's side, which stays English.
OWNER_PREFIXES = ("/admin",)


def speak_to_the_visitor() -> bool:
    """Choose the language of an error no view chose one for: the page's when the
    URL names a published page (`/p/<slug>…`), else the best of the visitor's
    Accept-Language among ours (True: the answer depends on that header). An
    unpublished page answers as a missing one, so its language tells nothing. The
    owner's pages stay English."""
    if languages.chosen() or request.path.startswith(OWNER_PREFIXES):
        return False
    slug = (request.view_args or {}).get("slug") if request.path.startswith("/p/") else None
    if slug is not None:
        try:
            found = db.session.execute(select(Page.language).where(
                Page.slug == slug, Page.published)).first()
        except sa_exc.SQLAlchemyError:
            rollback()
            found = None
        if found is not None:
            languages.use(found.language)
            return False
    languages.use(languages.best_for(request.accept_languages))
    return True


def unexpected_error(error: Exception):
    """A bug: logged with its traceback for the owner, a plain 500 for the visitor."""
    current_app.logger.exception("unhandled error")
    title, message = MESSAGES[500]
    return render_template("error.html", title=title, message=message), 500


def database_error(error: Exception):
    """503 with Retry-After for a locked or unreachable database; other database
    errors are bugs (500)."""
    if not is_unavailable(error):
        return unexpected_error(error)
    rollback()
    current_app.logger.error("database unavailable for %s %s: %s", request.method,
                             request.path, unavailable_reason(error))
    title, message = MESSAGES[503]
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"}
    if request.path.startswith(JSON_PREFIXES):
        return {"ok": False, "error": str(message)}, 503, headers
    answer = current_app.extensions.get(UNAVAILABLE_ANSWERS, {}).get(request.endpoint)
    response = answer() if answer is not None else None
    if response is None:
        response = unavailable_page(title, message)
    response.status_code = 503
    response.headers.update(headers)
    return response


def rollback() -> None:
    """End the failed transaction, also when its connection is gone."""
    try:
        db.session.rollback()
    except sa_exc.SQLAlchemyError:  # the connection is gone; the session is reset anyway
        pass


def unavailable_page(title: str, message: str,
                     resubmit: Sequence[tuple[str, str]] = ()) -> Response:
    """The short 503 page; the `resubmit` values (an opt-in's own) ride along in a
    "Try again" button, so nothing typed is lost even when the page itself cannot be
    read."""
    try:
        return current_app.make_response(render_template(
            "unavailable.html", title=title, message=message, resubmit=list(resubmit),
            action=request.path))
    except sa_exc.SQLAlchemyError:  # a template that needed the database (the log-in)
        rollback()
        return current_app.make_response(f"<!doctype html><title>{title}</title>"
                                         f"<h1>{title}</h1><p>{message}</p>")
