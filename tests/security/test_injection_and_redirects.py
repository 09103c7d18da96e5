"""Hostile input is stored as data, shown escaped, sent literally; no URL can be made
to redirect off the site; forged tokens cannot be told from unknown ones."""

import re
from urllib.parse import urlsplit

import pytest
from sqlalchemy import inspect, select

from capture import links as tokens
from capture.db import db
from capture.models import Lead
from tests.conftest import body_text, confirm, create_page, optin

SCRIPT = "<script>alert(1)</script>"
SQL = "Robert'); DROP TABLE leads;--"
JINJA = "{{ config }}{{ ''.__class__.__mro__ }}{% print 7*7 %}"


def test_script_in_a_name_is_escaped_in_the_confirmation_email(app, client, demo_page, outbox):
    optin(client, email="x@example.com", name=SCRIPT, consent="y")
    message = outbox.to("x@example.com")[0]
    html = message.get_body(("html",)).get_content()
    assert SCRIPT not in html and "&lt;script&gt;" in html


def test_sql_and_template_syntax_are_stored_literally(app, client, demo_page, outbox):
    optin(client, email="y@example.com", name=f"{SQL} {JINJA}"[:200], consent="y")
    with app.app_context():
        lead = db.session.scalar(select(Lead).where(Lead.email == "y@example.com"))
        assert lead.name == f"{SQL} {JINJA}"[:200]
        assert "leads" in inspect(db.engine).get_table_names()
    text = body_text(outbox.to("y@example.com")[0])
    assert "Hi Robert');," in text  # the first name, literally
    assert "SECRET" not in text and " 49" not in text


def test_page_text_with_html_is_escaped_on_the_page(app):
    create_page(app, slug="evil", title=SCRIPT, headline=SCRIPT,
                body=f"{SCRIPT}\n\n[x](javascript:alert(1))", consent=SCRIPT)
    html = app.test_client().get("/p/evil").get_data(as_text=True)
    assert SCRIPT not in html
    assert 'href="javascript:' not in html


@pytest.mark.parametrize("name", ["next", "url", "redirect", "return_to", "continue"])
@pytest.mark.parametrize("target", ["//evil.example", "https://evil.example/x",
                                    "/\\evil.example", "javascript:alert(1)"])
def test_no_parameter_redirects_off_the_site(app, demo_page, name, target):
    client = app.test_client()
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.arguments - {"filename"} and "<" in rule.rule:
            continue
        response = client.get(rule.rule, query_string={name: target})
        location = response.headers.get("Location")
        if location:
            parts = urlsplit(location)
            assert parts.scheme in ("", "http") and parts.netloc in ("", "localhost"), location
            assert not location.startswith(("//", "/\\")), location


def test_configured_redirect_url_is_the_only_off_site_redirect(app):
    create_page(app, slug="away", redirect_url="https://shop.example.com/ok")
    response = optin(app.test_client(), "away", email="z@example.com",
                     query="?next=https://evil.example")
    assert response.headers["Location"] == "https://shop.example.com/ok"


def test_forged_and_unknown_tokens_answer_the_same(app, demo_page):
    client = app.test_client()
    with app.app_context():
        unknown_lead = tokens.make("confirm", "no-such-ref")
        unknown_unsubscribe = tokens.make("unsubscribe", "no-such-ref")
    pairs = [("/confirm/forged.token", f"/confirm/{unknown_lead}"),
             ("/u/forged.token", f"/u/{unknown_unsubscribe}")]
    for forged, unknown in pairs:
        first, second = client.get(forged), client.get(unknown)
        assert first.status_code == second.status_code == 404
        assert first.get_data() == second.get_data()


def test_forged_and_unknown_click_and_pixel_tokens_answer_the_same(app):
    client = app.test_client()
    with app.app_context():
        unknown_open = tokens.make("open", "424242")
    clicks = [client.get(path) for path in ("/c/" + "A" * 22, "/c/forged.token!")]
    assert [r.status_code for r in clicks] == [404, 404]
    assert clicks[0].get_data() == clicks[1].get_data()
    pixels = [client.get(f"/o/{token}") for token in (unknown_open, "forged.token")]
    assert [r.status_code for r in pixels] == [200, 200]
    assert pixels[0].get_data() == pixels[1].get_data()
    assert pixels[0].headers == pixels[1].headers


def test_confirm_token_of_one_lead_confirms_only_that_lead(app, demo_page, outbox):
    client = app.test_client()
    optin(client, email="one@example.com", consent="y")
    optin(app.test_client(), email="two@example.com", consent="y")
    link = re.search(r"/confirm/\S+", body_text(outbox.to("one@example.com")[0])).group(0)
    assert confirm(client, link).status_code == 200
    with app.app_context():
        states = dict(db.session.execute(select(Lead.email, Lead.subscription)).all())
    assert states == {"one@example.com": "subscribed", "two@example.com": "unconfirmed"}


HOSTILE_NAMES = [
    SQL, f"{SQL} {JINJA}", 'Eve" <evil@example.com>, "x', "a@b.c, victim@example.com",
    "Boss\r\nBcc: victim@example.com", "=?utf-8?q?Boss=0D=0ABcc:_victim@example.com?=",
    "(comment) <evil@example.com>", "x" * 300, "Zoë O'Brien-Straße", "名前 テスト",
    "group: a@b.c, d@e.f;", "\u2028Bcc: victim@example.com", "\\\"; evil@example.com",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_whatever_the_name_the_email_goes_to_the_lead_alone(app, name):
    from email import message_from_bytes, policy
    from email.utils import getaddresses

    from capture.mail import compose as rendering

    with app.app_context():
        lead = Lead(email="lead@example.com", name=name, public_ref="r")
        message = rendering.new_message(lead, f"Hi {name}", "text", "<p>html</p>")
        raw = message.as_bytes()
    parsed = message_from_bytes(raw, policy=policy.default)
    assert [a.addr_spec for a in parsed["To"].addresses] == ["lead@example.com"]
    assert getaddresses([str(parsed["To"])])[-1][1] == "lead@example.com"
    assert len(getaddresses([str(parsed["To"])])) == 1
    assert parsed["Bcc"] is None and parsed["Cc"] is None
    headers = raw.split(b"\n\n", 1)[0].decode()
    assert not re.search(r"^(Bcc|Cc):", headers, re.MULTILINE)
