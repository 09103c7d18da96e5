"""The outbox folder: where OutboxBackend writes .eml files, read back for the dashboard."""

import email.policy
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import Parser
from email.utils import parsedate_to_datetime
from pathlib import Path

from flask import current_app


def outbox_folder() -> Path:
    """Where the outbox backend writes its files."""
    return Path(current_app.instance_path) / "outbox"


@dataclass
class OutboxMessage:
    """One file the outbox backend wrote, with the headers a list shows."""

    name: str
    date: datetime | None
    to: str
    subject: str
    message: EmailMessage | None = None

    @property
    def text(self) -> str | None:
        """The plain-text part, if the message has one."""
        return _part(self.message, "plain")

    @property
    def html(self) -> str | None:
        """The HTML part, if the message has one."""
        return _part(self.message, "html")

    @property
    def headers(self) -> list[tuple[str, str]]:
        """Every header, in order."""
        return [(name, str(value)) for name, value in self.message.items()] if self.message else []


def outbox_names() -> list[str]:
    """The messages in the outbox folder, newest first (the file names start with
    the time they were written). Half-written files are hidden (they start with .)."""
    folder = outbox_folder()
    try:
        entries = [entry for entry in os.scandir(folder)
                   if entry.name.endswith(".eml") and not entry.name.startswith(".")
                   and entry.is_file(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    # Same-moment names (a frozen clock, a busy second) fall back to the write time.
    entries.sort(key=lambda entry: (entry.name[:21], entry.stat().st_mtime_ns, entry.name),
                 reverse=True)
    return [entry.name for entry in entries]


def read_outbox(names: list[str], *, whole: bool = False) -> list[OutboxMessage]:
    """The listed messages (names from `outbox_names()`), headers only unless `whole`."""
    # Read as UTF-8 text: the address headers of an SMTPUTF8 message are UTF-8
    # (a bytes parser would show them as escapes); everything else is ASCII.
    parser = Parser(policy=email.policy.default)
    found = []
    for name in names:
        path = outbox_folder() / name
        try:
            text = path.read_bytes().decode("utf-8", errors="replace")
        except OSError:  # removed meanwhile
            continue
        message = parser.parsestr(text, headersonly=not whole)
        found.append(OutboxMessage(name=name, date=_header_date(message),
                                   to=_header(message, "To"),
                                   subject=_header(message, "Subject"),
                                   message=message if whole else None))
    return found


def outbox_message(name: str) -> OutboxMessage | None:
    """One outbox message by file name; None unless `name` is one of the listed files,
    so a crafted name can never reach another file."""
    if name not in outbox_names():
        return None
    found = read_outbox([name], whole=True)
    return found[0] if found else None


def _header(message: EmailMessage, name: str) -> str:
    try:
        return str(message.get(name, ""))
    except (ValueError, TypeError, IndexError):  # a malformed header
        return str(message.get_all(name, [""])[0])


def _header_date(message: EmailMessage) -> datetime | None:
    """The Date header as naive UTC, like every time in Capture."""
    try:
        value = parsedate_to_datetime(str(message.get("Date", "")))
    except (TypeError, ValueError, IndexError):
        return None
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _part(message: EmailMessage | None, subtype: str) -> str | None:
    if message is None:
        return None
    part = message.get_body(preferencelist=(subtype,))
    if part is None:
        return None
    try:
        return part.get_content()
    except (LookupError, ValueError, KeyError):  # an unknown charset, a broken encoding
        return part.get_payload(decode=True).decode("utf-8", errors="replace")
