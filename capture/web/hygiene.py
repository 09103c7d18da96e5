"""Request hygiene: refuse what no page, form or link of ours ever sends.

A NUL byte is never part of a real URL or form value, and PostgreSQL cannot store
one; refusing it here keeps every view (and every query) from having to. A body
larger than the limit is refused, also when it comes without a Content-Length. A
JSON body is for the API only: sent to a form, it is refused before the CSRF check,
whose failure page would otherwise rebuild the form from it.
"""

from flask import Flask, abort, request

# What a browser's form submits.
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# Blueprints that check the type of a body themselves: the API reads JSON, the embed
# answers a script in JSON with CORS headers, the email providers' webhooks read JSON.
CHECK_OWN_BODIES = {"api", "embed", "mail_hooks"}


def init_app(app: Flask) -> None:
    """Check every request before its view runs (and before the CSRF check: the
    handlers registered here run first)."""
    app.before_request(refuse_oversized_streams)
    app.before_request(refuse_json_on_forms)
    app.before_request(refuse_nul_bytes)


def refuse_oversized_streams() -> None:
    """413 for a body sent without a Content-Length (chunked) that runs to the size
    limit: the form parser would cut it there without a word. (A Content-Length
    over the limit is refused before anything is read.)"""
    limit = request.max_content_length
    if limit is None or request.content_length is not None:
        return
    if "chunked" not in request.headers.get("Transfer-Encoding", "").lower():
        return
    if len(request.get_data(cache=True)) >= limit:  # reads at most `limit` bytes
        abort(413)


# Views that clean their query values themselves (the opt-in page strips control
# characters from utm_* and ref), so an odd ad link still shows the page.
CLEANS_QUERY = {"pages.show"}


def refuse_json_on_forms() -> None:
    """415 for a JSON body sent anywhere but the API. Flask-WTF builds a form from a
    JSON body with `request.get_json()`, which fails on bytes that are not JSON (or
    on JSON that is not an object) in the middle of an error page."""
    if request.method in ("POST", "PUT", "PATCH") and request.is_json \
            and request.blueprint not in CHECK_OWN_BODIES:
        abort(415)


def refuse_nul_bytes() -> None:
    """400 for a NUL byte in the path, the query string or a form value."""
    if "\x00" in request.path:
        abort(400)
    query = request.query_string.replace(b"%00", b"\x00")
    if b"\x00" in query and request.endpoint not in CLEANS_QUERY:
        abort(400)
    if request.method in ("POST", "PUT", "PATCH") and request.mimetype in FORM_TYPES:
        for key, values in request.form.lists():
            if "\x00" in key or any("\x00" in value for value in values):
                abort(400)
