"""Checking one row of an import file, as the opt-in form checks a submission: the
address, the country, the page's own fields, attribution and the consent columns."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import pycountry
from email_validator import EmailNotValidError

from capture.leads import lifecycle
from capture.leads.imports.files import UNREADABLE
from capture.models import ATTRIBUTION_KEYS
from capture.public.forms import PHONE, TEXT_MAX, one_line

YES = frozenset({"yes", "y", "true", "t", "1", "on", "x", "✓", "subscribed", "opted in",
                 "opt-in", "optin", "consented", "agreed", "checked"})
NO = frozenset({"no", "n", "false", "f", "0", "off", "", "unsubscribed", "not subscribed",
                "opted out", "declined", "unchecked"})


@dataclass
class Row:
    """One valid row, ready to become (or merge into) a lead."""

    line: int
    email: str
    name: str = ""
    country: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    attribution: dict[str, str] = field(default_factory=dict)
    consented: bool = False
    consent_value: str | None = None
    consented_at: datetime | None = None


class Rejected(Exception):
    """A row that cannot be imported; the message is the reason."""


def _text(value: str, what: str) -> str:
    text = one_line(value)
    if len(text) > TEXT_MAX:
        raise Rejected(f"{what}: longer than {TEXT_MAX} characters")
    return text


@lru_cache(maxsize=2048)
def _country_code(value: str) -> str | None:
    """'de', 'DEU' or 'Germany' → 'DE'; None for anything else."""
    try:
        return pycountry.countries.lookup(value).alpha_2
    except LookupError:
        return None


def _yes_no(value: str, what: str) -> bool:
    word = value.strip().lower()
    if word in YES:
        return True
    if word in NO:
        return False
    raise Rejected(f"{what}: {value!r} is not yes or no")


def _moment(value: str, now: datetime) -> datetime:
    """An ISO 8601 date or time (a time without a zone is UTC) as naive UTC."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise Rejected(f"consent date: {value!r} is not a date like 2024-05-31 "
                       "or 2024-05-31T14:30:00Z") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    if moment > now + timedelta(days=1):
        raise Rejected(f"consent date: {value} is in the future")
    return moment


def _page_value(spec: dict[str, Any], value: str) -> Any:
    """A page field's value checked like the opt-in form checks it."""
    label, kind = spec["label"], spec["type"]
    if kind == "checkbox":
        return _yes_no(value, label)
    text = _text(value, label)
    if not text:
        return ""
    if kind == "tel" and not PHONE.match(text):
        raise Rejected(f"{label}: {text!r} is not a phone number")
    if kind == "select":
        for option in spec.get("options") or []:
            if option.lower() == text.lower():
                return option
        raise Rejected(f"{label}: {text!r} is not one of the page's choices")
    if kind == "email":
        try:
            return lifecycle.normalize_email(text)
        except EmailNotValidError as error:
            raise Rejected(f"{label}: {error}") from None
    return text


def check_row(line: int, cells: list[str], columns: list[tuple[int, str]],
              page_fields: dict[str, dict[str, Any]], now: datetime) -> Row:
    """The row's values, checked and normalized. Raises Rejected with the reason."""
    if len(cells) == 1 and cells[0].startswith(UNREADABLE):
        raise Rejected(cells[0][len(UNREADABLE):])
    try:
        "".join(cells).encode("utf-8")
    except UnicodeEncodeError:
        raise Rejected("bytes that are not text in the file's encoding "
                       "(save the file as CSV UTF-8)") from None
    values = {target: cells[index] if index < len(cells) else "" for index, target in columns}
    raw_email = one_line(values["email"])
    if not raw_email:
        raise Rejected("no email address")
    try:
        row = Row(line, lifecycle.normalize_email(raw_email))
    except EmailNotValidError as error:
        raise Rejected(f"invalid email {raw_email!r}: {error}") from None
    for target, value in values.items():
        if target == "email":
            continue
        if target == "name":
            row.name = _text(value, "name")
            if lifecycle.name_problem(row.name):
                raise Rejected(f"name: {lifecycle.name_problem(row.name)}")
        elif target == "country":
            text = one_line(value)
            if text:
                row.country = _country_code(text)
                if row.country is None:
                    raise Rejected(f"unknown country {text!r}")
        elif target == "consent":
            row.consent_value = one_line(value)
            row.consented = _yes_no(value, "consent")
        elif target == "consented_at":
            if value.strip():
                row.consented_at = _moment(value, now)
        elif target in ATTRIBUTION_KEYS:
            text = _text(value, target)
            if text:
                row.attribution[target] = text
        else:
            checked = _page_value(page_fields[target], value)
            if checked != "":
                row.fields[target] = checked
    if "consent" not in values and row.consented_at is not None:
        row.consented = True
    return row


