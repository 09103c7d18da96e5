"""Blueprint for the visitor side: the opt-in page, its submission, thanks, confirm."""

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from flask import (
    Blueprint,
    abort,
    current_app,
    has_app_context,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError, generate_csrf
from sqlalchemy import bindparam, event, select

from capture.public import bots
from capture.leads import lifecycle, optin
from capture.public.attribution import record_visit, set_visitor_cookie, visitor_id
from capture.db import csrf, db
from capture.web.headers import allow_form_target
from capture.web.hygiene import FORM_TYPES
from capture.markup import render_markdown, under_heading
from capture.models import Lead, Page
from capture.public.forms import OptInForm, form_class, optin_values

bp = Blueprint("pages", __name__)
FIX_FIELDS = "Please correct the highlighted fields."
FORM_EXPIRED = "This form had expired. Please check your details and submit again."


def published_page(slug: str) -> Page:
    """The published page with this slug, or 404."""
    page = db.session.scalar(select(Page).where(Page.slug == slug, Page.published))
    if page is None:
        abort(404)
    return page


def render_page(page: Page, form: OptInForm, status: int = 200, notice: str = ""):
    """The opt-in page through its template, never cached (it holds a CSRF token)."""
    response = make_response(
        render_template(
            f"pages/{page.template}",
            page=page,
            form=form,
            field_names=[spec["name"] for spec in page.fields],
            body=render_markdown(page.body),
            notice=notice,
        ),
        status,
    )
    response.headers["Cache-Control"] = "private, no-store"
    if page.redirect_url:  # where its form's answer leads (Content-Security-Policy)
        allow_form_target(page.redirect_url)
    return response


@bp.get("/p/<slug>")
def show(slug: str):
    """Render the page and record the visit with its attribution."""
    # A connection of its own, not the session: two plain statements, no unit of work.
    with db.engine.begin() as connection:
        shown = _shown_page(slug, connection)
        vid, new_visitor = visitor_id(request)
        visit_id = record_visit(shown.page, request, vid, connection)
    html = shown.html
    if _CSRF_SLOT in html:
        html = html.replace(_CSRF_SLOT, _slot_value(generate_csrf()))
    html = html.replace(_STARTED_SLOT, _slot_value(bots.form_token(shown.page.id, visit_id,
                                                                    vid)))
    response = make_response(html)
    response.headers["Cache-Control"] = "private, no-store"
    if new_visitor:
        set_visitor_cookie(response, vid)
    return response


# The opt-in page as shown on a first view is the same for every visitor but for two
# tokens, so each process renders it once per saved version of the page and puts the
# visitor's tokens into the slots left for them. A version is (id, updated_at); a page
# changed in this process also empties the cache at once (see `_page_changed`).
_CSRF_SLOT = f"capture-csrf-slot-{secrets.token_hex(8)}"
_STARTED_SLOT = f"capture-started-slot-{secrets.token_hex(8)}"
_TOKEN = re.compile(r"[A-Za-z0-9._-]+")
_SHOWN_MAX = 256
_SHOWN_KEY = "capture.shown_pages"


# Built once, run on every view and opt-in: a plain statement skips the ORM's work.
_PAGE_VERSION = select(Page.id, Page.updated_at).where(Page.slug == bindparam("slug"),
                                                      Page.published)


@dataclass(frozen=True)
class _Shown:
    page: Page  # detached from any session, fully loaded: read it, never change it
    html: str


def _shown_page(slug: str, connection=None) -> _Shown:
    """The published page with this slug and its rendered first view, from this app's
    cache (one small query checks the version, on `connection` if given), or 404."""
    connection = connection if connection is not None else db.session.connection()
    key = connection.execute(_PAGE_VERSION, {"slug": slug}).first()
    if key is None:
        abort(404)
    cache: dict[tuple[int, datetime], _Shown] = current_app.extensions.setdefault(
        _SHOWN_KEY, {}
    )
    shown = cache.get(tuple(key))
    if shown is None or current_app.config["TEMPLATES_AUTO_RELOAD"]:
        page = db.session.get(Page, key.id)
        if page is None:
            abort(404)
        form = form_class(page)(formdata=None)
        if form.meta.csrf:
            form.csrf_token.current_token = _CSRF_SLOT
        form.started.data = _STARTED_SLOT
        html = render_page(page, form).get_data(as_text=True)
        db.session.expunge(page)
        shown = _Shown(page, html)
        if len(cache) >= _SHOWN_MAX:
            cache.clear()
        cache[tuple(key)] = shown
    return shown


@event.listens_for(Page, "after_update")
@event.listens_for(Page, "after_delete")
def _page_changed(mapper, connection, target: Page) -> None:
    """A page saved or deleted here is shown as it now is from the next view on."""
    if has_app_context():
        current_app.extensions.get(_SHOWN_KEY, {}).clear()


def _slot_value(token: str) -> str:
    """A token as it may go into a slot: the tokens are URL-safe, so never escaped."""
    if not _TOKEN.fullmatch(token):
        raise ValueError("unexpected characters in a form token")
    return token


@bp.post("/p/<slug>")
def submit(slug: str):
    """The opt-in: trap bots, validate, store the lead (its confirmation email is
    queued for the scheduler)."""
    page = _shown_page(slug).page
    if request.mimetype not in FORM_TYPES:
        abort(415)
    form = form_class(page)()
    if not bots.rate_limit().allow(request.remote_addr or "unknown"):
        notice = "Too many sign-ups from your network. Please wait a minute and try again."
        return render_page(page, form, 429, notice)

    verdict, started = bots.check_form_token(form.started.data, page.id,
                                             visitor_id(request)[0])
    visit = started.get("v") if started else None
    if verdict == bots.EXPIRED:
        form.started.data = None  # a fresh one comes with the page shown again
    # Field errors first: a person who clicks the button at once on an empty form
    # must see what is missing, not a fake success.
    if not form.validate():
        return render_form_again(page, form, 422, FIX_FIELDS, visit)
    if verdict == bots.EXPIRED:
        return render_form_again(page, form, 422, FORM_EXPIRED, visit)
    if form.website.data or verdict != bots.FINE:
        # Trapped: answer like a success so the bot learns nothing; store nothing.
        return redirect(success_url(page), code=303)

    signup = optin.OptIn(
        email=form.email.data,
        **optin_values(page, form),
        client_ip=request.remote_addr,
        visit_id=visit,
    )
    # The same answer, and no email sent here, for a new, a known and a suppressed
    # address: the confirmation email is queued for the scheduler.
    optin.submit_optin(page, signup)
    return redirect(success_url(page), code=303)


def render_form_again(page: Page, form: OptInForm, status: int, notice: str,
                      visit_id: int | None = None):
    """The page's form shown again with what the visitor typed and `notice`; a form
    without a usable fill-time token gets a fresh one (for this visitor: the cookie
    is set when there is none yet), counted from now."""
    vid, new_visitor = visitor_id(request)
    if not form.started.data:
        form.started.data = bots.form_token(page.id, visit_id, vid)
    response = render_page(page, form, status, notice)
    if new_visitor:
        set_visitor_cookie(response, vid)
    return response


def success_url(page: Page) -> str:
    """Where a successful opt-in goes: the page's redirect URL or its thanks page."""
    return page.redirect_url or url_for("pages.thanks", slug=page.slug)


@bp.get("/p/<slug>/thanks")
def thanks(slug: str):
    """The thank-you text; with double opt-in, the request to check the inbox."""
    page = published_page(slug)
    return render_template("thanks.html", page=page, text=render_markdown(page.thank_you))


class ConfirmForm(FlaskForm):
    """The confirmation page's one button (its CSRF token is all it holds)."""


def _lead_to_confirm(token: str) -> Lead:
    """The lead a confirmation token names, or 404 (tampered, unknown, another kind)."""
    lead = lifecycle.lead_for_confirm_token(token)
    if lead is None:
        abort(404)
    return lead


def _confirm_page(lead: Lead, form: ConfirmForm | None = None, status: int = 200,
                  notice: str = ""):
    """The button for an unconfirmed lead; otherwise what its subscription now is."""
    page = lead.page
    if lead.subscription == "unconfirmed":
        html = render_template("confirm.html", page=page, lead=lead,
                               form=form or ConfirmForm(), notice=notice)
    else:
        text = under_heading(render_markdown(page.thank_you)) if page is not None else ""
        html = render_template("confirmed.html", page=page, lead=lead, text=text)
    response = make_response(html, status)
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.get("/confirm/<token>")
def confirm_page(token: str):
    """The double opt-in link lands here: a page with one button. Opening it (or a
    HEAD) changes nothing: mail scanners and link previewers open every link."""
    return _confirm_page(_lead_to_confirm(token))


@bp.post("/confirm/<token>")
@csrf.exempt  # checked by the form below, after the token: a bad token is 404 first
def confirm(token: str):
    """The button: confirm the subscription (idempotent) with this request's time and
    client address as consent evidence."""
    lead = _lead_to_confirm(token)
    form = ConfirmForm()
    if not form.validate():
        notice = "This page had expired. Please press the button again."
        return _confirm_page(lead, ConfirmForm(formdata=None), 400, notice)
    lifecycle.confirm(lead, request.remote_addr)
    return _confirm_page(lead)


def csrf_failed(error: CSRFError):
    """An expired or missing CSRF token: on an opt-in page, show the page again with
    the visitor's input and a fresh token; elsewhere, a plain 400 page."""
    if request.endpoint == "pages.submit" and request.view_args:
        page = db.session.scalar(
            select(Page).where(Page.slug == request.view_args["slug"], Page.published)
        )
        if page is not None:
            form = form_class(page)()
            verdict, started = bots.check_form_token(form.started.data, page.id,
                                                     visitor_id(request)[0])
            if verdict not in (bots.FINE, bots.TOO_FAST):
                form.started.data = None
            return render_form_again(page, form, 400, FORM_EXPIRED,
                                     started.get("v") if started else None)
    current_app.logger.info("CSRF failure on %s: %s", request.path, error.description)
    return render_template("error.html", title="Form expired",
                           message="This form had expired. Go back, reload and try again."), 400


@bp.get("/favicon.ico")
def favicon():
    """The icon browsers ask for on every page (pages link the SVG one; this answers
    the ones that ask anyway), so the log is not full of 404s."""
    # 215 bytes, sent from memory: no open file left for the server (or a test
    # client that does not read the body) to close.
    icon = Path(current_app.static_folder, "favicon.ico").read_bytes()
    response = make_response(icon)
    response.mimetype = "image/vnd.microsoft.icon"
    response.cache_control.public = True
    response.cache_control.max_age = 7 * 24 * 3600
    return response
