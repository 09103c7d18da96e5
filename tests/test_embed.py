"""The embeddable form: sign-ups posted from other sites, allowed by origin, with the
page form's checks, JSON or redirect answers, CORS, and the host page's attribution."""

import html
import json
import re

import pytest
from sqlalchemy import select, update

from capture.public.render import snippet
from capture.db import db
from capture.models import Lead, Page, Visit
from capture.origins import OriginError, parse_origin
from tests.conftest import (
    body_text,
    count,
    create_page,
    form_tokens,
    lead_of,
    send_confirmations,
)

BLOG = "https://blog.example.com"
HOST_PAGE = f"{BLOG}/2026/guide?utm_source=newsletter&utm_campaign=spring&ref=partner7"
SEARCH = "https://search.example/?q=guide"
JSON = {"Accept": "application/json"}


def embeddable_page(app, **values) -> str:
    """A published double opt-in page that blog.example.com may embed."""
    return create_page(app, **{"allowed_origins": [BLOG], **values})


def fetch_token(client, slug="offer", origin=BLOG, url=HOST_PAGE, referrer=SEARCH):
    """What the snippet's script does on load."""
    return client.get(f"/p/{slug}/embed/token", query_string={"url": url, "referrer": referrer},
                      headers={"Origin": origin, **JSON})


def post(client, slug="offer", *, origin=BLOG, script=True, query="", headers=None, **fields):
    """What the snippet sends: with `script`, the fetched token, the host page's address
    and a JSON answer; without, a plain form post."""
    data = dict(fields)
    sent = {"Origin": origin} if origin else {}
    if script:
        started = fetch_token(client, slug, origin).get_json().get("started", "")
        data = {"started": started, "embed-url": HOST_PAGE,
                "embed-referrer": SEARCH, **data}
        sent.update(JSON)
    sent.update(headers or {})
    return client.post(f"/p/{slug}/embed{query}", data=data, headers=sent)


# --- accepted --------------------------------------------------------------------------

def test_allowed_origin_stores_the_lead_emails_the_confirmation_and_credits_the_host_page(
        smtp_app, smtp):
    embeddable_page(smtp_app)
    client = smtp_app.test_client()
    response = post(client, email="Ann@Example.com", name="Ann")

    assert response.status_code == 200
    assert response.get_json() == {"ok": True, "redirect": "http://localhost/p/offer/thanks"}
    lead = lead_of(smtp_app, "ann@example.com")
    assert (lead.name, lead.subscription, lead.review) == ("Ann", "unconfirmed", "approved")
    assert (lead.utm_source, lead.utm_campaign, lead.ref) == ("newsletter", "spring", "partner7")
    assert lead.landing_url == HOST_PAGE
    assert lead.referrer == SEARCH
    assert smtp.messages == []  # queued: the scheduler sends it
    send_confirmations(smtp_app)
    [message] = smtp.to("ann@example.com")
    assert "/confirm/" in body_text(message)


def test_the_script_token_records_the_view_of_the_embedded_form(app, client):
    embeddable_page(app)
    response = fetch_token(client, referrer="https://news.example/")
    assert response.status_code == 200 and response.get_json()["started"]
    assert response.headers["Access-Control-Allow-Origin"] == BLOG
    with app.app_context():
        visit = db.session.scalar(select(Visit))
        assert (visit.landing_url, visit.referrer) == (HOST_PAGE, "https://news.example/")
        assert (visit.utm_source, visit.ref) == ("newsletter", "partner7")


def test_plain_form_post_is_redirected_to_the_thanks_page_and_credited_to_its_referer(
        app, client):
    embeddable_page(app)
    response = post(client, script=False, headers={"Referer": HOST_PAGE},
                    email="bo@example.com")
    assert response.status_code == 303
    assert response.headers["Location"] == "/p/offer/thanks"
    lead = lead_of(app, "bo@example.com")
    assert (lead.utm_source, lead.landing_url) == ("newsletter", HOST_PAGE)
    assert "Check your inbox" in client.get("/p/offer/thanks").get_data(as_text=True)


def test_tags_on_the_form_action_count_when_the_host_address_has_none(app, client):
    embeddable_page(app)
    post(client, script=False, query="?utm_source=blog&utm_medium=sidebar",
         headers={"Referer": f"{BLOG}/about"}, email="cy@example.com")
    lead = lead_of(app, "cy@example.com")
    assert (lead.utm_source, lead.utm_medium, lead.landing_url) == (
        "blog", "sidebar", f"{BLOG}/about")


