"""Blueprint for the embeddable form: sign-ups posted from other sites and the form
token their script fetches (the copy-paste snippet an owner puts on their site is
`capture.public.render.snippet`).

A form on another site cannot carry this site's CSRF cookie, so `POST /p/<slug>/embed`
is exempt from CSRF and protected instead by the page's allowlist of origins, the
honeypot, the fill-time token (always on the script's form), the proof of work (on a
page that asks for one), the per-client rate limit and double opt-in: a page must
have double opt-in to be embedded, so an address typed into someone else's site gets
nothing but a confirmation email.
"""

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext, lazy_gettext
from sqlalchemy import select

from capture import languages
from capture.public import bots
from capture.leads import intake, optin
from capture.public.attribution import record_embedded_visit
from capture.db import csrf, db
from capture.models import Page, Visit
from capture.public.forms import OptInForm, form_class, optin_values
from capture.origins import OPAQUE, request_origin
from capture.public.render import (
    FIX_FIELDS,
    FORM_EXPIRED,
    HOST_REFERRER_FIELD,
    HOST_URL_FIELD,
    render_form_again,
)
from capture.web.hygiene import FORM_TYPES

bp = Blueprint("embed", __name__)
PREFLIGHT_MAX_AGE = 600
RATE_LIMITED = lazy_gettext("Too many sign-ups from your network. Please wait a minute "
                            "and try again.")
TOO_MANY_CHALLENGES = lazy_gettext("Too many requests from your network. Please wait a "
                                   "minute and try again.")
NOT_FOUND = lazy_gettext("There is no sign-up form at this address.")
NOT_A_FORM = lazy_gettext("This address only accepts a submitted form.")


def embeddable(page: Page, origin: str | None) -> bool:
    """True when `origin` may post this page's form: it is on the page's allowlist,
    and the page has double opt-in."""
    return origin is not None and page.double_opt_in and origin in (page.allowed_origins or [])


def _page(slug: str) -> Page | None:
    return db.session.scalar(select(Page).where(Page.slug == slug, Page.published))


