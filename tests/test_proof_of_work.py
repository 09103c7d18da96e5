"""The proof of work of a page with `proof_of_work`: the challenge the widget fetches,
a sign-up with a solved challenge stored, one without it, with a false, an expired or
a used one refused and counted as a bot's, on the page and on the embedded form."""

import base64
import json
import time

import altcha
import pytest
from sqlalchemy import select

from capture.db import db
from capture.models import Lead, Page, SpentChallenge, Visit
from capture.pages.definition import page_templates_dir, page_to_dict, validate_page
from capture.public import bots
from capture.public.render import snippet
from tests.conftest import count, create_page, form_tokens, lead_of, send_confirmations

BLOG = "https://blog.example.com"
JSON = {"Accept": "application/json"}
NEEDS_JAVASCRIPT = "This form needs JavaScript to prove you are not a robot."


def proof_page(app, **values) -> str:
    return create_page(app, proof_of_work=True, allowed_origins=[BLOG], **values)


def solved(challenge: dict) -> str:
    """What the widget sends: the challenge and its solution, found as the browser
    finds it (counting up from 0), base64 JSON."""
    made = altcha.Challenge.from_dict(challenge)
    return altcha.Payload(made, altcha.solve_challenge(made)).to_base64()


def fetch_challenge(client, slug="offer") -> dict:
    response = client.get(f"/p/{slug}/challenge")
    assert response.status_code == 200, response.status_code
    return response.get_json()


def sign_up(client, email="ann@example.com", payload: str | None = "solve", slug="offer"):
    """Open the page, let "the widget" solve a challenge (unless `payload` is given, or
    None: no proof at all) and send the form."""
    page = client.get(f"/p/{slug}")
    data = {**form_tokens(page.get_data(as_text=True)), "email": email}
    if payload == "solve":
        payload = solved(fetch_challenge(client, slug))
    if payload is not None:
        data["altcha"] = payload
    return client.post(f"/p/{slug}", data=data)


def emails(app) -> list[str]:
    with app.app_context():
        return db.session.scalars(select(Lead.email).order_by(Lead.id)).all()


def bot_visits(app) -> list[bool]:
    with app.app_context():
        return db.session.scalars(select(Visit.is_bot).order_by(Visit.id)).all()


def assert_trapped(app, response):
    """Answered like a success so the bot learns nothing, nothing stored, the visit
    counted as a bot's."""
    assert response.status_code == 303
    assert response.headers["Location"] == "/p/offer/thanks"
    assert emails(app) == []
    assert bot_visits(app)[-1] is True


def reencoded(payload: str, change) -> str:
    data = json.loads(base64.b64decode(payload))
    change(data)
    return base64.b64encode(json.dumps(data).encode()).decode()


# --- the page and its challenge ------------------------------------------------------

def test_page_with_proof_of_work_shows_the_widget_its_script_and_a_no_javascript_notice(
        app, client):
    proof_page(app)
    body = client.get("/p/offer").get_data(as_text=True)
    assert '<altcha-widget challenge="/p/offer/challenge" auto="onfocus"' in body
    assert '"humanInteractionSignature": false' in body
    assert '<script type="module" src="/static/proof-of-work.js">' in body
    assert '<link rel="stylesheet" href="/static/vendor/altcha/altcha.css">' in body
    assert f"<noscript><p class=\"notice\">{NEEDS_JAVASCRIPT}" in body


def test_challenge_is_a_fresh_signed_sha256_challenge_for_this_page_never_cached(app, client):
    proof_page(app)
    response = client.get("/p/offer/challenge")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    challenge = response.get_json()
    parameters = challenge["parameters"]
    assert parameters["algorithm"] == "SHA-256"
    assert parameters["data"] == {"page": page_of(app).id}
    assert abs(parameters["expiresAt"] - (time.time() + 1200)) < 60
    assert len(challenge["signature"]) == 64
    assert fetch_challenge(client)["parameters"]["nonce"] != parameters["nonce"]


def test_challenge_counter_stays_below_pow_max_number(make_app):
    app = make_app(POW_MAX_NUMBER=2000)
    proof_page(app)
    client = app.test_client()
    counters = [altcha.solve_challenge(altcha.Challenge.from_dict(fetch_challenge(client)))
                .counter for _ in range(5)]
    assert all(0 <= counter < 2000 for counter in counters)


def test_challenge_is_rate_limited_per_client_address(make_app):
    app = make_app(POW_CHALLENGE_RATE_LIMIT="2/minute")
    proof_page(app)
    client = app.test_client()
    assert [client.get("/p/offer/challenge").status_code for _ in range(3)] == [200, 200, 429]
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "198.51.100.7"
    assert other.get("/p/offer/challenge").status_code == 200


def test_page_without_proof_of_work_has_no_widget_no_challenge_and_takes_sign_ups_as_before(
        app, client):
    create_page(app)
    assert "altcha" not in client.get("/p/offer").get_data(as_text=True)
    assert client.get("/p/offer/challenge").status_code == 404
    response = sign_up(client, payload=None)
    assert response.status_code == 303
    assert emails(app) == ["ann@example.com"]
    assert True not in bot_visits(app)