def test_referer_stands_in_for_a_missing_origin_header(app, client):
    embeddable_page(app)
    response = post(client, origin=None, script=False, headers={"Referer": HOST_PAGE},
                    email="di@example.com")
    assert response.status_code == 303
    assert lead_of(app, "di@example.com") is not None


def test_page_redirect_url_is_where_the_script_sends_the_visitor(app, client):
    embeddable_page(app, redirect_url="https://shop.example.com/welcome")
    response = post(client, email="ed@example.com")
    assert response.get_json()["redirect"] == "https://shop.example.com/welcome"
    plain = post(client, script=False, email="ed2@example.com")
    assert plain.headers["Location"] == "https://shop.example.com/welcome"


def test_x_requested_with_asks_for_json(app, client):
    embeddable_page(app)
    response = post(client, script=False, headers={"X-Requested-With": "XMLHttpRequest"},
                    email="fi@example.com")
    assert response.status_code == 200 and response.get_json()["ok"] is True


# --- refused ---------------------------------------------------------------------------

@pytest.mark.parametrize("origin", [
    "https://evil.example.com",
    "http://blog.example.com",          # another scheme
    "https://blog.example.com:8443",    # another port
    "https://www.blog.example.com",     # a subdomain
    "https://example.com",              # the parent domain
    "null",                             # a sandboxed frame or a file
])
def test_another_origin_is_refused_and_nothing_is_stored(app, client, origin):
    embeddable_page(app)
    response = client.post("/p/offer/embed", data={"email": "gu@example.com"},
                           headers={"Origin": origin, **JSON})
    assert response.status_code == 403
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "does not accept sign-ups" in response.get_json()["error"] \
        or "page without a web address" in response.get_json()["error"]
    assert count(app, Lead) == 0 and count(app, Visit) == 0


def test_refusal_for_a_plain_post_is_a_short_page_naming_the_origin(app, client):
    embeddable_page(app)
    response = client.post("/p/offer/embed", data={"email": "gu@example.com"},
                           headers={"Origin": "https://evil.example.com"})
    assert response.status_code == 403
    assert "This page does not accept sign-ups from https://evil.example.com." in \
        html.unescape(response.get_data(as_text=True))
    assert count(app, Lead) == 0


def test_post_without_origin_or_referer_is_refused(app, client):
    embeddable_page(app)
    response = client.post("/p/offer/embed", data={"email": "ha@example.com"}, headers=JSON)
    assert response.status_code == 403
    assert "did not say which site it came from" in response.get_json()["error"]
    assert count(app, Lead) == 0


@pytest.mark.parametrize("script", [True, False])
def test_origin_null_is_refused_even_with_an_allowed_referer(app, client, script):
    """A sandboxed frame or a local file sends `Origin: null` on purpose: the Referer
    must not stand in for it as for a missing Origin (issue 15, item 13)."""
    embeddable_page(app)
    sent = {"Origin": "null", "Referer": HOST_PAGE, **(JSON if script else {})}
    assert client.get("/p/offer/embed/token", headers=sent).status_code == 403
    assert client.options("/p/offer/embed", headers=sent).status_code == 403
    response = client.post("/p/offer/embed", data={"email": "nu@example.com"}, headers=sent)
    assert response.status_code == 403
    assert "Access-Control-Allow-Origin" not in response.headers
    text = response.get_json()["error"] if script else html.unescape(response.get_data(
        as_text=True))
    assert "came from a page without a web address" in text
    assert count(app, Lead) == 0 and count(app, Visit) == 0


def test_page_with_an_empty_allowlist_refuses_every_site(app, client, make_page):
    make_page(slug="closed")
    response = post(client, "closed", script=False, headers=JSON, email="io@example.com")
    assert response.status_code == 403
    assert response.get_json()["error"] == "This page does not accept sign-ups from other sites."
    assert fetch_token(client, "closed").status_code == 403
    assert count(app, Lead) == 0 and count(app, Visit) == 0


def test_page_without_double_opt_in_is_never_embedded(app, client):
    embeddable_page(app)
    with app.app_context():  # as if changed behind validation's back
        db.session.execute(update(Page).values(double_opt_in=False))
        db.session.commit()
    response = post(client, script=False, headers=JSON, email="jo@example.com")
    assert response.status_code == 403
    assert count(app, Lead) == 0


def test_token_is_refused_to_another_origin(app, client):
    embeddable_page(app)
    response = fetch_token(client, origin="https://evil.example.com")
    assert response.status_code == 403
    assert "Access-Control-Allow-Origin" not in response.headers
    assert count(app, Visit) == 0


