"""Fixtures of the API tests: a token, and a client that sends it."""

import pytest

from capture.access import api_tokens


def new_token(app, name: str = "tests") -> str:
    """Create an API token in `app`; return the token itself."""
    with app.app_context():
        return api_tokens.create(name).token


class ApiClient:
    """The test client, calling /api/v1/… with a bearer token."""

    def __init__(self, client, token: str) -> None:
        self.client = client
        self.token = token

    def _headers(self, headers: dict | None) -> dict:
        return {"Authorization": f"Bearer {self.token}", **(headers or {})}

    def get(self, path: str, headers: dict | None = None, **kwargs):
        return self.client.get(f"/api/v1{path}", headers=self._headers(headers), **kwargs)

    def post(self, path: str, json=None, headers: dict | None = None, **kwargs):
        return self.client.post(f"/api/v1{path}", json=json, headers=self._headers(headers),
                                **kwargs)


@pytest.fixture
def token(app) -> str:
    """An active API token of the `app` fixture's app."""
    return new_token(app)


@pytest.fixture
def api(app, token) -> ApiClient:
    """A client that calls the API with an active token."""
    return ApiClient(app.test_client(), token)


def error_of(response) -> dict:
    """The `error` object of an API error answer, after checking its shape."""
    body = response.get_json()
    assert response.mimetype == "application/json", response.data[:200]
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "fields"}
    assert body["error"]["message"]
    return body["error"]
