"""Double opt-in confirmation: the emailed link opens a page with one button, and only
pressing it (a POST) subscribes the lead, once; any other token is 404 and changes
nothing."""

import re
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from capture import links as tokens
from capture.db import db
from capture.models import Enrollment, Event, Lead
from tests.conftest import body_text, confirm, optin

ADDRESS = "jane@example.com"


def lead_of(app, email=ADDRESS):
    with app.app_context():
        lead = db.session.scalar(select(Lead).where(Lead.email == email))
        db.session.expunge(lead)
        return lead


def kinds(app, email=ADDRESS):
    with app.app_context():
        return db.session.scalars(
            select(Event.kind).join(Lead).where(Lead.email == email).order_by(Event.id)
        ).all()


def confirm_link(outbox, email=ADDRESS) -> str:
    [message] = outbox.to(email)
    match = re.search(r"https?://\S+/confirm/\S+", body_text(message))
    assert match, body_text(message)
    return match.group(0)


@pytest.fixture
def link(client, demo_page, outbox):
    """The confirmation link a visitor received after opting in."""
    response = optin(client, email=ADDRESS, name="Jane", consent="y")
    assert response.status_code == 303
    return confirm_link(outbox)


def test_confirmation_email_holds_the_link(app, link, outbox):
    [message] = outbox.to(ADDRESS)
    assert "confirm" in message["Subject"].lower()
    assert link.startswith(app.config["BASE_URL"] + "/confirm/")
    html = message.get_body(preferencelist=("html",)).get_content()
    assert link in html


def test_the_link_lands_on_a_page_with_one_button_naming_the_address(client, link):
    response = client.get(urlsplit(link).path)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "private, no-store"
    page = response.get_data(as_text=True)
    assert "Confirm your subscription" in page
    assert ADDRESS in page
    assert page.count("<form") == 1 and page.count("<button") == 1
    assert "Confirm my subscription" in page


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("user_agent", [
    "Barracuda Sentinel (EE)",
    "Mozilla/5.0 (compatible; Microsoft Office/16.0; Safe Links)",
    "curl/8.5.0",
])
def test_opening_the_link_changes_nothing(app, client, link, outbox, method, user_agent):
    response = client.open(urlsplit(link).path, method=method,
                           headers={"User-Agent": user_agent})
    assert response.status_code == 200
    lead = lead_of(app)
    assert (lead.subscription, lead.confirmed_at, lead.confirm_ip) == ("unconfirmed", None, None)
    assert "confirm" not in kinds(app)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Enrollment)) == 0


def test_pressing_the_button_subscribes_the_lead_and_shows_the_confirmed_page(
        app, client, link):
    response = confirm(client, link)
    assert response.status_code == 200
    assert "Your subscription is confirmed" in response.get_data(as_text=True)

    lead = lead_of(app)
    assert lead.subscription == "subscribed"
    assert lead.confirmed_at is not None
    assert lead.confirm_ip == "127.0.0.1"
    assert kinds(app).count("confirm") == 1
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Enrollment)) == 1


def test_the_confirmed_page_has_one_heading(client, link):
    page = confirm(client, link).get_data(as_text=True)
    assert len(re.findall(r"<h[1-6][\s>]", page)) == 1
    assert "You’re in!" in page or "You're in!" in page  # the demo's thank-you text


def test_consent_evidence_is_the_address_that_pressed_the_button(app, link):
    scanner = app.test_client()
    scanner.environ_base["REMOTE_ADDR"] = "198.51.100.66"
    assert scanner.get(urlsplit(link).path).status_code == 200
    person = app.test_client()
    person.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    assert confirm(person, link).status_code == 200
    assert lead_of(app).confirm_ip == "203.0.113.9"


def test_a_post_without_the_pages_csrf_token_confirms_nothing(app, client, link):
    response = client.post(urlsplit(link).path, data={})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "Please press the button again." in page
    assert 'name="csrf_token"' in page
    assert lead_of(app).subscription == "unconfirmed"
    assert "confirm" not in kinds(app)


def test_an_already_confirmed_link_says_so_and_changes_nothing(app, client, link):
    confirm(client, link)
    first = lead_of(app)

    again = client.get(urlsplit(link).path)
    assert again.status_code == 200
    assert "Your subscription is confirmed" in again.get_data(as_text=True)
    assert "<button" not in again.get_data(as_text=True)
    second = lead_of(app)
    assert second.confirmed_at == first.confirmed_at
    assert second.confirm_ip == first.confirm_ip
    assert kinds(app).count("confirm") == 1


def _flip(char: str) -> str:
    return "A" if char != "A" else "B"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda t: _flip(t[0]) + t[1:], id="payload-changed"),
        pytest.param(
            lambda t: t[: len(t) - 8] + _flip(t[len(t) - 8]) + t[len(t) - 7:],
            id="signature-changed",
        ),
        pytest.param(lambda t: t[:-5], id="truncated"),
        pytest.param(lambda t: t.split(".")[0], id="signature-removed"),
        pytest.param(lambda t: "garbage", id="garbage"),
        pytest.param(lambda t: t + "x" * 600, id="overlong"),
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_tampered_token_is_404_and_changes_nothing(app, client, link, tamper, method):
    token = urlsplit(link).path.rsplit("/", 1)[1]
    response = client.open(f"/confirm/{tamper(token)}", method=method)
    assert response.status_code == 404
    assert "There is nothing at this address" in response.get_data(as_text=True)
    assert lead_of(app).subscription == "unconfirmed"
    assert lead_of(app).confirmed_at is None
    assert "confirm" not in kinds(app)


def test_token_made_for_another_purpose_is_404(app, client, link):
    with app.app_context():
        token = tokens.make("unsubscribe", lead_of(app).public_ref)
    assert client.get(f"/confirm/{token}").status_code == 404
    assert client.post(f"/confirm/{token}").status_code == 404
    assert lead_of(app).subscription == "unconfirmed"
    assert "confirm" not in kinds(app)


def test_token_for_an_unknown_lead_is_404(app, client, link):
    with app.app_context():
        token = tokens.make("confirm", "no-such-lead-ref")
    assert client.get(f"/confirm/{token}").status_code == 404
    assert client.post(f"/confirm/{token}").status_code == 404


def test_link_of_an_unsubscribed_lead_does_not_resubscribe_it(app, client, link):
    with app.app_context():
        lead = db.session.scalar(select(Lead).where(Lead.email == ADDRESS))
        lead.subscription = "unsubscribed"
        db.session.commit()

    response = client.get(urlsplit(link).path)
    assert response.status_code == 200
    assert "no longer subscribed" in response.get_data(as_text=True)
    assert "<button" not in response.get_data(as_text=True)
    assert client.post(urlsplit(link).path).status_code in (200, 400)
    assert lead_of(app).subscription == "unsubscribed"
    assert "confirm" not in kinds(app)
