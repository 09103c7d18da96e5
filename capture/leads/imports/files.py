"""Reading an import file: its encoding, delimiter and header, its rows as a stream,
and the mapping of its columns to lead fields (guessed from the headers, overridable).
"""

import codecs
import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import current_app

from capture.models import ATTRIBUTION_KEYS, Page
from capture.leads.fields import one_line

# What a mapped column can fill, besides the page's own fields.
FIXED_TARGETS = ("email", "name", "country", "consent", "consented_at", "tags",
                 *ATTRIBUTION_KEYS)
TARGET_LABELS = {"email": "Email", "name": "Name", "country": "Country",
                 "consent": "Consent (yes/no)", "consented_at": "Consent date",
                 "tags": "Tags (separated by ;)"}
# Header spellings recognised without a mapping (compared lower-case, with every run
# of other characters as one underscore).
ALIASES = {
    "email": ("email", "e_mail", "email_address", "e_mail_address", "mail", "emailaddress"),
    "name": ("name", "full_name", "fullname", "contact_name", "your_name"),
    "country": ("country", "country_code", "countrycode"),
    "consent": ("consent", "consented", "opt_in", "optin", "opted_in", "gdpr_consent",
                "marketing_consent", "accepts_marketing", "subscribed"),
    "consented_at": ("consented_at", "consent_at", "consent_date", "consent_time",
                     "opted_in_at", "optin_date", "subscribed_at", "signed_up_at"),
    "tags": ("tags", "tag", "labels"),
    "utm_source": ("utm_source", "source"),
    "utm_medium": ("utm_medium", "medium"),
    "utm_campaign": ("utm_campaign", "campaign"),
    "utm_content": ("utm_content",),
    "utm_term": ("utm_term",),
    "ref": ("ref", "referral", "referral_code", "partner"),
}
DELIMITERS = (",", ";", "\t", "|")
# Enough of the file to check its encoding and find the delimiter.
SAMPLE_BYTES = 64 * 1024
# Rows read to find the email column when no header names it.
SAMPLE_ROWS = 10
# Marks a row the csv module could not parse (the text after it is the reason).
UNREADABLE = "\x00csv: "
_HEADER_NOISE = re.compile(r"[^a-z0-9]+")
# Looks like an email address (to find the address column when no header names it).
EMAIL_LIKE = re.compile(r"[^\s@,;|\t\"']+@[^\s@,;|\t\"']+\.[^\s@,;|\t\"']+")


class UnusableFile(Exception):
    """The file cannot be imported at all (unreadable, no email column, bad mapping,
    unknown page). The message is one line for the owner."""


@dataclass
class CsvFile:
    """What the start of a file says: its columns, delimiter and encoding."""

    path: Path
    headers: list[str]
    delimiter: str
    encoding: str

    def open(self):
        """The file as text for the csv module; undecodable bytes are kept as
        surrogates, so the row that holds them is rejected, not the whole file."""
        encoding = "utf-8-sig" if codecs.lookup(self.encoding).name == "utf-8" else self.encoding
        return open(self.path, encoding=encoding, errors="surrogateescape", newline="")

    def reader(self, handle) -> Iterator[tuple[int, list[str]]]:
        """(line number, cells) of each data row; blank lines are skipped. The line
        number is where the row starts (a quoted value may span lines).

        A row the csv module cannot parse, or a quoted value that swallowed what looks
        like further rows (a missing closing quote), comes as one UNREADABLE cell with
        the reason; reading goes on after it. Bytes the encoding cannot decode at all
        end the reading with such a row (the decoder cannot find its place again)."""
        # strict: a quote left open is an error where the csv module notices it (a
        # later quote, the end of the file), not rows silently merged into one value.
        reader = csv.reader(handle, delimiter=self.delimiter, strict=True)
        start = 1
        header_seen = False
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                yield start, [UNREADABLE + _csv_problem(str(error), start, reader.line_num)]
                start = reader.line_num + 1
                continue
            except UnicodeError as error:
                yield start, [UNREADABLE + f"from here on the file is not {self.encoding} "
                              f"text ({_reason(error)}); the rest of the file was not read"]
                return
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            if not header_seen:
                header_seen = True
                continue
            if line < reader.line_num and self._swallowed_rows(row):
                yield line, [UNREADABLE + _open_quote(line, reader.line_num)]
                continue
            yield line, row

    def _swallowed_rows(self, row: list[str]) -> bool:
        """Whether a value spanning lines holds a line that looks like a row of its
        own (the separator and an address): a quote opened and never closed."""
        for cell in row:
            for part in cell.splitlines()[1:]:
                if self.delimiter in part and EMAIL_LIKE.search(part):
                    return True
        return False