def test_unknown_or_unpublished_page_is_404(app, client):
    embeddable_page(app, slug="draft", published=False)
    assert post(client, "nope", script=False, email="k@example.com").status_code == 404
    assert post(client, "draft", script=False, email="k@example.com").status_code == 404


def test_a_body_that_is_not_a_form_is_415(app, client):
    embeddable_page(app)
    response = client.post("/p/offer/embed", json={"email": "la@example.com"},
                           headers={"Origin": BLOG, **JSON})
    assert response.status_code == 415
    assert response.get_json()["ok"] is False
    assert count(app, Lead) == 0


# --- bots and limits -------------------------------------------------------------------

def test_filled_honeypot_gets_the_normal_answer_and_stores_nothing(app, client):
    embeddable_page(app)
    response = post(client, email="bot@example.com", website="http://spam.example")
    assert response.status_code == 200 and response.get_json()["ok"] is True
    plain = post(client, script=False, email="bot2@example.com", website="x")
    assert plain.status_code == 303
    assert count(app, Lead) == 0


def test_a_form_sent_sooner_than_a_person_can_fill_it_is_trapped(make_app, clock):
    app = make_app(MIN_FORM_SECONDS=3)
    embeddable_page(app)
    client = app.test_client()
    assert post(client, email="quick@example.com").get_json()["ok"] is True
    assert lead_of(app, "quick@example.com") is None

    started = fetch_token(client).get_json()["started"]
    clock.advance(seconds=4)
    client.post("/p/offer/embed", data={"email": "human@example.com", "started": started},
                headers={"Origin": BLOG, **JSON})
    assert lead_of(app, "human@example.com") is not None


@pytest.mark.parametrize("sent", [
    pytest.param({"headers": JSON, "data": {}}, id="script-fetch"),
    pytest.param({"headers": JSON, "data": {"started": ""}}, id="script-fetch-empty-token"),
    pytest.param({"headers": {}, "data": {"started": "", "embed-url": HOST_PAGE}},
                 id="script-form-sent-plain"),
])
def test_the_script_form_without_a_token_counts_as_too_fast(app, client, sent):
    embeddable_page(app)
    response = client.post("/p/offer/embed", data={"email": "fast@example.com", **sent["data"]},
                           headers={"Origin": BLOG, **sent["headers"]})
    assert response.status_code in (200, 303)  # the normal answer: the bot learns nothing
    assert count(app, Lead) == 0


def test_the_script_free_snippet_still_signs_up_without_a_token(app, client):
    embeddable_page(app)
    response = post(client, script=False, email="plain@example.com")
    assert response.status_code == 303
    assert lead_of(app, "plain@example.com") is not None


def test_an_expired_script_token_asks_to_send_again_with_a_fresh_one(make_app, clock):
    app = make_app(MIN_FORM_SECONDS=2, FORM_MAX_AGE_SECONDS=3600)
    embeddable_page(app)
    client = app.test_client()
    started = fetch_token(client).get_json()["started"]
    clock.advance(hours=3)
    response = client.post("/p/offer/embed", data={"email": "late@example.com",
                                                   "started": started},
                           headers={"Origin": BLOG, **JSON})
    assert response.status_code == 422
    body = response.get_json()
    assert body["ok"] is False and "submit again" in body["error"]
    assert body["started"] and body["started"] != started
    assert response.headers["Access-Control-Allow-Origin"] == BLOG
    assert count(app, Lead) == 0

    clock.advance(seconds=5)
    again = client.post("/p/offer/embed", data={"email": "late@example.com",
                                                "started": body["started"]},
                        headers={"Origin": BLOG, **JSON})
    assert again.get_json()["ok"] is True
    assert lead_of(app, "late@example.com") is not None


def test_an_expired_token_in_a_plain_post_shows_the_form_here_to_send_again(make_app, clock):
    app = make_app(FORM_MAX_AGE_SECONDS=3600)
    embeddable_page(app)
    client = app.test_client()
    started = fetch_token(client).get_json()["started"]
    clock.advance(hours=3)
    response = client.post("/p/offer/embed", data={"email": "late@example.com",
                                                   "started": started, "embed-url": HOST_PAGE},
                           headers={"Origin": BLOG})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "This form had expired" in page and 'value="late@example.com"' in page
    again = client.post("/p/offer", data={**form_tokens(page), "email": "late@example.com"})
    assert again.status_code == 303
    assert lead_of(app, "late@example.com") is not None


