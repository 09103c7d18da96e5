"""Security headers on every answer: Content-Security-Policy, framing, MIME sniffing,
referrer, and who may load the files the embed snippet loads on other sites.

No page of ours runs inline script or inline style (JavaScript and CSS come from
static/), so the policy lets only our own files run: an injected `<script>` or
`onclick=` does nothing. No page may be framed by another site (clickjacking); the
dashboard frames its own previews, whose answers set a policy of their own. A page
frames nothing from elsewhere, but for the video player of a page that has a video
(`allow_frame`).
"""

import functools
from urllib.parse import urlsplit

from flask import Flask, Response, g, request

# The policy of every page; a view may answer with its own (the sandboxed previews).
POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "font-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "frame-src": "'self'",
    "frame-ancestors": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
}
# An answer that is not HTML (the open pixel, JSON, static files) runs nothing; opened
# on its own, the browser's viewer shows it with inline styles of its own.
NOT_HTML_POLICY = ("default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
                   "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
# An owner's page text may show pictures from other sites (Markdown images).
PUBLIC_CHANGES = {"img-src": "'self' data: https:"}
# The dashboard never sends a URL of its own (ids, searches) to another site.
DASHBOARD_REFERRER = "same-origin"
PUBLIC_REFERRER = "strict-origin-when-cross-origin"
FRAMING = {"'none'": "DENY", "'self'": "SAMEORIGIN"}
# Files the embed snippet loads on other sites as JavaScript modules, which browsers
# fetch with CORS: public files, read without cookies, so any site may.
SHARED_STATIC = ("/static/proof-of-work.js", "/static/vendor/altcha/")


def init_app(app: Flask) -> None:
    """Add the headers to every answer of the app."""
    app.after_request(add_security_headers)


@functools.cache  # a handful of policies, built once each instead of per answer
def content_security_policy(**changes: str) -> str:
    """The policy with some directives changed: `style_src="'self' 'unsafe-inline'"`."""
    directives = {**POLICY, **{name.replace("_", "-"): value
                               for name, value in changes.items()}}
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def allow_form_target(url: str) -> None:
    """Let this answer's forms lead to `url`'s site: a browser applies form-action to
    where a form's answer redirects, such as a page's `redirect_url`."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        g.setdefault("form_targets", set()).add(f"{parts.scheme}://{parts.netloc}")


def allow_frame(origin: str) -> None:
    """Let this answer show a frame from `origin` (an `https://host`): the video
    player a page with a video inserts once the visitor asks for it."""
    parts = urlsplit(origin)
    if parts.scheme == "https" and parts.netloc and not parts.path:
        g.setdefault("frame_sources", set()).add(origin)


def add_security_headers(response: Response) -> Response:
    """CSP (unless the view set its own), X-Frame-Options to match its
    frame-ancestors (for browsers without CSP), nosniff and the Referrer-Policy."""
    dashboard = request.path.startswith("/admin")
    policy = response.headers.get("Content-Security-Policy")
    if policy is None and response.mimetype != "text/html":
        policy = NOT_HTML_POLICY
        response.headers["Content-Security-Policy"] = policy
    if policy is None:
        changes = {} if dashboard else dict(PUBLIC_CHANGES)
        targets = sorted(g.get("form_targets", ()))
        if targets:
            changes["form-action"] = " ".join([POLICY["form-action"], *targets])
        frames = sorted(g.get("frame_sources", ()))
        if frames:
            changes["frame-src"] = " ".join([POLICY["frame-src"], *frames])
        policy = content_security_policy(**changes)
        response.headers["Content-Security-Policy"] = policy
    response.headers.update(_beside_policy(policy))
    if request.path.startswith(SHARED_STATIC):
        response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers.setdefault("Referrer-Policy",
                                DASHBOARD_REFERRER if dashboard else PUBLIC_REFERRER)
    return response


def visitor_answer_headers(policy: str) -> dict[str, str]:
    """What `add_security_headers` gives a visitor's answer with this policy, for the
    answers made before Flask's request cycle (capture.public.tracking_wsgi)."""
    return {"Content-Security-Policy": policy, **_beside_policy(policy),
            "Referrer-Policy": PUBLIC_REFERRER}


@functools.cache
def _beside_policy(policy: str) -> dict[str, str]:
    """X-Frame-Options to match the policy's frame-ancestors (for browsers without
    CSP), and nosniff."""
    framing = FRAMING.get(_directive(policy, "frame-ancestors"))
    return {**({"X-Frame-Options": framing} if framing else {}),
            "X-Content-Type-Options": "nosniff"}


@functools.cache
def _directive(policy: str, name: str) -> str | None:
    for directive in policy.split(";"):
        key, _, value = directive.strip().partition(" ")
        if key == name:
            return value.strip()
    return None