def _open_quote(first: int, last: int) -> str:
    return (f"a quote opened on line {first} is not closed where it should be: lines "
            f"{first}–{last} were read as one row; add the missing quote and import "
            "those lines again")


def _csv_problem(message: str, first: int, last: int) -> str:
    """The csv module's reason for an unparsable row, said for the owner."""
    if first < last or "end of data" in message:
        return _open_quote(first, last)
    if "expected after" in message:
        return ('text after a closing quote; a quote inside a quoted value is written '
                'twice ("")')
    return f"not a CSV row ({message})"


def _reason(error: UnicodeError) -> str:
    return error.reason if isinstance(error, UnicodeDecodeError) else str(error)


def inspect(path: str | Path, *, encoding: str = "utf-8",
            delimiter: str | None = None) -> CsvFile:
    """Open a CSV file and read its header. Raises UnusableFile when it cannot be read,
    is not text in `encoding`, or has no header row."""
    path = Path(path)
    name = path.name
    try:
        codecs.lookup(encoding)
        "".encode(encoding)  # LookupError for codecs that are not text (rot13, base64)
    except LookupError:
        raise UnusableFile(f"unknown text encoding {encoding!r}; use one such as utf-8, "
                           "cp1252, latin-1 or utf-16") from None
    try:
        with open(path, "rb") as handle:
            sample = handle.read(SAMPLE_BYTES)
    except OSError as error:
        raise UnusableFile(f"{name}: cannot read the file: {error.strerror or error}") from None
    try:
        text = codecs.getincrementaldecoder(encoding)().decode(sample, final=False)
    except UnicodeError as error:
        if "BOM" in str(error):
            raise UnusableFile(f"{name}: not {encoding} text: it does not start with a byte "
                               f"order mark; give the byte order ({encoding}-le or "
                               f"{encoding}-be)") from None
        raise UnusableFile(f"{name}: not {encoding} text; save it as \"CSV UTF-8\" or give "
                           "its encoding (for example cp1252)") from None
    text = text.lstrip("\ufeff")
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    if not first_line:
        raise UnusableFile(f"{name}: the file is empty")
    if delimiter is None:
        delimiter = max(DELIMITERS, key=first_line.count)
    elif len(delimiter) != 1 or delimiter in "\"\r\n":
        raise UnusableFile(f"the delimiter must be one character, not {delimiter!r}")
    shape = CsvFile(path, [], delimiter, encoding)
    try:
        with shape.open() as handle:
            for row in csv.reader(handle, delimiter=delimiter):
                if any(cell.strip() for cell in row):
                    shape.headers = [one_line(cell) or f"column {index + 1}"
                                     for index, cell in enumerate(row)]
                    break
    except (UnicodeError, csv.Error) as error:
        why = _reason(error) if isinstance(error, UnicodeError) else str(error)
        raise UnusableFile(f"{name}: cannot be read as {encoding} text ({why})") from None
    most = current_app.config["IMPORT_MAX_COLUMNS"]
    if len(shape.headers) > most:
        raise UnusableFile(f"{name}: {len(shape.headers):,} columns, more than the {most} "
                           "an import takes; keep only the columns you need")
    return shape


def sample_rows(shape: CsvFile, count: int) -> list[tuple[int, list[str]]]:
    """The first `count` data rows as they are in the file (for the preview)."""
    rows = []
    with shape.open() as handle:
        for line, row in shape.reader(handle):
            rows.append((line, [one_line(cell) for cell in row]))
            if len(rows) >= count:
                break
    return rows


# --- the column mapping ------------------------------------------------------------------

def targets(page: Page) -> list[tuple[str, str]]:
    """(field, label) of everything a column can be mapped to on this page."""
    choices = [(name, TARGET_LABELS.get(name, name)) for name in FIXED_TARGETS]
    for spec in page_fields(page).values():
        choices.append((spec["name"], f"{spec['label']} (page field)"))
    return choices


def page_fields(page: Page) -> dict[str, dict[str, Any]]:
    """By name, the page's own fields that are stored in `lead.fields` (email, name and the
    country field have columns of their own)."""
    return {spec["name"]: spec for spec in page.fields
            if spec["name"] not in ("email", "name") and spec["type"] != "country"}


def _header_key(header: str) -> str:
    return _HEADER_NOISE.sub("_", header.lower()).strip("_")