def test_a_token_of_another_page_or_of_the_page_form_is_trapped(app, client):
    embeddable_page(app)
    embeddable_page(app, slug="second")
    other = fetch_token(client, "second").get_json()["started"]
    page_token = form_tokens(client.get("/p/offer").get_data(as_text=True))["started"]
    for started in (other, page_token):
        response = client.post("/p/offer/embed", data={"email": "mo@example.com",
                                                       "started": started},
                               headers={"Origin": BLOG, **JSON})
        assert response.get_json()["ok"] is True
    assert count(app, Lead) == 0


def test_a_tampered_token_is_trapped(app, client):
    embeddable_page(app)
    response = client.post("/p/offer/embed", data={"email": "mo@example.com",
                                                   "started": "forged.token"},
                           headers={"Origin": BLOG, **JSON})
    assert response.get_json()["ok"] is True
    assert count(app, Lead) == 0


def test_past_the_rate_limit_the_answer_is_429(make_app):
    app = make_app(OPTIN_RATE_LIMIT="2/minute")
    embeddable_page(app)
    client = app.test_client()
    assert post(client, email="n1@example.com").status_code == 200
    assert post(client, email="n2@example.com").status_code == 200
    response = post(client, email="n3@example.com")
    assert response.status_code == 429
    assert "Too many sign-ups" in response.get_json()["error"]
    assert response.headers["Access-Control-Allow-Origin"] == BLOG
    assert lead_of(app, "n3@example.com") is None


# --- invalid input ---------------------------------------------------------------------

def test_invalid_input_answers_json_with_a_message_per_field(app, client):
    embeddable_page(app, consent="Email me tips.", fields=[
        {"name": "name", "label": "Name", "type": "text", "required": True},
        {"name": "email", "label": "Email", "type": "email", "required": True},
        {"name": "phone", "label": "Phone", "type": "tel", "required": False},
    ])
    response = post(client, email="not-an-address", name="", phone="call me")
    assert response.status_code == 422
    body = response.get_json()
    assert body["ok"] is False
    assert set(body["errors"]) == {"email", "name", "phone", "consent"}
    assert body["errors"]["email"] == "An email address needs an @, like name@example.com."
    assert body["errors"]["name"] == "Name is required."
    assert body["errors"]["consent"] == "Please tick the box to agree."
    assert response.headers["Access-Control-Allow-Origin"] == BLOG
    assert count(app, Lead) == 0


def test_invalid_plain_post_shows_the_form_here_with_the_input_and_can_be_sent_again(
        app, client):
    embeddable_page(app)
    response = post(client, script=False, headers={"Referer": HOST_PAGE},
                    email="pat@", name="Pat")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Please correct the highlighted fields." in page
    assert 'value="Pat"' in page
    assert count(app, Lead) == 0

    tokens = form_tokens(page)
    assert set(tokens) == {"csrf_token", "started"}
    again = client.post("/p/offer", data={**tokens, "email": "pat@example.com", "name": "Pat"})
    assert again.status_code == 303
    assert lead_of(app, "pat@example.com").landing_url == HOST_PAGE


# --- CORS ------------------------------------------------------------------------------

def test_cors_headers_name_only_the_allowed_origin(app, client):
    embeddable_page(app, allowed_origins=[BLOG, "https://shop.example.com"])
    allowed = post(client, origin="https://shop.example.com", email="qa@example.com")
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
    assert "Origin" in allowed.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in allowed.headers
    refused = post(client, origin="https://other.example.com", script=False, headers=JSON,
                   email="qb@example.com")
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert "Origin" in refused.headers["Vary"]


