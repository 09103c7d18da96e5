"""A page's form as visitors see it, in the page's language: the opt-in page (with each
process's cache of its first view, one per variant of a page test), the form shown
again with a notice, where a sign-up goes next, the snippet that embeds the form on
other sites, and the pages around a sign-up (`render_for`).

Shared by the opt-in and embed blueprints and the dashboard's preview, so that none of
them imports another blueprint.
"""

import re
import secrets
from dataclasses import dataclass

from flask import (
    Flask,
    abort,
    current_app,
    has_app_context,
    make_response,
    render_template,
    request,
    url_for,
)
from flask_babel import lazy_gettext
from flask_wtf.csrf import generate_csrf
from sqlalchemy import bindparam, event, select

from capture import languages
from capture.db import db
from capture.markup import render_markdown
from capture.models import Page
from capture.pages import variants
from capture.public import bots
from capture.public.attribution import set_visitor_cookie, visitor_id
from capture.leads.fields import country_choices
from capture.public.forms import OptInForm, form_class
from capture.pages.images import image_path
from capture.pages.media import parse_video
from capture.web.headers import allow_form_target, allow_frame

FIX_FIELDS = lazy_gettext("Please correct the highlighted fields.")
FORM_EXPIRED = lazy_gettext("This form had expired. Please check your details and submit "
                            "again.")
# The snippet's script fills these with the host page's address and its referrer.
# A dash keeps them apart from page fields, whose names are identifiers.
HOST_URL_FIELD = "embed-url"
HOST_REFERRER_FIELD = "embed-referrer"


def init_app(app: Flask) -> None:
    """Listen for pages saved or deleted in this process (see `_page_changed`). The
    listener is on the Page mapper, shared by every app: it is added once."""
    for name in ("after_update", "after_delete"):
        if not event.contains(Page, name, _page_changed):
            event.listen(Page, name, _page_changed)


def published_page(slug: str) -> Page:
    """The published page with this slug, or 404."""
    page = db.session.scalar(select(Page).where(Page.slug == slug, Page.published))
    if page is None:
        abort(404)
    return page


def render_for(page: Page | None, template: str, **context) -> str:
    """A template a visitor or lead sees about `page` (thanks, confirm …), rendered
    in the page's language (English without a page)."""
    with languages.speaking(page.language if page is not None else None):
        return render_template(template, page=page, **context)


def render_page(page: Page, form: OptInForm, status: int = 200, notice: str = ""):
    """The opt-in page through its template, never cached (it holds a CSRF token)."""
    response = make_response(
        render_for(
            page,
            f"pages/{page.template}",
            form=form,
            field_names=[spec["name"] for spec in page.fields],
            body=render_markdown(page.body),
            notice=notice,
            image=image_path(page.image) if page.image else None,
            video=parse_video(page.video_url),
        ),
        status,
    )
    response.headers["Cache-Control"] = "private, no-store"
    allow_page_sources(page)
    return response


def allow_page_sources(page: Page) -> None:
    """What this answer's Content-Security-Policy must allow for the page: where its
    form's answer leads (its redirect URL) and its video's player. Called for every
    answer that shows the page, a cached one too."""
    if page.redirect_url:
        allow_form_target(page.redirect_url)
    video = parse_video(page.video_url)
    if video is not None:
        allow_frame(video.frame_origin)


# The opt-in page as shown on a first view is the same for every visitor (of one
# variant) but for two tokens, so each process renders it once per saved version of
# the page (and variant) and puts the visitor's tokens into the slots left for them.
# A version is (id, updated_at, language), a variant's (id, updated_at, language, key),
# so a page is never shown from a rendering in another language; a page changed in
# this process also empties the cache at once (see `_page_changed`).
_CSRF_SLOT = f"capture-csrf-slot-{secrets.token_hex(8)}"
_STARTED_SLOT = f"capture-started-slot-{secrets.token_hex(8)}"
_TOKEN = re.compile(r"[A-Za-z0-9._-]+")
_SHOWN_MAX = 256
_SHOWN_KEY = "capture.shown_pages"


# Built once, run on every view and opt-in: a plain statement skips the ORM's work.
_PAGE_VERSION = select(Page.id, Page.updated_at, Page.language).where(
    Page.slug == bindparam("slug"), Page.published)


@dataclass(frozen=True)
class ShownPage:
    """A published page (as one of its variants) and its rendered first view, with
    slots for the tokens."""

    page: Page  # detached from any session, fully loaded: read it, never change it
    html: str
    # The variant shown ("a": the page itself in a test; None: the page has no test)
    # and, on the page itself, its test.
    variant: str | None = None
    test: variants.Test | None = None

    def html_with_tokens(self, started: str) -> str:
        """The first view with this visitor's tokens in their slots: a fresh CSRF token
        (when the form has one) and the fill-time token `started`."""
        html = self.html
        if _CSRF_SLOT in html:
            html = html.replace(_CSRF_SLOT, _slot_value(generate_csrf()))
        return html.replace(_STARTED_SLOT, _slot_value(started))