def _wants_json() -> bool:
    """A script's `fetch` (Accept: application/json or X-Requested-With), not a
    browser's own form post."""
    if request.headers.get("X-Requested-With"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def _answer(status: int, message: str, title: str = "", **headers: str) -> Response:
    """An error as JSON `{"ok": false, "error": …}` for a script, else a short page."""
    if _wants_json():
        response = make_response(jsonify(ok=False, error=str(message)), status)
    else:
        response = make_response(render_template(
            "error.html", title=title or gettext("Sign-up not sent"), message=message), status)
    response.headers.update(headers)
    return response


def _with_cors(response: Response, origin: str) -> Response:
    """Let the allowed origin's script read the answer (no cookies: none are needed)."""
    response.headers["Access-Control-Allow-Origin"] = origin
    return response


@bp.after_request
def _vary_on_origin(response: Response) -> Response:
    """Every answer here depends on the Origin header: caches must keep them apart."""
    response.vary.add("Origin")
    response.headers["Cache-Control"] = "no-store"
    return response


def _checked(slug: str) -> tuple[Page | None, str | None, Response | None]:
    """The page and the request's origin, or the refusal to send (404, 403)."""
    page = _page(slug)
    if page is None:
        return None, None, _answer(404, NOT_FOUND, gettext("Not found"))
    languages.use(page.language)
    origin = request_origin(request)
    if embeddable(page, origin):
        return page, origin, None
    if origin is None:
        message = gettext("This sign-up form only accepts sign-ups from the sites its owner "
                          "allowed, and this request did not say which site it came from.")
    elif origin == OPAQUE:
        message = gettext("This sign-up form only accepts sign-ups from the sites its owner "
                          "allowed, and this request came from a page without a web address "
                          "(a sandboxed frame or a local file).")
    elif not page.allowed_origins or not page.double_opt_in:
        message = gettext("This page does not accept sign-ups from other sites.")
    else:
        message = gettext("This page does not accept sign-ups from %(site)s.", site=origin)
    current_app.logger.info("embedded sign-up for %s refused from %s", slug, origin or "-")
    return page, origin, _answer(403, message, gettext("Not allowed here"))


@bp.route("/p/<slug>/embed", methods=["OPTIONS"])
@bp.route("/p/<slug>/embed/token", methods=["OPTIONS"])
@bp.route("/p/<slug>/embed/challenge", methods=["OPTIONS"])
def preflight(slug: str):
    """CORS preflight: what an allowed site's script may send (for a fetch with a
    header such as X-Requested-With)."""
    page, origin, refusal = _checked(slug)
    if refusal is not None:
        return refusal
    response = make_response("", 204)
    response.headers.update({
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": "Accept, Content-Type, X-Requested-With",
        "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE),
    })
    return _with_cors(response, origin)


@bp.get("/p/<slug>/embed/token", provide_automatic_options=False)
def token(slug: str):
    """A fresh fill-time token for the snippet's script, recording the view of the
    embedded form with the host page's attribution (`?url=…&referrer=…`)."""
    page, origin, refusal = _checked(slug)
    if refusal is not None:
        return refusal
    visit_id = record_embedded_visit(page, request, request.args.get("url"),
                                     request.args.get("referrer"))
    db.session.commit()
    return _with_cors(jsonify(started=bots.form_token(page.id, visit_id, None)), origin)


@bp.get("/p/<slug>/embed/challenge", provide_automatic_options=False)
def challenge(slug: str):
    """A fresh proof-of-work challenge for the embedded form's widget (JSON), for an
    allowed site's page that asks for one; 404 otherwise, 429 past
    POW_CHALLENGE_RATE_LIMIT."""
    page, origin, refusal = _checked(slug)
    if refusal is not None:
        return refusal
    if not page.proof_of_work:
        return _with_cors(_answer(404, NOT_FOUND, "Not found"), origin)
    if not bots.rate_limit().allow(request.remote_addr or "unknown", "challenge"):
        return _with_cors(_answer(429, TOO_MANY_CHALLENGES, "Slow down",
                                  **{"Retry-After": "60"}), origin)
    return _with_cors(jsonify(bots.proof_challenge(page)), origin)


@bp.post("/p/<slug>/embed", provide_automatic_options=False)
def submit(slug: str):
    """An opt-in from a form on an allowed site: the same checks and outcome as the
    page's own form; `303` to the thanks page, or JSON for a script."""
    page, origin, refusal = _checked(slug)
    if refusal is not None:
        return refusal
    if request.mimetype not in FORM_TYPES:
        return _with_cors(_answer(415, NOT_A_FORM, gettext("Not a form")), origin)
    if not bots.rate_limit().allow(request.remote_addr or "unknown"):
        return _with_cors(_answer(429, RATE_LIMITED, gettext("Slow down"),
                                  **{"Retry-After": "60"}), origin)

    form = form_class(page)(meta={"csrf": False})
    # Cookies do not travel across sites, so the token is bound to the page alone.
    verdict, started = bots.check_form_token(form.started.data, page.id, None)
    if verdict == bots.EXPIRED:
        form.started.data = None
    if not form.validate():
        return _with_cors(_invalid(page, form, started), origin)
    if verdict == bots.EXPIRED:
        return _with_cors(_expired(page, form, started), origin)
    proof = bots.check_proof(page, request.form.get(bots.PROOF_FIELD),
                             started.get("v") if started else None)
    if proof in bots.PROOF_NOTICES:
        return _with_cors(_again(page, form, started, bots.PROOF_NOTICES[proof]), origin)
    if form.website.data or _trapped(verdict) or proof != bots.FINE:
        # Trapped: answer like a success so the bot learns nothing; store nothing.
        return _with_cors(_success(page), origin)

    signup = optin.OptIn(
        email=form.email.data,
        **optin_values(page, form),
        client_ip=request.remote_addr,
        visit_id=_visit(page, started),
    )
    # The same answer, and no email sent here, for a new, a known and a suppressed
    # address: the sign-up is queued (or stored) and its confirmation email queued
    # for the scheduler.
    intake.receive(page, signup)
    return _with_cors(_success(page), origin)


def _trapped(verdict: str) -> bool:
    """True for a sign-up the fill-time token gives away as a bot's. The script-free
    snippet has no token, so a post without one passes, unless it is the script's
    form: the script fills the host page's address at once and asks for JSON, and
    fetched a token on load, so its form without one was sent too fast to get it."""
    if verdict == bots.MISSING:
        return _wants_json() or bool(request.form.get(HOST_URL_FIELD))
    return verdict != bots.FINE


# Exempt from CSRF by name: the origin allowlist above takes its place.
csrf.exempt(submit)


def _visit(page: Page, started: dict | None) -> int:
    """The id of the view the sign-up came from: the one recorded when the script
    fetched its token, else one recorded now from the host page's address (the
    script's hidden field, or the Referer of a script-free post). Committed, so it
    counts even when the address turns out to be suppressed."""
    if started and isinstance(started.get("v"), int):
        visit_id = db.session.scalar(select(Visit.id).where(Visit.id == started["v"]))
        if visit_id is not None:
            return visit_id
    visit_id = record_embedded_visit(
        page, request, request.form.get(HOST_URL_FIELD) or request.referrer,
        request.form.get(HOST_REFERRER_FIELD))
    db.session.commit()
    return visit_id


def _success(page: Page) -> Response:
    """The page's redirect URL or its thanks page: a `303` for a browser's post, and
    for a script `{"ok": true, "redirect": url}` (absolute: it runs on another site)."""
    if _wants_json():
        url = page.redirect_url or url_for("pages.thanks", slug=page.slug, _external=True)
        return jsonify(ok=True, redirect=url)
    return redirect(page.redirect_url or url_for("pages.thanks", slug=page.slug), code=303)


def _expired(page: Page, form: OptInForm, started: dict | None) -> Response:
    """A form left open past FORM_MAX_AGE_SECONDS: `422` asking to send it again, with
    a fresh token (for the script: `started`, which it puts into its form)."""
    if _wants_json():
        fresh = bots.form_token(page.id, _visit(page, started), None)
        return make_response(jsonify(ok=False, errors={}, error=str(FORM_EXPIRED),
                                     started=fresh), 422)
    return _shown_here(page, form, started, FORM_EXPIRED)


def _again(page: Page, form: OptInForm, started: dict | None, notice: str) -> Response:
    """A sign-up without a usable proof of work, which a person may have sent: `422`
    with `notice`, for a script as JSON (its widget solves a new challenge), for a
    browser's own post on the page's form on this site."""
    if _wants_json():
        return make_response(jsonify(ok=False, errors={}, error=notice), 422)
    return _shown_here(page, form, started, notice)


def _invalid(page: Page, form: OptInForm, started: dict | None) -> Response:
    """Invalid input: for a script, `422` with one message per field; for a browser's
    own post, the page's form on this site with what the visitor typed and the
    messages, ready to send again from here (with this site's CSRF token)."""
    errors = {name: str(messages[0]) for name, messages in form.errors.items()
              if name is not None and messages}
    if _wants_json():
        return make_response(jsonify(ok=False, errors=errors, error=str(FIX_FIELDS)), 422)
    return _shown_here(page, form, started, FIX_FIELDS)


def _shown_here(page: Page, form: OptInForm, started: dict | None, notice: str) -> Response:
    """The page's form on this site, with what the visitor typed, the messages and
    `notice`, ready to send again from here (with this site's CSRF token and a fill-time
    token for this site's visitor)."""
    shown = form_class(page)()
    for name, field in form._fields.items():
        shown[name].errors = list(field.errors)
    shown.started.data = None
    return render_form_again(page, shown, 422, notice, _visit(page, started))
