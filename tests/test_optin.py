"""The opt-in: a valid submission stores one lead; every rejection stores nothing."""

import html

import pytest
from sqlalchemy import select

from capture.db import db
from capture.models import Event, Lead
from tests.conftest import count, lead_of, optin


def kinds(app, email):
    with app.app_context():
        return db.session.scalars(
            select(Event.kind).join(Lead).where(Lead.email == email).order_by(Event.id)
        ).all()


def test_optin_stores_normalized_lead_and_redirects_to_thanks(app, client, demo_page):
    response = optin(client, email="  Jane.Doe@Example.COM ", name="Jane", consent="y")
    assert response.status_code == 303
    assert response.headers["Location"] == "/p/demo/thanks"
    lead = lead_of(app, "jane.doe@example.com")
    assert lead.name == "Jane"
    assert lead.review == "approved"
    assert lead.subscription == "unconfirmed"
    assert lead.consent_text.startswith("Email me the checklist")
    assert lead.consent_ip == "127.0.0.1"
    assert len(lead.public_ref) >= 16
    assert kinds(app, "jane.doe@example.com") == ["optin", "approve", "confirmation_sent"]


def test_thanks_page_asks_to_check_inbox_with_double_optin(client, demo_page):
    optin(client, email="a@example.com", consent="y")
    page = client.get("/p/demo/thanks")
    assert page.status_code == 200
    assert "Check your inbox" in page.get_data(as_text=True)


def test_single_optin_lead_is_subscribed_and_sees_thank_you_text(app, client, make_page):
    make_page(slug="direct", double_opt_in=False, thank_you="Here is **your guide**.")
    response = optin(client, "direct", email="b@example.com")
    assert response.status_code == 303
    assert lead_of(app, "b@example.com").subscription == "subscribed"
    text = client.get("/p/direct/thanks").get_data(as_text=True)
    assert "<strong>your guide</strong>" in text
    assert "Check your inbox" not in text


def test_page_with_redirect_url_sends_visitor_there(client, make_page):
    make_page(slug="away", redirect_url="https://shop.example.com/welcome")
    response = optin(client, "away", email="c@example.com")
    assert response.status_code == 303
    assert response.headers["Location"] == "https://shop.example.com/welcome"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"email": "not-an-address", "consent": "y"},
         "An email address needs an @, like name@example.com."),
        ({"email": "", "consent": "y"}, "Enter your email address."),
        ({"email": "x@example.com"}, "Please tick the box to agree."),
        ({"email": "x@example.com", "consent": "y", "name": "n" * 201}, "At most 200"),
    ],
)
def test_invalid_input_rerenders_page_with_422_and_stores_nothing(
    app, client, demo_page, fields, message
):
    response = optin(client, **fields)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert message in html
    assert 'action="/p/demo"' in html
    assert count(app, Lead) == 0
    assert count(app, Event) == 0


def test_invalid_input_keeps_what_the_visitor_typed(client, demo_page):
    response = optin(client, email="jane@", name="Jane Doe", consent="y")
    assert response.status_code == 422
    assert 'value="Jane Doe"' in response.get_data(as_text=True)


def test_required_page_fields_and_types_are_validated(app, client, make_page):
    make_page(
        slug="quote",
        fields=[
            {"name": "email", "label": "Email", "type": "email", "required": True},
            {"name": "phone", "label": "Phone", "type": "tel", "required": True},
            {"name": "plan", "label": "Plan", "type": "select", "required": True,
             "options": ["Basic", "Pro"]},
            {"name": "country", "label": "Country", "type": "country", "required": True},
            {"name": "terms", "label": "I accept", "type": "checkbox", "required": True},
        ],
    )
    response = optin(client, "quote", email="q@example.com", phone="call me", plan="Gold",
                     country="XX")
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Enter a phone number" in html
    assert "Not a valid choice" in html
    assert "Please tick: I accept" in html
    assert count(app, Lead) == 0

    response = optin(client, "quote", email="q@example.com", phone="+1 555 0100",
                     plan="Pro", country="DE", terms="y")
    assert response.status_code == 303
    lead = lead_of(app, "q@example.com")
    assert lead.country == "DE"
    assert lead.fields == {"phone": "+1 555 0100", "plan": "Pro", "terms": True}


