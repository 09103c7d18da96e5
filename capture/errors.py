"""Error pages: a visitor sees one clear sentence, never a traceback."""

from flask import Flask, current_app, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from capture.pages import csrf_failed

MESSAGES = {
    400: ("Bad request", "The request could not be understood."),
    404: ("Not found", "There is nothing at this address. Check the link and try again."),
    405: ("Not allowed", "This address does not accept that kind of request."),
    413: ("Too large", "What you sent is larger than this site accepts."),
    415: ("Not a form", "This address only accepts a submitted form."),
    429: ("Slow down", "Too many requests. Please wait a minute and try again."),
    500: ("Something went wrong", "Please try again in a moment."),
}


def init_app(app: Flask) -> None:
    """Register the handlers."""
    app.register_error_handler(CSRFError, csrf_failed)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, unexpected_error)


# Machine-facing URLs: their errors are JSON with a stable shape.
JSON_PREFIXES = ("/postback/",)


def http_error(error: HTTPException):
    """An HTTP error as a short page with its status (JSON for machine URLs)."""
    if error.code is None or error.code < 400:
        return error
    title, message = MESSAGES.get(error.code, (error.name, error.description))
    if request.path.startswith(JSON_PREFIXES):
        return {"ok": False, "error": message}, error.code
    return render_template("error.html", title=title, message=message), error.code


def unexpected_error(error: Exception):
    """A bug: logged with its traceback for the owner, a plain 500 for the visitor."""
    current_app.logger.exception("unhandled error")
    title, message = MESSAGES[500]
    return render_template("error.html", title=title, message=message), 500
