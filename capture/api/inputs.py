"""Reading what an API client sent: the JSON body and the query parameters, each
checked, with a clear error naming the bad value (never a 500)."""

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time
from typing import Any

from flask import request

from capture.api.errors import ApiError, bad_parameters


def json_object() -> dict[str, Any]:
    """The request body as a JSON object; 415 when it is not JSON, 400 when it does
    not parse, is not an object, or holds text no database can store."""
    data = json_body()
    if not isinstance(data, dict):
        raise ApiError(400, "The body must be a JSON object.", code="invalid_json")
    return data


def json_body() -> Any:
    """The request body as JSON of any kind (an object or a list); 415 when it is not
    JSON, 400 when it does not parse or holds text no database can store."""
    if request.mimetype != "application/json":
        raise ApiError(415)
    try:
        data = json.loads(request.get_data(cache=True) or b"null",
                          parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise ApiError(400, "The body is not valid JSON.", code="invalid_json") from None
    problem = _unstorable_text(data)
    if problem:
        raise ApiError(400, problem, code="invalid_json")
    return data


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _unstorable_text(value: Any, depth: int = 0) -> str:
    """Why some text in the body cannot be stored ('' when all of it can): a NUL
    character or a lone surrogate (invalid UTF-8) anywhere, keys included."""
    if isinstance(value, str):
        if "\x00" in value:
            return "The body contains a NUL character."
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "The body contains text that is not valid Unicode."
        return ""
    if isinstance(value, dict):
        items: Iterable = [*value.keys(), *value.values()]
    elif isinstance(value, list):
        items = value
    else:
        return ""
    for item in items:
        problem = _unstorable_text(item, depth + 1)
        if problem:
            return problem
    return ""


def refuse_unknown(args: Mapping[str, Any], allowed: Iterable[str], *, body: bool) -> None:
    """Name every parameter (or body property) the operation does not know, so a
    typo is an error instead of a silently ignored filter."""
    unknown = sorted(set(args) - set(allowed))[:20]
    if not unknown:
        return
    if body:
        raise ApiError(422, "The body has properties this operation does not know.",
                       fields={name[:100]: "unknown property" for name in unknown})
    raise bad_parameters({name[:100]: "unknown parameter" for name in unknown})


def query_text(name: str, limit: int = 200) -> str:
    """A query parameter as trimmed text ('' when absent); 400 when repeated or too long."""
    values = request.args.getlist(name)
    if len(values) > 1:
        raise bad_parameters({name: "given more than once"})
    value = values[0].strip() if values else ""
    if len(value) > limit:
        raise bad_parameters({name: f"at most {limit} characters"})
    return value


def query_choice(name: str, allowed: Iterable[str]) -> str:
    """A query parameter that must be one of `allowed` ('' when absent)."""
    value = query_text(name, 40)
    allowed = tuple(allowed)
    if value and value not in allowed:
        raise bad_parameters({name: f"must be one of {', '.join(allowed)}"})
    return value


def query_int(name: str, default: int, minimum: int, maximum: int) -> int:
    """A whole-number query parameter within bounds."""
    value = query_text(name, 20)
    if not value:
        return default
    if not value.isascii() or not value.lstrip("-").isdigit():
        raise bad_parameters({name: "must be a whole number"})
    number = int(value)
    if not minimum <= number <= maximum:
        raise bad_parameters({name: f"must be from {minimum} to {maximum}"})
    return number


def query_date(name: str) -> date | None:
    """A calendar day like 2026-03-01 (UTC)."""
    value = query_text(name, 20)
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise bad_parameters({name: "must be a date like 2026-03-01"}) from None


def query_time(name: str) -> datetime | None:
    """A moment: a date (its midnight, UTC) or an ISO 8601 date and time; a time
    with an offset is converted to UTC. Returned naive, in UTC, like the database."""
    value = query_text(name, 40)
    if not value:
        return None
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time())
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        raise bad_parameters(
            {name: "must be a date (2026-03-01) or a date and time (2026-03-01T09:30:00Z)"}
        ) from None
    return moment
