"""Blueprint for the visitor side: the opt-in page, its submission, thanks, confirm."""

from pathlib import Path

from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
)
from flask_babel import gettext, lazy_gettext
from flask_wtf.csrf import CSRFError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from capture import languages
from capture.public import bots
from capture.leads import intake, lifecycle, optin
from capture.public.attribution import record_visit, set_visitor_cookie, visitor_id
from capture.db import csrf, db
from capture.web import errors
from capture.web.hygiene import FORM_TYPES
from capture.markup import render_markdown, under_heading
from capture.models import Lead, Page
from capture.pages import variants
from capture.public.forms import VisitorForm, form_class, optin_values
from capture.public.render import (
    FIX_FIELDS,
    FORM_EXPIRED,
    allow_page_sources,
    published_page,
    render_for,
    render_form_again,
    render_page,
    shown_page,
    shown_variant,
    success_url,
)

bp = Blueprint("pages", __name__)
# What the opt-in form says when the sign-up could not be saved.
OPTIN_RETRY = lazy_gettext("We could not finish your sign-up just now. "
                           "Please submit the form again in a moment.")


@bp.get("/p/<slug>")
def show(slug: str):
    """Render the page and record the visit with its attribution."""
    # A connection of its own, not the session: two plain statements, no unit of work.
    vid, new_visitor = visitor_id(request)
    with db.engine.begin() as connection:
        shown = shown_page(slug, connection, (vid, new_visitor))
        visit_id = record_visit(shown.page, request, vid, connection, shown.variant)
    started = bots.form_token(shown.page.id, visit_id, vid, shown.variant)
    response = make_response(shown.html_with_tokens(started))
    response.headers["Cache-Control"] = "private, no-store"
    allow_page_sources(shown.page)
    if new_visitor:
        set_visitor_cookie(response, vid)
    return response


@bp.post("/p/<slug>")
def submit(slug: str):
    """The opt-in: trap bots, validate (against the form of the variant shown), store
    the lead (its confirmation email is queued for the scheduler)."""
    base = shown_page(slug)
    languages.use(base.page.language)  # for every answer, the errors of the form too
    if request.mimetype not in FORM_TYPES:
        abort(415)
    verdict, started = bots.check_form_token(request.form.get("started"), base.page.id,
                                             visitor_id(request)[0])
    variant = _variant_shown(base.page, started, base.test)
    page = shown_variant(base, variant).page
    form = form_class(page)()
    if not bots.rate_limit().allow(request.remote_addr or "unknown"):
        notice = gettext("Too many sign-ups from your network. Please wait a minute and "
                         "try again.")
        return render_page(page, form, 429, notice)

    visit = started.get("v") if started else None
    if verdict == bots.EXPIRED:
        form.started.data = None  # a fresh one comes with the page shown again
    # Field errors first: a person who clicks the button at once on an empty form
    # must see what is missing, not a fake success.
    if not form.validate():
        return render_form_again(page, form, 422, FIX_FIELDS, visit, variant)
    if verdict == bots.EXPIRED:
        return render_form_again(page, form, 422, FORM_EXPIRED, visit, variant)
    proof = bots.check_proof(page, request.form.get(bots.PROOF_FIELD), visit)
    if proof in bots.PROOF_NOTICES:
        return render_form_again(page, form, 422, bots.PROOF_NOTICES[proof], visit, variant)
    if form.website.data or verdict != bots.FINE or proof != bots.FINE:
        # Trapped: answer like a success so the bot learns nothing; store nothing.
        return redirect(success_url(page), code=303)

    signup = optin.OptIn(
        email=form.email.data,
        **optin_values(page, form),
        client_ip=request.remote_addr,
        visit_id=visit,
        variant=variant,
    )
    # The same answer, and no email sent here, for a new, a known and a suppressed
    # address: the sign-up is queued (or stored) and its confirmation email queued
    # for the scheduler.
    intake.receive(page, signup)
    return redirect(success_url(page), code=303)


@bp.get("/p/<slug>/challenge")
def challenge(slug: str):
    """A fresh proof-of-work challenge for the page's form (JSON, never cached), for
    a page that asks for one; 404 otherwise, 429 past POW_CHALLENGE_RATE_LIMIT."""
    page = published_page(slug)
    if not page.proof_of_work:
        abort(404)
    if not bots.rate_limit().allow(request.remote_addr or "unknown", "challenge"):
        abort(429)
    response = jsonify(bots.proof_challenge(page))
    response.headers["Cache-Control"] = "no-store"
    return response