def auto_mapping(headers: list[str], page: Page,
                 samples: list[tuple[int, list[str]]] | None = None) -> list[str | None]:
    """The field each column fills, guessed from its header (None: ignored). The first
    column that matches a field takes it. When no header names the email, the first
    other column whose values in `samples` (the first rows) are mostly addresses is
    the email column."""
    known: dict[str, str] = {}
    for target, spellings in ALIASES.items():
        for spelling in spellings:
            known.setdefault(spelling, target)
    for spec in page.fields:
        target = "country" if spec["type"] == "country" else spec["name"]
        known.setdefault(_header_key(spec["name"]), target)
        known.setdefault(_header_key(spec["label"]), target)
    mapping: list[str | None] = []
    for header in headers:
        target = known.get(_header_key(header))
        mapping.append(target if target not in mapping else None)
    if "email" not in mapping and samples:
        column = _address_column(samples, mapping)
        if column is not None:
            mapping[column] = "email"
    return mapping


def _address_column(samples: list[tuple[int, list[str]]],
                    mapping: list[str | None]) -> int | None:
    for index, target in enumerate(mapping):
        if target is not None:
            continue
        values = [cells[index].strip() for _, cells in samples
                  if index < len(cells) and cells[index].strip()]
        addresses = sum(1 for value in values if EMAIL_LIKE.fullmatch(value))
        if values and addresses * 2 > len(values):
            return index
    return None


def require_email_column(shape: CsvFile, page: Page) -> None:
    """Raise UnusableFile when no column can be the email: none is headed so and none
    holds addresses in the first rows (said at upload, before any mapping)."""
    if "email" not in auto_mapping(shape.headers, page, sample_rows(shape, SAMPLE_ROWS)):
        raise UnusableFile(
            f"{shape.path.name}: no email column: no column is headed email (or e-mail, "
            "email address …) and none holds addresses in its first rows "
            f"(columns: {', '.join(shape.headers)}); every row needs an email address")


def parse_map_options(options: list[str] | tuple[str, ...]) -> dict[str, str]:
    """`--map COLUMN=FIELD` options as {column: field}; FIELD empty ignores the column."""
    overrides = {}
    for option in options:
        column, sign, target = option.partition("=")
        if not sign or not column.strip():
            raise UnusableFile(f"--map {option!r}: write it as COLUMN=FIELD")
        overrides[column.strip()] = target.strip()
    return overrides


def mapping_with(headers: list[str], page: Page, overrides: dict[str, str],
                 samples: list[tuple[int, list[str]]] | None = None) -> list[str | None]:
    """The automatic mapping (from the headers and the `samples` rows) with the owner's
    choices laid over it (by header name, any case; field '' or 'ignore' leaves a
    column out). Raises UnusableFile for a column or field that does not exist, or a
    mapping without an email column."""
    allowed = {name for name, _ in targets(page)}
    lowered = [header.lower() for header in headers]
    chosen: dict[int, str | None] = {}
    for column, target in overrides.items():
        matches = [i for i, header in enumerate(lowered) if header == column.lower()]
        if not matches:
            raise UnusableFile(f"no column {column!r} in the file (columns: {', '.join(headers)})")
        if len(matches) > 1:
            raise UnusableFile(f"the file has more than one column {column!r}")
        target = "" if target.lower() == "ignore" else target
        if target and target not in allowed:
            raise UnusableFile(f"{column}={target}: no field {target!r} on page {page.slug} "
                               f"(fields: {', '.join(sorted(allowed))})")
        chosen[matches[0]] = target or None
    # The owner's choice wins over a guessed column for the same field.
    taken = {target for target in chosen.values() if target}
    mapping = [chosen[i] if i in chosen else (None if guess in taken else guess)
               for i, guess in enumerate(auto_mapping(headers, page, samples))]
    check_mapping(headers, mapping, page)
    return mapping


def check_mapping(headers: list[str], mapping: list[str | None], page: Page) -> None:
    """Raise UnusableFile unless one column is the email and no field has two columns."""
    allowed = {name for name, _ in targets(page)}
    owner: dict[str, str] = {}
    for header, target in zip(headers, mapping, strict=True):
        if target is None:
            continue
        if target not in allowed:
            raise UnusableFile(f"column {header!r}: no field {target!r} on page {page.slug}")
        if target in owner:
            raise UnusableFile(f"columns {owner[target]!r} and {header!r} are both mapped "
                               f"to {target}")
        owner[target] = header
    if "email" not in owner:
        raise UnusableFile("no email column: map one of the columns to email "
                           f"(columns: {', '.join(headers)})")


