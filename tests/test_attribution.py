"""Visits and attribution: the visitor cookie, utm_*, ref and Referer, and how a lead
inherits them from the visit it opted in from."""

import re
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from capture.db import db
from capture.models import Visit
from tests.conftest import lead_of, optin

QUERY = {
    "utm_source": "newsletter",
    "utm_medium": "email",
    "utm_campaign": "spring-launch",
    "utm_content": "header-button",
    "utm_term": "lead magnet",
    "ref": "partner42",
}
REFERER = "https://blog.example.net/posts/capture-pages"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)


def visits(app):
    with app.app_context():
        rows = db.session.scalars(select(Visit).order_by(Visit.id)).all()
        for row in rows:
            db.session.expunge(row)
        return rows


def visitor_cookie_header(response):
    return [h for h in response.headers.getlist("Set-Cookie") if h.startswith("capture_vid=")]


def test_page_view_stores_visit_with_utm_ref_and_referrer(app, client, demo_page):
    response = client.get(f"/p/demo?{urlencode(QUERY)}", headers={"Referer": REFERER})
    assert response.status_code == 200
    [visit] = visits(app)
    assert {key: getattr(visit, key) for key in QUERY} == QUERY
    assert visit.referrer == REFERER
    assert visit.landing_url.startswith("http://localhost/p/demo?")
    assert "utm_campaign=spring-launch" in visit.landing_url


def test_page_view_without_query_stores_empty_attribution(app, client, demo_page):
    client.get("/p/demo")
    [visit] = visits(app)
    assert all(getattr(visit, key) is None for key in QUERY)
    assert visit.referrer is None


def test_first_view_sets_httponly_visitor_cookie_with_32_hex_id(app, client, demo_page):
    response = client.get("/p/demo")
    [header] = visitor_cookie_header(response)
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header
    value = client.get_cookie("capture_vid").value
    assert re.fullmatch(r"[0-9a-f]{32}", value)
    assert visits(app)[0].visitor_id == value


def test_next_view_reuses_visitor_id_without_new_cookie(app, client, demo_page):
    client.get("/p/demo")
    second = client.get("/p/demo?utm_source=again")
    assert visitor_cookie_header(second) == []
    first_visit, second_visit = visits(app)
    assert second_visit.visitor_id == first_visit.visitor_id
    assert second_visit.utm_source == "again"


def test_another_browser_gets_another_visitor_id(app, demo_page):
    app.test_client().get("/p/demo")
    app.test_client().get("/p/demo")
    first, second = visits(app)
    assert first.visitor_id != second.visitor_id


def test_malformed_visitor_cookie_is_replaced(app, client, demo_page):
    client.set_cookie("capture_vid", "<script>not-an-id</script>")
    response = client.get("/p/demo")
    assert len(visitor_cookie_header(response)) == 1
    assert re.fullmatch(r"[0-9a-f]{32}", visits(app)[0].visitor_id)


def test_lead_carries_first_touch_attribution_of_its_visit(app, client, demo_page):
    optin(
        client,
        query=f"?{urlencode(QUERY)}",
        headers={"Referer": REFERER},
        email="jane@example.com",
        consent="y",
    )
    [visit] = visits(app)
    lead = lead_of(app, "jane@example.com")
    assert {key: getattr(lead, key) for key in QUERY} == QUERY
    assert lead.referrer == REFERER
    assert lead.landing_url == visit.landing_url
    assert lead.visitor_id == visit.visitor_id == client.get_cookie("capture_vid").value
    assert lead.visit_id == visit.id
    assert lead.referred_by_id is None


@pytest.mark.parametrize(
    ("user_agent", "is_bot"),
    [
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", True),
        ("curl/8.4.0", True),
        ("python-requests/2.32.3", True),
        ("", True),
        (CHROME, False),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
            False,
        ),
        (CHROME + " x" * 300 + " (compatible; ExampleSpider/1.0)", True),  # too long to cache
        (CHROME + " x" * 300, False),
    ],
)
def test_visit_is_marked_bot_by_user_agent(app, client, demo_page, user_agent, is_bot):
    client.get("/p/demo", headers={"User-Agent": user_agent})
    [visit] = visits(app)
    assert visit.is_bot is is_bot


def test_ref_of_another_lead_sets_referred_by(app, demo_page):
    optin(app.test_client(), email="referrer@example.com", consent="y")
    referrer = lead_of(app, "referrer@example.com")

    optin(app.test_client(), query=f"?ref={referrer.public_ref}",
          email="friend@example.com", consent="y")
    friend = lead_of(app, "friend@example.com")
    assert friend.referred_by_id == referrer.id
    assert friend.ref == referrer.public_ref


def test_partner_code_ref_sets_no_referring_lead(app, client, demo_page):
    optin(client, query="?ref=partner42", email="jane@example.com", consent="y")
    lead = lead_of(app, "jane@example.com")
    assert lead.ref == "partner42"
    assert lead.referred_by_id is None


def test_overlong_utm_value_is_trimmed_not_rejected(app, client, demo_page):
    response = optin(
        client,
        query=f"?{urlencode({'utm_source': 's' * 500, 'utm_campaign': 'c' * 201})}",
        email="jane@example.com",
        consent="y",
    )
    assert response.status_code == 303
    [visit] = visits(app)
    assert visit.utm_source == "s" * 200
    assert visit.utm_campaign == "c" * 200
    assert lead_of(app, "jane@example.com").utm_source == "s" * 200


def test_control_characters_in_utm_values_are_removed_not_rejected(app, client, demo_page):
    query = urlencode({
        "utm_source": "goo\x00gle\r\n",
        "utm_medium": "\tcpc\x1b",
        "utm_term": "\x07\x08",
        "ref": " part\u2028ner ",
    })
    response = optin(client, query=f"?{query}", email="jane@example.com", consent="y")
    assert response.status_code == 303
    [visit] = visits(app)
    assert visit.utm_source == "google"
    assert visit.utm_medium == "cpc"
    assert visit.utm_term is None
    assert visit.ref == "partner"
    lead = lead_of(app, "jane@example.com")
    assert (lead.utm_source, lead.utm_medium, lead.ref) == ("google", "cpc", "partner")


def test_overlong_referer_is_trimmed(app, client, demo_page):
    long_referer = "https://example.net/" + "a" * 2000
    assert client.get("/p/demo", headers={"Referer": long_referer}).status_code == 200
    assert visits(app)[0].referrer == long_referer[:1000]


def test_visitor_returning_directly_keeps_the_attribution_of_the_first_visit(app, client,
                                                                              demo_page):
    client.get("/p/demo?" + urlencode(QUERY), headers={"Referer": REFERER, "User-Agent": CHROME})
    response = optin(client, email="back@example.com", consent="y",
                     headers={"User-Agent": CHROME})  # second view: no query, no referer
    assert response.status_code == 303
    lead = lead_of(app, "back@example.com")
    assert (lead.utm_source, lead.utm_campaign, lead.ref) == (
        "newsletter", "spring-launch", "partner42")
    assert lead.referrer == REFERER
    assert len(visits(app)) == 2