def test_preflight_allows_an_allowed_origin_to_post(app, client):
    embeddable_page(app)
    response = client.options("/p/offer/embed", headers={
        "Origin": BLOG, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-requested-with"})
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == BLOG
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "X-Requested-With" in response.headers["Access-Control-Allow-Headers"]


def test_preflight_from_another_origin_is_refused(app, client):
    embeddable_page(app)
    response = client.options("/p/offer/embed", headers={
        "Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"})
    assert response.status_code == 403
    assert "Access-Control-Allow-Origin" not in response.headers


# --- the snippet -----------------------------------------------------------------------

def test_snippet_has_the_page_fields_honeypot_and_posts_to_the_embed_address(app):
    embeddable_page(app, consent="Send me tips.", fields=[
        {"name": "email", "label": "Email", "type": "email", "required": True},
        {"name": "country", "label": "Country", "type": "country", "required": True},
        {"name": "plan", "label": "Plan", "type": "select", "required": False,
         "options": ["Basic", "Pro"]},
    ])
    with app.test_request_context(), app.app_context():
        page = db.session.scalar(select(Page))
        code, plain = snippet(page), snippet(page, script=False)
    assert 'action="http://127.0.0.1:5000/p/offer/embed"' in code
    assert 'name="website"' in code and 'name="website"' in plain
    assert 'name="email"' in plain and 'type="email"' in plain
    assert '<option value="DE">Germany</option>' in plain
    assert '<option value="Pro">Pro</option>' in plain
    assert 'name="consent" value="y" required> Send me tips.' in plain
    assert "<script>" in code and 'name="embed-url"' in code and 'name="started"' in code
    assert "<script" not in plain and "started" not in plain


def test_snippet_escapes_what_the_owner_typed(app):
    embeddable_page(app, button='Go"><script>alert(1)</script>', fields=[
        {"name": "email", "label": "<b>Mail</b>", "type": "email", "required": True}])
    with app.test_request_context(), app.app_context():
        code = snippet(db.session.scalar(select(Page)))
    assert "<script>alert(1)</script>" not in code
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in code
    assert "&lt;b&gt;Mail&lt;/b&gt;" in code
    assert len(re.findall(r"<script>", code)) == 1


# --- origins ---------------------------------------------------------------------------

@pytest.mark.parametrize(("typed", "origin"), [
    ("https://blog.example.com", "https://blog.example.com"),
    (" HTTPS://Blog.Example.COM/ ", "https://blog.example.com"),
    ("https://blog.example.com:443", "https://blog.example.com"),
    ("http://localhost:8000", "http://localhost:8000"),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("https://bücher.example", "https://xn--bcher-kva.example"),
    ("http://[::1]:3000", "http://[::1]:3000"),
])
def test_origins_are_stored_in_the_form_browsers_send(typed, origin):
    assert parse_origin(typed) == origin


@pytest.mark.parametrize(("typed", "message"), [
    ("blog.example.com", "needs https:// or http:// in front"),
    ("ftp://blog.example.com", "must start with https:// or http://"),
    ("https://blog.example.com/signup", "leave out the path"),
    ("https://blog.example.com?x=1", "leave out the path"),
    ("https://user@blog.example.com", "no user name or password"),
    ("https://blog.example.com:99999", "the port must be a number"),
    ("https://", "has no valid host name"),
    ("https://bad_host!.com", "has no valid host name"),
    ("*", "needs https:// or http:// in front"),
])
def test_what_is_not_an_origin_is_refused_with_a_reason(typed, message):
    with pytest.raises(OriginError, match=re.escape(message)):
        parse_origin(typed)


# --- the page format -------------------------------------------------------------------

def test_allowed_origins_survive_export_and_import(app, runner, tmp_path):
    embeddable_page(app, allowed_origins=["HTTPS://Blog.Example.com/", "http://127.0.0.1:8000"])
    exported = runner.invoke(args=["pages", "export", "offer"])
    [page] = json.loads(exported.stdout)
    assert page["allowed_origins"] == [BLOG, "http://127.0.0.1:8000"]

    with app.app_context():
        db.session.execute(update(Page).values(allowed_origins=[]))
        db.session.commit()
    path = tmp_path / "pages.json"
    path.write_text(exported.stdout, encoding="utf-8")
    result = runner.invoke(args=["pages", "import", str(path)])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert db.session.scalar(select(Page.allowed_origins)) == [BLOG, "http://127.0.0.1:8000"]


def test_import_names_each_bad_origin_and_a_page_without_double_opt_in(app, runner, tmp_path):
    path = tmp_path / "pages.json"
    path.write_text(json.dumps([
        {"slug": "a", "title": "A", "allowed_origins": ["blog.example.com", BLOG + "/x"]},
        {"slug": "b", "title": "B", "double_opt_in": False, "allowed_origins": [BLOG]},
        {"slug": "c", "title": "C", "allowed_origins": BLOG},
    ]), encoding="utf-8")
    result = runner.invoke(args=["pages", "import", str(path)])
    assert result.exit_code == 1
    assert ("page 1 (a): allowed_origins: 'blog.example.com' needs https:// or http:// in front"
            in result.output)
    assert "page 1 (a): allowed_origins: 'https://blog.example.com/x' is not an origin" \
        in result.output
    assert "page 2 (b): allowed_origins: a form embedded on other sites needs double opt-in" \
        in result.output
    assert "page 3 (c): allowed_origins: must be a list of origins" in result.output
    assert count(app, Page) == 0
