"""Checks every setting at start-up by its declaration in config.py; fills in derived ones.

A bad value stops start-up with one line naming the setting (`SettingError` is a
`SystemExit`, so the process prints the line and exits 1 without a traceback).
"""

import difflib
import math
import os
import re
import secrets
from collections.abc import Callable
from email.headerregistry import Address
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import urlsplit

import click
import limits
from flask import Flask
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from config import OTHER_VARIABLES, SETTINGS, Setting

# The database schemes SQLAlchemy maps to psycopg2, which Capture does not install.
PSYCOPG2_SCHEMES = ("postgres", "postgresql", "postgresql+psycopg2")
# Modes of what Capture creates in the instance folder: secrets, the SQLite file and
# the outbox are this user's alone.
PRIVATE_FOLDER = 0o700
PRIVATE_FILE = 0o600


class SettingError(SystemExit):
    """A setting has a value Capture cannot run with."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"Bad setting CAPTURE_{name}: {message}")


def init_app(app: Flask) -> None:
    """Validate app.config in place; raise SettingError on the first bad value."""
    config = app.config
    _warn_unknown_variables(app)
    # The instance folder holds the secrets, the SQLite file and the outbox: only
    # this user may read it (an existing folder keeps the mode its owner chose).
    Path(app.instance_path).mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)

    for setting in SETTINGS:
        CHECKS[setting.kind](app, setting)
    # What one declaration cannot say: a rule between two settings.
    if config["FORM_MAX_AGE_SECONDS"] <= config["MIN_FORM_SECONDS"]:
        raise SettingError("FORM_MAX_AGE_SECONDS", "must be longer than MIN_FORM_SECONDS")

    config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", _engine_options(config))
    config["SESSION_COOKIE_HTTPONLY"] = True
    config["SESSION_COOKIE_SAMESITE"] = "Lax"
    config["SESSION_COOKIE_SECURE"] = config["BASE_URL"].startswith("https://")
    # CSRF tokens live as long as the session: an opt-in page left open for an hour
    # must still submit.
    config.setdefault("WTF_CSRF_TIME_LIMIT", None)


def _warn_unknown_variables(app: Flask) -> None:
    """A misspelt CAPTURE_ variable would silently leave its setting at the default:
    name it with the closest known setting, in the log (on stderr for a command).
    Flask's own settings (CAPTURE_SESSION_COOKIE_NAME …) are known too."""
    known = {setting.name for setting in SETTINGS}
    other = {setting.name for setting in OTHER_VARIABLES}
    for variable in sorted(os.environ):
        name = variable.removeprefix("CAPTURE_")
        if (name == variable or name in known or name in other
                or name in Flask.default_config):
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f"; did you mean CAPTURE_{close[0]}?" if close else ""
        message = f"Unknown setting {variable} is ignored{hint}"
        if click.get_current_context(silent=True) is not None:
            click.echo(f"Warning: {message}", err=True)
        else:
            app.logger.warning(message)