def shown_page(slug: str, connection=None,
               visitor: tuple[str, bool] | None = None) -> ShownPage:
    """The published page with this slug and its rendered first view, from this app's
    cache (one small query checks the version, on `connection` if given), or 404.
    With `visitor` (their id, and whether it is new), as the variant they see: one
    rendering per variant is cached."""
    connection = connection if connection is not None else db.session.connection()
    key = connection.execute(_PAGE_VERSION, {"slug": slug}).first()
    if key is None:
        abort(404)
    cache: dict[tuple, ShownPage] = current_app.extensions.setdefault(_SHOWN_KEY, {})
    reload = current_app.config["TEMPLATES_AUTO_RELOAD"]
    shown = cache.get(tuple(key))
    if shown is None or reload:
        page = db.session.get(Page, key.id)
        if page is None:
            abort(404)
        test = variants.test_of(page)
        shown = _rendered(page, variants.PAGE_KEY if test else None, test)
        db.session.expunge(page)
        _keep(cache, tuple(key), shown)
    if visitor is None or shown.test is None:
        return shown
    variant = variants.visitor_variant(shown.page, *visitor, connection, shown.test)
    return shown_variant(shown, variant, tuple(key))


def shown_variant(shown: ShownPage, variant: str | None, version: tuple | None = None
                  ) -> ShownPage:
    """The first view of the page `shown` (the page itself, from `shown_page`) as
    `variant`, cached with the page's version."""
    if variant is None or variant == shown.variant or shown.test is None:
        return shown
    page = shown.page
    cache: dict[tuple, ShownPage] = current_app.extensions.setdefault(_SHOWN_KEY, {})
    key = (*(version or (page.id, page.updated_at, page.language)), variant)
    cached = cache.get(key)
    if cached is None or current_app.config["TEMPLATES_AUTO_RELOAD"]:
        cached = _rendered(variants.page_as(page, variant), variant, None)
        _keep(cache, key, cached)
    return cached


def _rendered(page: Page, variant: str | None, test: variants.Test | None) -> ShownPage:
    """The first view of `page` with slots for the visitor's tokens."""
    form = form_class(page)(formdata=None)
    if form.meta.csrf:
        form.csrf_token.current_token = _CSRF_SLOT
    form.started.data = _STARTED_SLOT
    return ShownPage(page, render_page(page, form).get_data(as_text=True), variant, test)


def _keep(cache: dict, key: tuple, shown: ShownPage) -> None:
    if len(cache) >= _SHOWN_MAX:
        cache.clear()
    cache[key] = shown


def _page_changed(mapper, connection, target: Page) -> None:
    """A page saved or deleted here is shown as it now is from the next view on."""
    if has_app_context():
        current_app.extensions.get(_SHOWN_KEY, {}).clear()


def _slot_value(token: str) -> str:
    """A token as it may go into a slot: the tokens are URL-safe, so never escaped."""
    if not _TOKEN.fullmatch(token):
        raise ValueError("unexpected characters in a form token")
    return token


def render_form_again(page: Page, form: OptInForm, status: int, notice: str,
                      visit_id: int | None = None, variant: str | None = None):
    """The page's form (as `variant` shows it) again with what the visitor typed and
    `notice`; a form without a usable fill-time token gets a fresh one (for this
    visitor: the cookie is set when there is none yet), counted from now."""
    vid, new_visitor = visitor_id(request)
    if not form.started.data:
        form.started.data = bots.form_token(page.id, visit_id, vid, variant)
    response = render_page(page, form, status, notice)
    if new_visitor:
        set_visitor_cookie(response, vid)
    return response


def success_url(page: Page) -> str:
    """Where a successful opt-in goes: the page's redirect URL or its thanks page."""
    return page.redirect_url or url_for("pages.thanks", slug=page.slug)


def snippet(page: Page, script: bool = True) -> str:
    """The HTML an owner pastes into another site: the page's form posting to
    `/p/<slug>/embed`, with the honeypot; with `script`, also the hidden fields and
    the small script that fetches a fill-time token, sends the form with `fetch`,
    shows each field's error in place and follows the redirect. Without `script` it
    is a plain form (errors are shown on this site's page). Either way, a page with
    `proof_of_work` adds the widget, loaded from this site. Autoescaped."""
    base = current_app.config["BASE_URL"].rstrip("/")
    fields = list(page.fields)
    if page.consent:
        fields.append({"name": "consent", "label": page.consent, "type": "checkbox",
                       "required": True})
    # The proof-of-work widget, from this site: its script, style and challenges.
    proof = {"challenge": f"{base}/p/{page.slug}/embed/challenge",
             "script": base + url_for("static", filename="proof-of-work.js"),
             "css": base + url_for("static", filename="vendor/altcha/altcha.css"),
             # The widget's own words ("I'm not a robot") in the page's language.
             "strings": base + url_for("static", filename=f"vendor/altcha/i18n/"
                                                          f"{page.language}.js")
             if page.language != "en" else None,
             } if page.proof_of_work else None
    with languages.speaking(page.language):
        return render_template(
            "embed/snippet.html", page=page, fields=fields, script=script,
            action=f"{base}/p/{page.slug}/embed", countries=country_choices()[1:],
            url_field=HOST_URL_FIELD, referrer_field=HOST_REFERRER_FIELD, proof=proof,
        ).strip() + "\n"