# --- sign-ups on the page ------------------------------------------------------------

def test_sign_up_with_a_solved_challenge_stores_the_lead(app, client, outbox):
    proof_page(app)
    response = sign_up(client)
    assert response.status_code == 303
    assert response.headers["Location"] == "/p/offer/thanks"
    assert emails(app) == ["ann@example.com"]
    assert bot_visits(app) == [False]
    send_confirmations(app)
    assert len(outbox.to("ann@example.com")) == 1


def test_sign_up_without_a_solution_is_refused_asking_for_javascript_and_counted_as_a_bot(
        app, client):
    proof_page(app)
    response = sign_up(client, payload=None)
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert f'<p class="notice" role="alert">{NEEDS_JAVASCRIPT}' in body.replace("&#39;", "'")
    assert 'value="ann@example.com"' in body  # what the visitor typed is kept
    assert emails(app) == []
    assert bot_visits(app) == [True]


def _tampered_signature(data):
    data["challenge"]["signature"] = "0" * 64


def _wrong_number(data):
    data["solution"]["counter"] += 1


def _changed_parameters(data):
    data["challenge"]["parameters"]["expiresAt"] += 3600


@pytest.mark.parametrize("change", [
    pytest.param(_tampered_signature, id="signature-changed"),
    pytest.param(_wrong_number, id="wrong-number"),
    pytest.param(_changed_parameters, id="parameters-changed"),
])
def test_false_solution_is_trapped_like_a_bot(app, client, change):
    proof_page(app)
    payload = reencoded(solved(fetch_challenge(client)), change)
    assert_trapped(app, sign_up(client, payload=payload))


@pytest.mark.parametrize("payload", ["not base64!", base64.b64encode(b"[1, 2]").decode(),
                                     base64.b64encode(b'{"challenge": null}').decode()])
def test_garbage_instead_of_a_solution_is_trapped_like_a_bot(app, client, payload):
    proof_page(app)
    assert_trapped(app, sign_up(client, payload=payload))


def test_solution_signed_with_another_secret_is_trapped(make_app):
    app = make_app()
    other = make_app(SECRET_KEY="another-secret")
    proof_page(app)
    payload = solved(fetch_challenge(other.test_client()))
    assert_trapped(app, sign_up(app.test_client(), payload=payload))


def test_solution_for_another_page_is_trapped(app, client):
    proof_page(app)
    proof_page(app, slug="other")
    payload = solved(fetch_challenge(client, "other"))
    assert_trapped(app, sign_up(client, payload=payload))


def test_solution_used_twice_stores_one_lead(app, client):
    proof_page(app)
    payload = solved(fetch_challenge(client))
    assert sign_up(client, "ann@example.com", payload).status_code == 303
    replay = sign_up(client, "bob@example.com", payload)
    assert replay.status_code == 303 and replay.headers["Location"] == "/p/offer/thanks"
    assert emails(app) == ["ann@example.com"]
    assert bot_visits(app) == [False, True]


def test_solution_used_in_one_worker_is_refused_by_another(make_app):
    first = make_app()
    second = make_app()  # another process on the same database
    proof_page(first)
    payload = solved(fetch_challenge(first.test_client()))
    assert sign_up(first.test_client(), "ann@example.com", payload).status_code == 303
    sign_up(second.test_client(), "bob@example.com", payload)
    assert emails(second) == ["ann@example.com"]


def test_expired_solution_is_refused_with_a_notice_to_send_the_form_again(
        app, client, frozen_clock):
    proof_page(app)
    payload = solved(fetch_challenge(client))
    frozen_clock.advance(minutes=21)
    response = sign_up(client, payload=payload)
    assert response.status_code == 422
    assert "The check that you are not a robot had expired." in response.get_data(as_text=True)
    assert emails(app) == []
    assert bot_visits(app) == [False]  # a tab left open is a person's


def test_challenge_expires_in_real_unix_time_whatever_the_server_time_zone(
        app, client, monkeypatch):
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    try:
        proof_page(app)
        expires = fetch_challenge(client)["parameters"]["expiresAt"]
        assert abs(expires - (time.time() + 1200)) < 60
        assert sign_up(client).status_code == 303
        assert emails(app) == ["ann@example.com"]
    finally:
        monkeypatch.undo()
        time.tzset()


def test_spent_challenges_are_forgotten_once_expired(app, client, frozen_clock, monkeypatch):
    proof_page(app)
    sign_up(client, "ann@example.com")
    frozen_clock.advance(minutes=25)
    monkeypatch.setattr(bots, "_next_purge", 0.0)  # whatever an earlier test left
    sign_up(client, "bob@example.com")
    with app.app_context():
        assert db.session.scalar(select(SpentChallenge.expires_at)) > \
            frozen_clock.now.timestamp()
        assert count(app, SpentChallenge) == 1
    assert emails(app) == ["ann@example.com", "bob@example.com"]


