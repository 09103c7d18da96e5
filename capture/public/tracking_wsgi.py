"""The open pixel and the click redirect, answered before Flask's request cycle.

They are the requests a list sends most of (every open, every click), and they need
no session, form, template or login: only the token read, one append and the answer.
Flask's request cycle (context, routing, session, hooks) cost more than that work
itself, so `TrackingPaths` answers `GET /o/<token>` and `GET /c/<token>` in front of
the app, with the blueprint's answers (`capture.public.tracking`) and the same
security headers (`capture.web.headers`). Whatever is not one of those answers goes
on to Flask, whose routes answer it as before: another method, a click on an unknown
token (the 404 page), a click that failed (the database away: the 503 page).
"""

from flask import Flask
from werkzeug.utils import redirect

from capture.leads import engagement
from capture.public.tracking import PIXEL, PIXEL_HEADERS, record_open_safely
from capture.web import headers

# What `headers.add_security_headers` gives each answer: the pixel is no HTML, the
# click's redirect is (its little "Redirecting..." page).
_HTML = headers.visitor_answer_headers(
    headers.content_security_policy(**headers.PUBLIC_CHANGES))
_PIXEL_ANSWER = [*PIXEL_HEADERS.items(), ("Content-Length", str(len(PIXEL))),
                 *headers.visitor_answer_headers(headers.NOT_HTML_POLICY).items()]


class TrackingPaths:
    """WSGI middleware: the pixel and the click of `app`, else `app` itself."""

    def __init__(self, app: Flask, wsgi_app) -> None:
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") == "GET":
            path = environ.get("PATH_INFO", "")
            kind, token = path[:3], path[3:]
            if kind == "/o/" and token and "/" not in token:
                return self._pixel(environ, start_response, token)
            if kind == "/c/" and token and "/" not in token:
                answer = self._click(environ, start_response, token)
                if answer is not None:
                    return answer
        return self.wsgi_app(environ, start_response)

    def _pixel(self, environ, start_response, token: str):
        with self.app.app_context():
            record_open_safely(token, environ.get("HTTP_USER_AGENT"))
        start_response("200 OK", list(_PIXEL_ANSWER))
        return [PIXEL]

    def _click(self, environ, start_response, token: str):
        try:
            with self.app.app_context():
                url = engagement.record_click(token, environ.get("HTTP_USER_AGENT"))
        except Exception:  # Flask's route answers it (and logs it) as it always did
            return None
        if url is None:
            return None
        response = redirect(url, code=302)
        response.headers.update(_HTML)
        return response(environ, start_response)


def init_app(app: Flask) -> None:
    """Put the tracking URLs in front of the app (inside ProxyFix, if any)."""
    app.wsgi_app = TrackingPaths(app, app.wsgi_app)
