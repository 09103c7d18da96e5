"""The API's errors: one JSON shape for every failure, never an HTML page.

    {"error": {"code": "validation_failed", "message": "…", "fields": {"email": "…"}}}

`code` is stable (clients branch on it), `message` is for people, `fields` names each
bad input (empty when the error is not about one).
"""

from typing import Any

from flask import current_app, jsonify
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from capture.db import db, is_unavailable
from capture.web.errors import RETRY_AFTER_SECONDS

# The code of each HTTP status the API answers with on its own.
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}
MESSAGES = {
    400: "The request could not be understood.",
    401: "Send a valid API token as: Authorization: Bearer <token>.",
    404: "There is nothing at this address.",
    405: "This address does not accept that method.",
    413: "The request body is larger than this server accepts.",
    415: "Send the body as JSON with Content-Type: application/json.",
    429: "Too many requests: wait a moment and try again.",
    500: "Something went wrong on the server; it has been logged.",
    503: "The server is busy for a moment; try again in a few seconds.",
}


class ApiError(Exception):
    """An error the client caused (or can retry), answered in the API's shape."""

    def __init__(self, status: int, message: str | None = None, *, code: str | None = None,
                 fields: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, "error")
        self.message = message or MESSAGES.get(status, "")
        self.fields = fields or {}
        self.headers = headers or {}


def invalid(fields: dict[str, str], message: str = "Some values are not valid.") -> ApiError:
    """422 for body values that break a rule, one message per field."""
    return ApiError(422, message, fields=fields)


def bad_parameters(fields: dict[str, str]) -> ApiError:
    """400 for query parameters that make no sense, one message per parameter."""
    return ApiError(400, "Some query parameters are not valid.", code="invalid_parameters",
                    fields=fields)


def error_response(error: ApiError):
    """The JSON response for an ApiError."""
    body: dict[str, Any] = {"code": error.code, "message": error.message,
                            "fields": error.fields}
    response = jsonify({"error": body})
    response.status_code = error.status
    response.headers.update(error.headers)
    response.headers["Cache-Control"] = "no-store"
    return response


def http_error(error: HTTPException):
    """A werkzeug HTTP error (404, 405, 413 …) in the API's shape."""
    status = error.code or 500
    headers = {}
    if status == 405 and getattr(error, "valid_methods", None):
        headers["Allow"] = ", ".join(error.valid_methods)
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="capture"'
    return error_response(ApiError(status, MESSAGES.get(status, error.description),
                                   headers=headers))


def unexpected_error(error: Exception):
    """A bug (or a database outage): logged, and JSON for the client."""
    try:
        db.session.rollback()
    except SQLAlchemyError:  # the connection is gone; the session is reset anyway
        pass
    if is_unavailable(error):
        current_app.logger.error("database unavailable for an API request: %s",
                                 str(getattr(error, "orig", None) or error).splitlines()[0][:300])
        return error_response(ApiError(503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}))
    current_app.logger.exception("unhandled error in the API")
    return error_response(ApiError(500))
