"""Bot defences: a trapped submission looks like a success to the bot and stores
nothing; the rate limit answers 429 with a clear message."""


import pytest
from sqlalchemy import select

from capture.public import bots
from capture.db import db
from capture.models import Event, Lead, Visit
from tests.conftest import count, create_page, form_tokens, optin, send_confirmations


def emails(app):
    with app.app_context():
        return db.session.scalars(select(Lead.email).order_by(Lead.id)).all()


def assert_trapped(app, outbox, response):
    """Answered like a success, but no lead, no event and no email."""
    assert response.status_code == 303
    assert response.headers["Location"] == "/p/demo/thanks"
    assert count(app, Lead) == 0
    assert count(app, Event) == 0
    assert outbox.messages() == []


def test_filled_honeypot_gets_thanks_redirect_but_stores_nothing(app, client, demo_page, outbox):
    response = optin(client, email="bot@example.com", consent="y", website="http://spam.example")
    assert_trapped(app, outbox, response)


def test_trapped_submission_response_matches_a_real_success(app, demo_page):
    real = optin(app.test_client(), email="person@example.com", consent="y")
    trapped = optin(app.test_client(), email="bot@example.com", consent="y", website="x")
    assert (trapped.status_code, trapped.headers["Location"]) == (
        real.status_code,
        real.headers["Location"],
    )
    assert emails(app) == ["person@example.com"]


def test_form_submitted_faster_than_min_form_seconds_is_trapped(
    make_app, demo_page, outbox, frozen_clock
):
    app = make_app(MIN_FORM_SECONDS=2)
    client = app.test_client()
    page = client.get("/p/demo").get_data(as_text=True)
    frozen_clock.advance(seconds=1)
    response = client.post(
        "/p/demo", data={**form_tokens(page), "email": "quick@example.com", "consent": "y"}
    )
    assert_trapped(app, outbox, response)


def test_form_submitted_immediately_is_trapped(make_app, demo_page, outbox):
    app = make_app(MIN_FORM_SECONDS=2)
    response = optin(app.test_client(), email="quick@example.com", consent="y")
    assert_trapped(app, outbox, response)


def test_form_submitted_after_min_form_seconds_is_stored(
    make_app, demo_page, outbox, frozen_clock
):
    app = make_app(MIN_FORM_SECONDS=2)
    client = app.test_client()
    page = client.get("/p/demo").get_data(as_text=True)
    frozen_clock.advance(seconds=3)
    response = client.post(
        "/p/demo", data={**form_tokens(page), "email": "human@example.com", "consent": "y"}
    )
    assert response.status_code == 303
    assert emails(app) == ["human@example.com"]
    send_confirmations(app)
    assert len(outbox.to("human@example.com")) == 1


def test_missing_started_token_is_trapped(app, client, demo_page, outbox):
    page = client.get("/p/demo").get_data(as_text=True)
    csrf = form_tokens(page)["csrf_token"]
    response = client.post(
        "/p/demo", data={"csrf_token": csrf, "email": "bot@example.com", "consent": "y"}
    )
    assert_trapped(app, outbox, response)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda token: "x" + token[1:], id="payload-changed"),
        pytest.param(lambda token: token[: len(token) // 2], id="truncated"),
        pytest.param(lambda token: "not-a-token", id="garbage"),
        pytest.param(lambda token: token.rsplit(".", 1)[0], id="signature-removed"),
    ],
)
def test_tampered_started_token_is_trapped(app, client, demo_page, outbox, tamper):
    page = client.get("/p/demo").get_data(as_text=True)
    tokens = form_tokens(page)
    tokens["started"] = tamper(tokens["started"])
    response = client.post(
        "/p/demo", data={**tokens, "email": "bot@example.com", "consent": "y"}
    )
    assert_trapped(app, outbox, response)


def test_started_token_signed_with_another_secret_is_trapped(make_app, demo_page, outbox):
    app = make_app()
    other = make_app(SECRET_KEY="another-secret")
    with other.test_request_context():
        foreign = bots.form_token(1, None, None)
    client = app.test_client()
    tokens = form_tokens(client.get("/p/demo").get_data(as_text=True))
    response = client.post(
        "/p/demo",
        data={**tokens, "started": foreign, "email": "bot@example.com", "consent": "y"},
    )
    assert_trapped(app, outbox, response)


def test_rate_limit_refuses_fourth_submission_from_one_address_with_429(make_app, demo_page):
    app = make_app(OPTIN_RATE_LIMIT="3/minute")
    client = app.test_client()
    for number in range(3):
        response = optin(client, email=f"user{number}@example.com", consent="y")
        assert response.status_code == 303

    response = optin(client, email="fourth@example.com", consent="y")
    assert response.status_code == 429
    assert "Too many sign-ups from your network" in response.get_data(as_text=True)
    assert emails(app) == ["user0@example.com", "user1@example.com", "user2@example.com"]