def _variant_shown(page: Page, started: dict | None,
                   test: variants.Test | None = None) -> str | None:
    """The variant of `page` the submitted form was shown as: the one its genuine
    fill-time token names, else the one this visitor is given now."""
    def now_given() -> str | None:
        vid, new_visitor = visitor_id(request)
        return variants.visitor_variant(page, vid, new_visitor, db.session.connection(), test)
    return variants.shown_key(page, started, now_given)


@bp.get("/p/<slug>/thanks")
def thanks(slug: str):
    """The thank-you text (of the visitor's variant); with double opt-in, the request
    to check the inbox."""
    page = published_page(slug)
    vid, new_visitor = visitor_id(request)
    if page.variants and not new_visitor:  # a visitor without the cookie saw no variant
        page = variants.page_as(page, variants.visitor_variant(
            page, vid, new_visitor, db.session.connection()))
    return render_for(page, "thanks.html", text=render_markdown(page.thank_you))


class ConfirmForm(VisitorForm):
    """The confirmation page's one button (its CSRF token is all it holds)."""


def _lead_to_confirm(token: str) -> Lead:
    """The lead a confirmation token names, or 404 (tampered, unknown, another kind)."""
    lead = lifecycle.lead_for_confirm_token(token)
    if lead is None:
        abort(404)
    languages.use(lead.page.language if lead.page is not None else None)
    return lead


def _confirm_page(lead: Lead, form: ConfirmForm | None = None, status: int = 200,
                  notice: str = ""):
    """The button for an unconfirmed lead; otherwise what its subscription now is."""
    page = lead.page
    if lead.subscription == "unconfirmed":
        html = render_template("confirm.html", page=page, lead=lead,
                               form=form or ConfirmForm(), notice=notice)
    else:
        page = variants.page_as(page, lead.variant) if page is not None else None
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
        notice = gettext("This page had expired. Please press the button again.")
        return _confirm_page(lead, ConfirmForm(formdata=None), 400, notice)
    lifecycle.confirm(lead, request.remote_addr)
    return _confirm_page(lead)


@bp.record_once
def _register_error_answers(state) -> None:
    """An expired form and a database outage during a submission come back to the
    visitor with what they typed (see csrf_failed and submit_unavailable)."""
    state.app.register_error_handler(CSRFError, csrf_failed)
    errors.answer_unavailable(state.app, "pages.submit", submit_unavailable)


def submit_unavailable():
    """The answer to a submission the database could not take: the page again,
    holding what the visitor typed, with a notice to submit it again; the short 503
    page with a "Try again" button holding those values when the page itself
    cannot be read now."""
    response = None
    if request.view_args:
        response = _page_again(request.view_args.get("slug"))
    if response is None:
        resubmit = [(key, value) for key, values in request.form.lists() for value in values]
        response = errors.unavailable_page(errors.MESSAGES[503][0], OPTIN_RETRY, resubmit)
    return response


def _page_again(slug: str | None):
    """The opt-in page with the visitor's input and OPTIN_RETRY; None when the page
    cannot be read now."""
    try:
        page = db.session.scalar(select(Page).where(Page.slug == slug, Page.published))
        if page is None:
            return None
        started = bots.check_form_token(request.form.get("started"), page.id,
                                        visitor_id(request)[0])[1]
        page = variants.page_as(page, _variant_shown(page, started))
        return render_page(page, form_class(page)(), 503, OPTIN_RETRY)
    except SQLAlchemyError:
        errors.rollback()
        return None


def csrf_failed(error: CSRFError):
    """An expired or missing CSRF token: on an opt-in page, show the page again with
    the visitor's input and a fresh token; elsewhere, a plain 400 page."""
    if request.endpoint == "pages.submit" and request.view_args:
        page = db.session.scalar(
            select(Page).where(Page.slug == request.view_args["slug"], Page.published)
        )
        if page is not None:
            languages.use(page.language)
            verdict, started = bots.check_form_token(request.form.get("started"), page.id,
                                                     visitor_id(request)[0])
            variant = _variant_shown(page, started)
            page = variants.page_as(page, variant)
            form = form_class(page)()
            if verdict not in (bots.FINE, bots.TOO_FAST):
                form.started.data = None
            return render_form_again(page, form, 400, FORM_EXPIRED,
                                     started.get("v") if started else None, variant)
    current_app.logger.info("CSRF failure on %s: %s", request.path, error.description)
    return render_template("error.html", title=gettext("Form expired"),
                           message=gettext("This form had expired. Go back, reload and try "
                                           "again.")), 400


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
