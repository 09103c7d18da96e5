"""API authentication: bearer tokens, stored hashed, revocable; errors in JSON."""

import hashlib
import json

from sqlalchemy import select

from capture.access import api_tokens
from capture.api import OPENAPI_FILE
from capture.db import db
from capture.models import ApiToken
from tests.api.conftest import error_of, new_token


def test_request_without_token_is_refused_with_401(client):
    response = client.get("/api/v1/leads")
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_unknown_token_is_refused_with_401(client, token):
    response = client.get("/api/v1/leads", headers={"Authorization": f"Bearer {token}x"})
    assert response.status_code == 401
    assert "not valid" in error_of(response)["message"]


def test_token_in_another_scheme_is_refused(client, token):
    response = client.get("/api/v1/leads", headers={"Authorization": f"Basic {token}"})
    assert response.status_code == 401


def test_valid_token_is_accepted(api):
    assert api.get("/leads").status_code == 200


def test_revoked_token_is_refused_with_401(app, api):
    with app.app_context():
        row = db.session.scalar(select(ApiToken))
        api_tokens.revoke(row.id)
    response = api.get("/leads")
    assert response.status_code == 401
    assert "revoked" in error_of(response)["message"]


def test_database_holds_only_the_hash_of_a_token(app, token):
    with app.app_context():
        row = db.session.scalar(select(ApiToken))
        stored = [str(getattr(row, column.key)) for column in ApiToken.__table__.columns]
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert not any(token in value for value in stored)
    assert token.startswith(row.prefix) and len(row.prefix) < len(token) // 3


def test_each_token_is_different(app):
    assert new_token(app, "a") != new_token(app, "b")


def test_last_use_is_recorded_at_most_once_a_minute(app, api, clock):
    def last_used():
        with app.app_context():
            return db.session.scalar(select(ApiToken.last_used_at))

    api.get("/leads")
    first = last_used()
    assert first == clock.now
    clock.advance(seconds=30)
    api.get("/leads")
    assert last_used() == first
    clock.advance(seconds=31)
    api.get("/leads")
    assert last_used() == clock.now


def test_openapi_document_needs_no_token_and_names_this_server(app, client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document.pop("servers") == [{"url": app.config["BASE_URL"]}]
    assert document == json.loads(OPENAPI_FILE.read_text())  # what the contract test uses
    assert document["openapi"].startswith("3.")
    assert "/api/v1/leads" in document["paths"]


def test_openapi_document_lists_the_405_500_and_503_answers(client):
    """Issue 15.13: answers every operation can give were missing from the document."""
    document = client.get("/api/v1/openapi.json").get_json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            expected = {"405", "500"} | ({"503"} if operation.get("security") != [] else set())
            assert expected <= set(operation["responses"]), (method, path)
    answers = document["components"]["responses"]
    assert "Allow" in answers["MethodNotAllowed"]["headers"]
    assert "Retry-After" in answers["Unavailable"]["headers"]


def test_unknown_api_address_is_a_json_404(client):
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_wrong_method_is_a_json_405_naming_the_allowed_ones(api):
    response = api.client.delete("/api/v1/leads", headers=api._headers(None))
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


def test_token_past_its_rate_is_told_to_wait(make_app):
    app = make_app(API_RATE_LIMIT="2/minute")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {new_token(app)}"}
    statuses = [client.get("/api/v1/leads", headers=headers).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    response = client.get("/api/v1/leads", headers=headers)
    assert error_of(response)["code"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_api_answers_need_no_csrf_token_and_set_no_cookie(api, make_page):
    make_page(slug="offer")
    response = api.post("/leads", {"page": "offer", "email": "ann@example.com"})
    assert response.status_code == 201
    assert "Set-Cookie" not in response.headers


def test_a_bug_is_a_json_500_without_details(api, monkeypatch):
    from capture.numbers import metrics

    def broken(**_):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(metrics, "report", broken)
    response = api.get("/metrics")
    assert response.status_code == 500
    error = error_of(response)
    assert error["code"] == "internal_error"
    assert "secret detail" not in response.get_data(as_text=True)


def test_an_unreachable_database_is_a_json_503_to_retry(api, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from capture.numbers import metrics

    def locked(**_):
        raise OperationalError("SELECT 1", {}, Exception("database is locked"))

    monkeypatch.setattr(metrics, "report", locked)
    response = api.get("/metrics")
    assert response.status_code == 503
    assert error_of(response)["code"] == "unavailable"
    assert response.headers["Retry-After"].isdigit()