def test_unknown_or_unpublished_page_is_404(client, make_page):
    make_page(slug="draft", published=False)
    assert client.get("/p/nothing").status_code == 404
    assert client.get("/p/draft").status_code == 404


def test_missing_csrf_token_is_400_and_stores_nothing(app, client, demo_page):
    page = client.get("/p/demo").get_data(as_text=True)
    from tests.conftest import form_tokens

    started = form_tokens(page)["started"]
    response = client.post(
        "/p/demo", data={"email": "a@example.com", "consent": "y", "started": started}
    )
    assert response.status_code == 400
    assert "expired" in response.get_data(as_text=True)
    assert count(app, Lead) == 0


def test_csrf_token_of_another_session_is_refused(app, demo_page):
    from tests.conftest import form_tokens

    first, second = app.test_client(), app.test_client()
    tokens = form_tokens(first.get("/p/demo").get_data(as_text=True))
    second.get("/p/demo")
    response = second.post("/p/demo", data={**tokens, "email": "a@example.com", "consent": "y"})
    assert response.status_code == 400
    assert count(app, Lead) == 0


def test_oversized_body_is_413_and_stores_nothing(app, client, demo_page):
    response = optin(client, email="a@example.com", consent="y", name="x" * 100_000)
    assert response.status_code == 413
    assert "larger than this site accepts" in response.get_data(as_text=True)
    assert count(app, Lead) == 0


def test_no_traceback_reaches_a_visitor(app, client, demo_page, monkeypatch):
    from capture.leads import optin as leads

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(leads, "submit_optin", broken)
    response = optin(client, email="a@example.com", consent="y")
    assert response.status_code == 500
    text = response.get_data(as_text=True)
    assert "Something went wrong" in text
    assert "secret internals" not in text and "Traceback" not in text


def test_quick_empty_submission_shows_field_errors_not_a_fake_success(make_app):
    from capture.pages import demo

    app = make_app(MIN_FORM_SECONDS=2)
    with app.app_context():
        demo.install()
    response = optin(app.test_client(), email="", consent="")
    assert response.status_code == 422
    assert "Enter your email address." in response.get_data(as_text=True)


def _hidden(html: str, name: str) -> str:
    import re

    return re.search(rf'name="{name}" type="hidden" value="([^"]+)"', html).group(1)


def test_each_view_of_a_page_gets_its_own_form_tokens(app, demo_page):
    first = app.test_client().get("/p/demo").get_data(as_text=True)
    second = app.test_client().get("/p/demo").get_data(as_text=True)
    assert _hidden(first, "csrf_token") != _hidden(second, "csrf_token")
    assert _hidden(first, "started") != _hidden(second, "started")
    assert "slot" not in first


def test_a_saved_page_shows_its_new_text_on_the_next_view(app, client, make_page, clock):
    from capture.models import Page

    make_page(slug="fresh", title="Old title")
    assert "Old title" in client.get("/p/fresh").get_data(as_text=True)
    with app.app_context():
        page = db.session.scalar(select(Page).where(Page.slug == "fresh"))
        page.title = "New title"
        db.session.commit()
    text = client.get("/p/fresh").get_data(as_text=True)
    assert "New title" in text and "Old title" not in text


def test_an_unpublished_page_is_404_on_the_next_view(app, client, make_page):
    from capture.models import Page

    make_page(slug="gone")
    assert client.get("/p/gone").status_code == 200
    with app.app_context():
        db.session.scalar(select(Page).where(Page.slug == "gone")).published = False
        db.session.commit()
    assert client.get("/p/gone").status_code == 404


