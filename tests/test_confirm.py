"""Double opt-in confirmation: the emailed link subscribes the lead once; any other
token is 404 and changes nothing."""

import re
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from capture import tokens
from capture.extensions import db
from capture.models import Event, Lead
from tests.conftest import body_text, optin

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


def test_following_the_link_subscribes_the_lead_and_shows_confirmed_page(app, client, link):
    response = client.get(urlsplit(link).path)
    assert response.status_code == 200
    assert "Your subscription is confirmed" in response.get_data(as_text=True)

    lead = lead_of(app)
    assert lead.subscription == "subscribed"
    assert lead.confirmed_at is not None
    assert lead.confirm_ip == "127.0.0.1"
    assert kinds(app).count("confirm") == 1


def test_confirming_records_the_address_of_the_confirming_client(app, link):
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    assert other.get(urlsplit(link).path).status_code == 200
    assert lead_of(app).confirm_ip == "203.0.113.9"


def test_following_the_link_again_changes_nothing(app, client, link):
    client.get(urlsplit(link).path)
    first = lead_of(app)

    again = client.get(urlsplit(link).path)
    assert again.status_code == 200
    assert "Your subscription is confirmed" in again.get_data(as_text=True)
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
def test_tampered_token_is_404_and_changes_nothing(app, client, link, tamper):
    token = urlsplit(link).path.rsplit("/", 1)[1]
    response = client.get(f"/confirm/{tamper(token)}")
    assert response.status_code == 404
    assert "There is nothing at this address" in response.get_data(as_text=True)
    assert lead_of(app).subscription == "unconfirmed"
    assert lead_of(app).confirmed_at is None
    assert "confirm" not in kinds(app)


def test_token_made_for_another_purpose_is_404(app, client, link):
    with app.app_context():
        token = tokens.make("unsubscribe", lead_of(app).public_ref)
    assert client.get(f"/confirm/{token}").status_code == 404
    assert lead_of(app).subscription == "unconfirmed"
    assert "confirm" not in kinds(app)


def test_token_for_an_unknown_lead_is_404(app, client, link):
    with app.app_context():
        token = tokens.make("confirm", "no-such-lead-ref")
    assert client.get(f"/confirm/{token}").status_code == 404


def test_link_of_an_unsubscribed_lead_does_not_resubscribe_it(app, client, link):
    with app.app_context():
        lead = db.session.scalar(select(Lead).where(Lead.email == ADDRESS))
        lead.subscription = "unsubscribed"
        db.session.commit()

    response = client.get(urlsplit(link).path)
    assert response.status_code == 200
    assert "no longer subscribed" in response.get_data(as_text=True)
    assert lead_of(app).subscription == "unsubscribed"
    assert "confirm" not in kinds(app)