def _engine_options(config: dict) -> dict:
    lock_timeout = config["DB_LOCK_TIMEOUT_SECONDS"]
    if config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # A SQLite file cannot go stale: no ping, one query less per request. The
        # driver opens a transaction right before the first write; IMMEDIATE makes
        # that BEGIN take the write lock at once (waiting up to the busy timeout), so
        # two writers never deadlock upgrading a read lock.
        return {"pool_pre_ping": False,
                "connect_args": {"isolation_level": "IMMEDIATE", "timeout": lock_timeout}}
    # A server connection can go stale (a restart, an idle timeout): each checkout
    # pings it. Without a lock_timeout a statement behind a long lock (a migration,
    # a manual LOCK TABLE) would wait until gunicorn killed the worker.
    options: dict = {"pool_pre_ping": True}
    url = make_url(config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() == "postgresql":
        # Added to the URL's own `options` (a search_path, say), which connect_args
        # would otherwise replace.
        own = url.query.get("options", "")
        own = " ".join(own) if isinstance(own, tuple) else own
        milliseconds = max(1, round(lock_timeout * 1000))
        options["connect_args"] = {
            "options": f"{own} -c lock_timeout={milliseconds}".strip()}
    return options


def _instance_secret(app: Flask, filename: str) -> str:
    """Read a secret from the instance folder, creating it on first start."""
    path = Path(app.instance_path) / filename
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def _create_private_sqlite_file(url: str) -> None:
    """Create a new SQLite file readable by this user alone; SQLite gives its -wal and
    -shm files the same mode. A file that exists already is left as it is."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    if parsed.database.startswith("file:"):  # a URI: SQLite opens it as it says
        return
    try:
        os.close(os.open(parsed.database, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                         PRIVATE_FILE))
    except OSError:  # there already, or its folder missing: connecting will tell
        pass


# --- kinds a declaration says in full: its type, bounds or choices ------------------

def _integer(app: Flask, setting: Setting) -> None:
    value = app.config.get(setting.name)
    try:
        number = int(str(value).strip())
    except ValueError:
        raise SettingError(setting.name, f"{value!r} is not a whole number") from None
    _within_bounds(setting, number)
    app.config[setting.name] = number


def _number(app: Flask, setting: Setting) -> None:
    value = app.config.get(setting.name)
    try:
        number = float(str(value).strip())
    except ValueError:
        raise SettingError(setting.name, f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise SettingError(setting.name, f"{value!r} is not a finite number")
    _within_bounds(setting, number)
    app.config[setting.name] = number


def _within_bounds(setting: Setting, number: float) -> None:
    too_low = setting.minimum is not None and number < setting.minimum
    too_high = setting.maximum is not None and number > setting.maximum
    if too_low or too_high:
        bounds = [f"{word} {bound}" for word, bound in
                  (("at least", setting.minimum), ("at most", setting.maximum))
                  if bound is not None]
        raise SettingError(setting.name, f"{number} must be {' and '.join(bounds)}")


def _boolean(app: Flask, setting: Setting) -> None:
    value = app.config.get(setting.name)
    if isinstance(value, bool):
        return
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        app.config[setting.name] = True
    elif text in ("0", "false", "no", "off", ""):
        app.config[setting.name] = False
    else:
        raise SettingError(setting.name, f"{value!r} is not true or false")


def _choice(app: Flask, setting: Setting) -> None:
    value = app.config.get(setting.name)
    chosen = str(value).strip().lower()
    if chosen not in setting.choices:
        raise SettingError(
            setting.name, f"{value!r} is not one of {', '.join(setting.choices)}")
    app.config[setting.name] = chosen


def _text(app: Flask, setting: Setting) -> None:
    value = app.config.get(setting.name)
    app.config[setting.name] = "" if value is None else str(value)


def _folder(app: Flask, setting: Setting) -> None:
    app.config[setting.name] = str(app.config[setting.name])


def _file(app: Flask, setting: Setting) -> None:
    """The path as text; whoever reads the file says when it cannot (mail/dkim.py)."""
    value = app.config.get(setting.name)
    app.config[setting.name] = "" if value is None else str(value).strip()


# --- kinds with a hand-written check: what a declaration cannot say ------------------

def _secret(app: Flask, setting: Setting) -> None:
    """Empty: read from the instance folder, created there on first start."""
    if app.config.get(setting.name) in (None, ""):
        app.config[setting.name] = _instance_secret(app, setting.name.lower())
    app.config[setting.name] = str(app.config[setting.name])


def _web_address(app: Flask, setting: Setting) -> None:
    value = str(app.config[setting.name])
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingError(setting.name, f"{value!r} is not an http(s) URL")
    if parts.query or parts.fragment:
        raise SettingError(setting.name, "must not have a query or fragment")
    app.config[setting.name] = value.rstrip("/")


def _database_url(app: Flask, setting: Setting) -> None:
    """Sets SQLALCHEMY_DATABASE_URI: the URL, or the SQLite file in the instance folder
    (created private)."""
    value = app.config.get(setting.name)
    if not value:
        url = "sqlite:///" + str(Path(app.instance_path) / "capture.db")
    else:
        try:
            parsed = make_url(str(value))
        except ArgumentError:
            raise SettingError(setting.name, f"{value!r} is not a database URL") from None
        if parsed.drivername in PSYCOPG2_SCHEMES:
            raise SettingError(setting.name, f"start it with postgresql+psycopg:// (the "
                               f"driver Capture installs), not {parsed.drivername}://")
        url = str(value)
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    _create_private_sqlite_file(url)


def _sender(app: Flask, setting: Setting) -> None:
    """Also sets MAIL_FROM_ADDRESS, the parsed address the mail headers use."""
    value = str(app.config.get(setting.name))
    name, address = parseaddr(value)
    if "@" not in address or any(ch in value for ch in "\r\n"):
        raise SettingError(setting.name, f"{value!r} is not an address like Name <a@b.c>")
    username, domain = address.rsplit("@", 1)
    app.config["MAIL_FROM_ADDRESS"] = Address(name, username, domain)


def _email_address(app: Flask, setting: Setting) -> None:
    value = str(app.config.get(setting.name) or "").strip()
    if value and (not re.fullmatch(r"[^@\s<>,?]+@[^@\s<>,?]+\.[^@\s<>,?]+", value)):
        raise SettingError(setting.name, f"{value!r} is not an email address")
    app.config[setting.name] = value


def _rate(app: Flask, setting: Setting) -> None:
    """A `limits` rate item, or None for off."""
    value = str(app.config.get(setting.name)).strip()
    if value in ("0", "off", ""):
        app.config[setting.name] = None
        return
    try:
        app.config[setting.name] = limits.parse(value)
    except ValueError:
        raise SettingError(
            setting.name, f"{value!r} is not a rate like 20/minute (or 0 for off)"
        ) from None


def _rate_storage(app: Flask, setting: Setting) -> None:
    """`database`, or a URI the `limits` library opens (capture.web.rate_limits checks
    that the database is one it can count in, once it is connected)."""
    value = str(app.config.get(setting.name) or "").strip()
    app.config[setting.name] = value
    if value == "database":
        return
    try:
        limits.storage.storage_from_string(value)
    except Exception as error:  # the library raises several types for a bad URI
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SettingError(setting.name, f"{value!r} is not database, memory:// or "
                                         f"redis://host:port ({reason})") from None


def _mailbox_url(app: Flask, setting: Setting) -> None:
    """An IMAP or POP3 URL with a user and a host (the message never repeats the
    value: it holds a password)."""
    value = str(app.config.get(setting.name) or "").strip()
    app.config[setting.name] = value
    if not value:
        return
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is no number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("imaps", "imap", "pop3s", "pop3") \
            or not parts.hostname or not parts.username:
        raise SettingError(setting.name, "must be a mailbox like imaps://user:password@"
                                         "host:993/INBOX (or imap://, pop3s://, pop3://)")


# One check per kind of config.KINDS.
CHECKS: dict[str, Callable[[Flask, Setting], None]] = {
    "integer": _integer,
    "number": _number,
    "boolean": _boolean,
    "choice": _choice,
    "text": _text,
    "folder": _folder,
    "file": _file,
    "secret": _secret,
    "web address": _web_address,
    "database URL": _database_url,
    "sender": _sender,
    "email address": _email_address,
    "rate": _rate,
    "rate storage": _rate_storage,
    "mailbox URL": _mailbox_url,
}
