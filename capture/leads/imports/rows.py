"""Checking one row of an import file, as the opt-in form checks a submission: the
address, the country, the page's own fields, attribution and the consent columns."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from email_validator import EmailNotValidError

from capture.leads.addresses import normalize_email
from capture.leads.fields import FIELD_KINDS, FieldProblem, one_line, short_text
from capture.leads.imports.files import UNREADABLE
from capture.models import ATTRIBUTION_KEYS
from capture.tag_names import tag_problem

# The columns that fill the lead's own values, as the page field each is checked as.
NAME = {"name": "name", "label": "name", "type": "text", "required": False}
COUNTRY = {"name": "country", "label": "country", "type": "country", "required": False}
CONSENT = {"name": "consent", "label": "consent", "type": "checkbox", "required": False}


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
    # The `tags` column: names separated by ";", each a tag name (capture.tag_names).
    tags: list[str] = field(default_factory=list)


class Rejected(Exception):
    """A row that cannot be imported; the message is the reason."""


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
        row = Row(line, normalize_email(raw_email))
    except EmailNotValidError as error:
        raise Rejected(f"invalid email {raw_email!r}: {error}") from None
    try:
        for target, value in values.items():
            if target != "email":
                _take(row, target, value, page_fields, now)
    except FieldProblem as problem:
        raise Rejected(str(problem)) from None
    if "consent" not in values and row.consented_at is not None:
        row.consented = True
    return row


def _take(row: Row, target: str, value: str, page_fields: dict[str, dict[str, Any]],
          now: datetime) -> None:
    """Check one column's value and put it into the row, each as its field kind checks
    it. Raises FieldProblem (or Rejected) with the reason."""
    if target == "name":
        row.name = FIELD_KINDS["text"].from_cell(NAME, value)
    elif target == "country":
        row.country = FIELD_KINDS["country"].from_cell(COUNTRY, value)
    elif target == "consent":
        row.consent_value = one_line(value)
        row.consented = FIELD_KINDS["checkbox"].from_cell(CONSENT, value)
    elif target == "consented_at":
        if value.strip():
            row.consented_at = _moment(value, now)
    elif target == "tags":
        row.tags = _tags(value)
    elif target in ATTRIBUTION_KEYS:
        text = short_text(value, target)
        if text:
            row.attribution[target] = text
    else:
        spec = page_fields[target]
        checked = FIELD_KINDS[spec["type"]].from_cell(spec, value)
        if checked != "":
            row.fields[target] = checked


def _tags(value: str) -> list[str]:
    """The names of a `tags` cell ("vip; webinar"), without repeats; Rejected naming
    the first that is no tag name."""
    names: list[str] = []
    for name in (part.strip() for part in value.split(";")):
        if not name:
            continue
        problem = tag_problem(name)
        if problem is not None:
            raise Rejected(f"tags: {problem}")
        if name not in names:
            names.append(name)
    return names
