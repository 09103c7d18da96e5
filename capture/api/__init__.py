"""The JSON API under /api/v1/: leads, their tags, upgrades, metrics and broadcasts for other
programs.

Token auth (`Authorization: Bearer <token>`, see `capture.access.api_tokens`), no cookies and
so no CSRF; every answer is JSON, errors in the one shape of `capture.api.errors`.
The contract is `openapi.json` beside this file, served at /api/v1/openapi.json.
"""

import json
import time
from functools import cache
from pathlib import Path

import limits
from flask import Blueprint, Flask, current_app, g, request
from werkzeug.exceptions import HTTPException

from capture.access import api_tokens
from capture.web import rate_limits
from capture.api.errors import ApiError, error_response, http_error, unexpected_error
from capture.db import csrf
from capture.web.errors import answer_errors_under

PREFIX = "/api/v1"
bp = Blueprint("api", __name__, url_prefix=PREFIX)
PUBLIC_ENDPOINTS = {"api.openapi"}
OPENAPI_FILE = Path(__file__).with_name("openapi.json")


# Errors of the API's own views; a 404/405 that matched no view at all reaches
# capture.web.errors, which hands it to the same http_error for paths under /api/
# (registered in init_app).
bp.register_error_handler(ApiError, error_response)
bp.register_error_handler(HTTPException, http_error)
bp.register_error_handler(Exception, unexpected_error)


@bp.before_request
def require_token():
    """Every operation but the document needs an active token, within its rate."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("Send an API token as: Authorization: Bearer <token>.")
    row, why = api_tokens.authenticate(token.strip())
    if row is None:
        raise _unauthorized("This token was revoked." if why == "revoked"
                            else "This token is not valid.")
    g.api_token_id = row.id
    limiter = current_app.extensions["capture.api_rate_limit"]
    if not limiter.allow(str(row.id)):
        raise ApiError(429, headers={"Retry-After": str(limiter.retry_after(str(row.id)))})
    return None


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": 'Bearer realm="capture"'})


@bp.after_request
def no_caching(response):
    """Answers hold private data (or change with it): never stored by proxies."""
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI document of this API, with this server's address in it."""
    document = dict(_document())
    document["servers"] = [{"url": current_app.config["BASE_URL"]}]
    response = current_app.response_class(json.dumps(document), mimetype="application/json")
    response.headers["Cache-Control"] = "no-cache"
    return response


@cache
def _document() -> dict:
    return json.loads(OPENAPI_FILE.read_text(encoding="utf-8"))


class TokenRateLimit:
    """A limit of requests per token (API_RATE_LIMIT), counted for the whole site."""

    def __init__(self, app: Flask) -> None:
        self.rate: limits.RateLimitItem | None = app.config["API_RATE_LIMIT"]
        self.limiter = rate_limits.limiter(app)

    def allow(self, token_id: str) -> bool:
        """Count one request; False once the token is past its limit."""
        return self.rate is None or self.limiter.hit(self.rate, "api", token_id)

    def retry_after(self, token_id: str) -> int:
        """Whole seconds until the token may call again."""
        if self.rate is None:
            return 0
        reset, _ = self.limiter.get_window_stats(self.rate, "api", token_id)
        return max(int(reset - time.time()) + 1, 1)


def init_app(app: Flask) -> None:
    """Register the API: its operations, its error shape, no CSRF (no cookies)."""
    from capture.api import (  # noqa: F401  (each module registers its views on bp)
        broadcasts,
        costs,
        leads,
        metrics,
        reviews,
        tags,
        upgrades,
    )

    csrf.exempt(bp)
    answer_errors_under(app, "/api/", http_error)
    app.extensions["capture.api_rate_limit"] = TokenRateLimit(app)
    app.register_blueprint(bp)