def test_challenge_made_before_the_secret_key_was_rotated_is_accepted(make_app):
    old = make_app(SECRET_KEY="old-secret")
    proof_page(old)
    payload = solved(fetch_challenge(old.test_client()))
    rotated = make_app(SECRET_KEY="new-secret", SECRET_KEY_FALLBACKS=["old-secret"])
    with rotated.test_request_context():
        page = db.session.scalar(select(Page).where(Page.slug == "offer"))
        assert bots.check_proof(page, payload, None) == bots.FINE


# --- the embedded form ---------------------------------------------------------------

def embed_post(client, payload: str | None, email="ann@example.com"):
    started = client.get("/p/offer/embed/token", headers={"Origin": BLOG, **JSON}).get_json()
    data = {"started": started["started"], "embed-url": f"{BLOG}/guide", "email": email}
    if payload is not None:
        data["altcha"] = payload
    return client.post("/p/offer/embed", data=data, headers={"Origin": BLOG, **JSON})


def embed_challenge(client) -> dict:
    response = client.get("/p/offer/embed/challenge", headers={"Origin": BLOG})
    assert response.status_code == 200
    return response.get_json()


def test_snippet_of_a_proof_of_work_page_loads_the_widget_from_this_site(app):
    proof_page(app)
    with app.test_request_context():
        page = db.session.scalar(select(Page).where(Page.slug == "offer"))
        for code in (snippet(page), snippet(page, script=False)):
            assert ('<altcha-widget challenge="http://127.0.0.1:5000/p/offer/embed/challenge"'
                    in code)
            assert ('<script type="module" src="http://127.0.0.1:5000/static/proof-of-work.js">'
                    in code)
            assert NEEDS_JAVASCRIPT in code


def test_snippet_of_a_page_without_proof_of_work_has_no_widget(app):
    create_page(app, allowed_origins=[BLOG])
    with app.test_request_context():
        page = db.session.scalar(select(Page).where(Page.slug == "offer"))
        assert "altcha" not in snippet(page)


def test_embed_challenge_answers_an_allowed_site_with_cors_and_no_store(app, client):
    proof_page(app)
    response = client.get("/p/offer/embed/challenge", headers={"Origin": BLOG})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == BLOG
    assert response.headers["Cache-Control"] == "no-store"
    assert response.get_json()["parameters"]["algorithm"] == "SHA-256"
    refused = client.get("/p/offer/embed/challenge", headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403


def test_embedded_sign_up_with_a_solved_challenge_is_stored(app, client):
    proof_page(app)
    response = embed_post(client, solved(embed_challenge(client)))
    assert response.status_code == 200
    assert response.get_json()["ok"] is True
    assert lead_of(app, "ann@example.com") is not None


def test_embedded_sign_up_without_a_solution_is_refused_and_counted_as_a_bot(app, client):
    proof_page(app)
    response = embed_post(client, None)
    assert response.status_code == 422
    assert response.get_json()["error"].startswith(NEEDS_JAVASCRIPT)
    assert response.headers["Access-Control-Allow-Origin"] == BLOG
    assert emails(app) == []
    assert bot_visits(app) == [True]


def test_embedded_sign_up_replaying_a_solution_is_trapped(app, client):
    proof_page(app)
    payload = solved(embed_challenge(client))
    assert embed_post(client, payload).get_json()["ok"] is True
    replay = embed_post(client, payload, "bob@example.com")
    assert replay.status_code == 200 and replay.get_json()["ok"] is True
    assert emails(app) == ["ann@example.com"]


def test_widget_files_may_be_loaded_by_other_sites(client):
    for path in ("/static/proof-of-work.js", "/static/vendor/altcha/altcha.min.js",
                 "/static/vendor/altcha/sha.js", "/static/vendor/altcha/altcha.css"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["Access-Control-Allow-Origin"] == "*", path
        response.close()
    other = client.get("/static/capture.css")
    assert "Access-Control-Allow-Origin" not in other.headers
    other.close()


# --- the page definition -------------------------------------------------------------

def definition(**values) -> tuple[dict, list[str]]:
    data = {"slug": "offer", "title": "Guide", **values}
    return validate_page(data, sequences_dir="sequences", templates_dir=page_templates_dir())


def test_proof_of_work_is_off_unless_asked_for_and_must_be_true_or_false():
    assert definition()[0]["proof_of_work"] is False
    assert definition(proof_of_work=True) == ({**definition()[0], "proof_of_work": True}, [])
    assert definition(proof_of_work="yes")[1] == ["proof_of_work: must be true or false"]


def test_no_page_field_may_be_called_altcha():
    fields = [{"name": "altcha", "type": "text"}]
    assert definition(fields=fields)[1] == ["fields[0] (altcha): this name is used by the form "
                                            "itself"]


def test_proof_of_work_is_exported_with_the_page(app):
    proof_page(app)
    assert page_to_dict(page_of(app))["proof_of_work"] is True


def page_of(app) -> Page:
    with app.app_context():
        page = db.session.scalar(select(Page).where(Page.slug == "offer"))
        db.session.expunge(page)
        return page