def test_rate_limit_counts_per_client_address(make_app, demo_page):
    app = make_app(OPTIN_RATE_LIMIT="3/minute")
    busy = app.test_client()
    for number in range(4):
        optin(busy, email=f"user{number}@example.com", consent="y")

    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "198.51.100.7"
    response = optin(other, email="elsewhere@example.com", consent="y")
    assert response.status_code == 303
    assert "elsewhere@example.com" in emails(app)


def test_rate_limit_applies_to_trapped_submissions_too(make_app, demo_page):
    app = make_app(OPTIN_RATE_LIMIT="3/minute")
    client = app.test_client()
    for _ in range(3):
        optin(client, email="bot@example.com", consent="y", website="spam")
    response = optin(client, email="bot@example.com", consent="y", website="spam")
    assert response.status_code == 429
    assert count(app, Lead) == 0


def test_rate_limit_zero_turns_it_off(make_app, demo_page):
    app = make_app(OPTIN_RATE_LIMIT="0")
    client = app.test_client()
    statuses = [
        optin(client, email=f"user{number}@example.com", consent="y").status_code
        for number in range(25)
    ]
    assert statuses == [303] * 25
    assert count(app, Lead) == 25


def test_trapped_submission_still_leaves_the_page_visit_recorded(app, client, demo_page):
    optin(client, email="bot@example.com", consent="y", website="spam")
    assert count(app, Visit) == 1
    assert count(app, Lead) == 0


# --- the fill-time token: a maximum age, bound to the page and the visitor (issue 15,
# item 7) ------------------------------------------------------------------------------

def test_a_form_left_open_past_its_maximum_age_is_shown_again_to_submit_once_more(
        make_app, demo_page, outbox, frozen_clock):
    app = make_app(MIN_FORM_SECONDS=2, FORM_MAX_AGE_SECONDS=3600)
    client = app.test_client()
    tokens = form_tokens(client.get("/p/demo").get_data(as_text=True))
    frozen_clock.advance(hours=2)
    response = client.post("/p/demo", data={**tokens, "email": "slow@example.com",
                                            "name": "Sam", "consent": "y"})

    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "This form had expired. Please check your details and submit again." in page
    assert 'value="slow@example.com"' in page and 'value="Sam"' in page
    fresh = form_tokens(page)
    assert fresh["started"] != tokens["started"]
    assert count(app, Lead) == 0

    frozen_clock.advance(seconds=5)
    again = client.post("/p/demo", data={**fresh, "email": "slow@example.com",
                                         "name": "Sam", "consent": "y"})
    assert again.status_code == 303
    assert emails(app) == ["slow@example.com"]
    send_confirmations(app)
    assert len(outbox.to("slow@example.com")) == 1


def test_a_token_within_its_maximum_age_is_accepted(make_app, demo_page, frozen_clock):
    app = make_app(FORM_MAX_AGE_SECONDS=3600)
    client = app.test_client()
    tokens = form_tokens(client.get("/p/demo").get_data(as_text=True))
    frozen_clock.advance(minutes=59)
    response = client.post("/p/demo", data={**tokens, "email": "ok@example.com", "consent": "y"})
    assert response.status_code == 303
    assert emails(app) == ["ok@example.com"]


def test_the_token_of_one_page_is_refused_on_another(app, client, demo_page, outbox):
    create_page(app, slug="other", double_opt_in=False)
    demo_tokens = form_tokens(client.get("/p/demo").get_data(as_text=True))
    other_tokens = form_tokens(client.get("/p/other").get_data(as_text=True))
    response = client.post("/p/other", data={**other_tokens, "started": demo_tokens["started"],
                                             "email": "bot@example.com"})
    assert response.status_code == 303
    assert count(app, Lead) == 0

    fine = client.post("/p/other", data={**other_tokens, "email": "person@example.com"})
    assert fine.status_code == 303
    assert emails(app) == ["person@example.com"]


def test_the_token_of_one_visitor_is_refused_to_another(app, demo_page, outbox):
    harvested = form_tokens(app.test_client().get("/p/demo").get_data(as_text=True))
    bot = app.test_client()
    own = form_tokens(bot.get("/p/demo").get_data(as_text=True))
    response = bot.post("/p/demo", data={**own, "started": harvested["started"],
                                         "email": "bot@example.com", "consent": "y"})
    assert_trapped(app, outbox, response)


def test_a_visitor_without_the_cookie_it_was_shown_the_form_with_is_trapped(
        app, client, demo_page, outbox):
    tokens = form_tokens(client.get("/p/demo").get_data(as_text=True))
    client.delete_cookie("capture_vid")
    response = client.post("/p/demo", data={**tokens, "email": "bot@example.com",
                                            "consent": "y"})
    assert_trapped(app, outbox, response)
