"""Checks every setting at start-up and fills in the generated ones.

A bad value stops start-up with one line naming the setting (`SettingError` is a
`SystemExit`, so the process prints the line and exits 1 without a traceback).
"""

import difflib
import math
import os
import re
import secrets
from email.headerregistry import Address
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import urlsplit

import click
import limits
from flask import Flask
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from config import Config

MAIL_BACKENDS = ("outbox", "smtp", "console")
SMTP_SECURITY = ("none", "starttls", "ssl")
SCHEDULER_MODES = ("embedded", "off")
# CAPTURE_ variables that are no setting of config.py but are read all the same: the
# instance folder (create_app) and the test suite's PostgreSQL database.
OTHER_VARIABLES = ("INSTANCE_PATH", "TEST_DATABASE_URL")
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

    for name in ("SECRET_KEY", "POSTBACK_SECRET"):
        if config.get(name) in (None, ""):
            config[name] = _instance_secret(app, name.lower())
        config[name] = str(config[name])

    config["BASE_URL"] = _base_url(str(config["BASE_URL"]))
    config["SQLALCHEMY_DATABASE_URI"] = _database_url(app)
    _create_private_sqlite_file(config["SQLALCHEMY_DATABASE_URI"])
    _choice(config, "MAIL_BACKEND", MAIL_BACKENDS)
    _choice(config, "SMTP_SECURITY", SMTP_SECURITY)
    _choice(config, "SCHEDULER", SCHEDULER_MODES)
    _integer(config, "SMTP_PORT", 1, 65535)
    _integer(config, "SMTP_TIMEOUT", 1)
    _integer(config, "SEND_RATE_PER_MINUTE", 1)
    _integer(config, "CONFIRM_RESEND_MINUTES", 0)
    _integer(config, "PROXY_COUNT", 0)
    _integer(config, "MAX_CONTENT_LENGTH", 1024)
    _integer(config, "ADMIN_MAX_CONTENT_LENGTH", 1024)
    _integer(config, "VISITOR_COOKIE_DAYS", 1)
    _integer(config, "SCHEDULER_INTERVAL_SECONDS", 1)
    _integer(config, "CONFIRM_INTERVAL_SECONDS", 1)
    _integer(config, "SEND_BATCH_SIZE", 1)
    _integer(config, "SENDING_TIMEOUT_MINUTES", 1)
    _integer(config, "HOLD_MINUTES", 1)
    _integer(config, "RETRY_HOURS", 0)
    _integer(config, "MACHINE_SECONDS", 0)
    _integer(config, "LEADS_PER_PAGE", 1, 1000)
    _integer(config, "LEADS_BULK_LIMIT", 1)
    _integer(config, "IMPORT_BATCH_ROWS", 1, 10000)
    _integer(config, "IMPORT_MAX_BYTES", 1024)
    _integer(config, "IMPORT_MAX_COLUMNS", 1, 10000)
    _integer(config, "WEBHOOK_TIMEOUT_SECONDS", 1, 60)
    _integer(config, "WEBHOOK_RETRY_HOURS", 0)
    _integer(config, "WEBHOOK_BATCH_SIZE", 1)
    _unsubscribe_mailto(config)
    _number(config, "MIN_FORM_SECONDS", 0)
    _rate_limit_storage(config)
    _integer(config, "FORM_MAX_AGE_SECONDS", 60)
    if config["FORM_MAX_AGE_SECONDS"] <= config["MIN_FORM_SECONDS"]:
        raise SettingError("FORM_MAX_AGE_SECONDS", "must be longer than MIN_FORM_SECONDS")
    _rate_limit(config)
    _rate_limit(config, "API_RATE_LIMIT")
    _mail_from(config)
    config["POSTAL_ADDRESS"] = str(config.get("POSTAL_ADDRESS") or "")
    config["SEQUENCES_DIR"] = str(config["SEQUENCES_DIR"])
    config["CHECK_DELIVERABILITY"] = _boolean(config, "CHECK_DELIVERABILITY")
    config["SMTP_UTF8"] = _boolean(config, "SMTP_UTF8")
    config["WEBHOOK_ALLOW_PRIVATE"] = _boolean(config, "WEBHOOK_ALLOW_PRIVATE")

    _number(config, "DB_LOCK_TIMEOUT_SECONDS", 0.1)
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
    known = {name for name in dir(Config) if name.isupper()}
    for variable in sorted(os.environ):
        name = variable.removeprefix("CAPTURE_")
        if (name == variable or name in known or name in OTHER_VARIABLES
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


def _base_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingError("BASE_URL", f"{value!r} is not an http(s) URL")
    if parts.query or parts.fragment:
        raise SettingError("BASE_URL", "must not have a query or fragment")
    return value.rstrip("/")


def _database_url(app: Flask) -> str:
    value = app.config.get("DATABASE_URL")
    if not value:
        return "sqlite:///" + str(Path(app.instance_path) / "capture.db")
    try:
        url = make_url(str(value))
    except ArgumentError:
        raise SettingError("DATABASE_URL", f"{value!r} is not a database URL") from None
    if url.drivername in PSYCOPG2_SCHEMES:
        raise SettingError("DATABASE_URL", f"start it with postgresql+psycopg:// (the "
                           f"driver Capture installs), not {url.drivername}://")
    return str(value)


def _choice(config: dict, name: str, allowed: tuple[str, ...]) -> None:
    value = str(config.get(name)).strip().lower()
    if value not in allowed:
        raise SettingError(
            name, f"{config.get(name)!r} is not one of {', '.join(allowed)}"
        )
    config[name] = value


def _integer(config: dict, name: str, minimum: int, maximum: int | None = None) -> None:
    value = config.get(name)
    try:
        number = int(str(value).strip())
    except ValueError:
        raise SettingError(name, f"{value!r} is not a whole number") from None
    if number < minimum or (maximum is not None and number > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise SettingError(name, f"{number} must be at least {minimum}{upper}")
    config[name] = number


def _number(config: dict, name: str, minimum: float) -> None:
    value = config.get(name)
    try:
        number = float(str(value).strip())
    except ValueError:
        raise SettingError(name, f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise SettingError(name, f"{value!r} is not a finite number")
    if number < minimum:
        raise SettingError(name, f"{number} must be at least {minimum}")
    config[name] = number


def _boolean(config: dict, name: str) -> bool:
    value = config.get(name)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise SettingError(name, f"{value!r} is not true or false")


def _rate_limit(config: dict, name: str = "OPTIN_RATE_LIMIT") -> None:
    value = str(config.get(name)).strip()
    if value in ("0", "off", ""):
        config[name] = None
        return
    try:
        config[name] = limits.parse(value)
    except ValueError:
        raise SettingError(
            name, f"{value!r} is not a rate like 20/minute (or 0 for off)"
        ) from None


def _rate_limit_storage(config: dict) -> None:
    """`database`, or a URI the `limits` library opens (capture.web.rate_limits checks
    that the database is one it can count in, once it is connected)."""
    value = str(config.get("RATE_LIMIT_STORAGE") or "").strip()
    config["RATE_LIMIT_STORAGE"] = value
    if value == "database":
        return
    try:
        limits.storage.storage_from_string(value)
    except Exception as error:  # the library raises several types for a bad URI
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SettingError("RATE_LIMIT_STORAGE", f"{value!r} is not database, memory:// or "
                                                 f"redis://host:port ({reason})") from None


def _mail_from(config: dict) -> None:
    value = str(config.get("MAIL_FROM"))
    name, address = parseaddr(value)
    if "@" not in address or any(ch in value for ch in "\r\n"):
        raise SettingError("MAIL_FROM", f"{value!r} is not an address like Name <a@b.c>")
    username, domain = address.rsplit("@", 1)
    config["MAIL_FROM_ADDRESS"] = Address(name, username, domain)


def _unsubscribe_mailto(config: dict) -> None:
    value = str(config.get("UNSUBSCRIBE_MAILTO") or "").strip()
    if value and (not re.fullmatch(r"[^@\s<>,?]+@[^@\s<>,?]+\.[^@\s<>,?]+", value)):
        raise SettingError("UNSUBSCRIBE_MAILTO", f"{value!r} is not an email address")
    config["UNSUBSCRIBE_MAILTO"] = value