def test_a_page_changed_by_another_process_shows_on_the_next_view(app, client, make_page):
    from sqlalchemy import update

    from capture.models import Page

    make_page(slug="shared", headline="Before")
    assert "Before" in client.get("/p/shared").get_data(as_text=True)
    with app.app_context():  # a plain UPDATE, as another worker's save looks from here
        db.session.execute(update(Page).where(Page.slug == "shared").values(headline="After"))
        db.session.commit()
    assert "After" in client.get("/p/shared").get_data(as_text=True)


# --- names: only a name goes into the confirmation email (issue 15, item 11) ---------

@pytest.mark.parametrize(("name", "message"), [
    ("https://evil.example/claim Your account is suspended call +1-555-0100",
     "no web addresses"),
    ("Visit www.prize.example today", "no web addresses"),
    ("Claim at evil.example/win", "no web addresses"),
    ("Write to boss@evil.example", "no email addresses"),
    ("Call +1-555-0100 now", "no phone numbers"),
    ("Winner 123456", "no phone numbers"),
])
def test_a_name_carrying_a_link_an_address_or_a_number_is_refused(
        app, client, demo_page, outbox, name, message):
    response = optin(client, email="victim@example.com", name=name, consent="y")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert f"Enter just your name: {message}" in page
    assert count(app, Lead) == 0
    assert outbox.messages() == []


@pytest.mark.parametrize("name", ["J.R.R. Tolkien", "Agent 007", "Zoë O'Brien-Straße",
                                  "Louis XIV", "名前 テスト", "Dr. A. Smith, Jr."])
def test_ordinary_names_are_taken(app, client, demo_page, name):
    assert optin(client, email="p@example.com", name=name, consent="y").status_code == 303
    assert lead_of(app, "p@example.com").name == name


def test_the_greeting_and_the_to_line_hold_at_most_40_characters_of_the_name(
        app, client, demo_page, outbox):
    long_word = "Bartholomew" * 6
    optin(client, email="long@example.com", name=f"{long_word} Smith", consent="y")
    [message] = outbox.to("long@example.com")
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert f"Hi {long_word[:40]}," in text
    assert long_word[:41] not in text
    assert message["To"].addresses[0].display_name == long_word[:40]
    html = message.get_body(preferencelist=("html",)).get_content()
    assert long_word[:41] not in html


# --- a bad address said as a person would (issue 15, item 24) -------------------------

@pytest.mark.parametrize(("address", "sentence"), [
    ("ann@@example.com", "This email address has two @ signs."),
    ("ann@example@com", "This email address has two @ signs."),
    ("ann.example.com", "An email address needs an @, like name@example.com."),
    ("ann@", "Add the part after the @, like name@example.com."),
    ("ann@localhost", "Check the part after the @: it needs a dot, like example.com."),
    ("ann@exa_mple.com", "This doesn't look like an email address: check the part after the @."),
    ("ann lee@example.com", "An email address cannot contain spaces."),
    ("Ann <ann@example.com>", "Enter just the email address, without a name or < >."),
])
def test_a_bad_address_is_explained_in_plain_words(client, demo_page, address, sentence):
    response = optin(client, email=address, consent="y")
    assert response.status_code == 422
    page = html.unescape(response.get_data(as_text=True))
    assert sentence in page
    assert "@-sign" not in page


def test_wtforms_own_messages_speak_the_pages_language(app, client, make_page):
    fields = [{"name": "email", "label": "E-Mail", "type": "email", "required": True},
              {"name": "plan", "label": "Tarif", "type": "select", "required": True,
               "options": ["Basis", "Pro"]}]
    make_page(slug="angebot", language="de", fields=fields)
    make_page(slug="offer", fields=fields)
    for _ in range(2):  # the catalogue is kept after the first form
        html = optin(client, "angebot", email="q@example.com", plan="Gold").get_data(as_text=True)
        assert "Keine gültige Auswahl" in html and "Not a valid choice" not in html
        html = optin(client, "offer", email="q@example.com", plan="Gold").get_data(as_text=True)
        assert "Not a valid choice" in html and "Keine gültige Auswahl" not in html
