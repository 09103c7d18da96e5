"""The database and the Flask extensions: the objects bound to the app in create_app(),
the SQLite tuning, and the check that tells a database outage from a bug."""

import sqlite3

import click
from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

from config import ROOT

MIGRATIONS_DIR = str(ROOT / "migrations")
# PostgreSQL refusing a write in a read-only transaction (a standby after a failover,
# default_transaction_read_only): the site cannot take writes now, which is no bug.
READ_ONLY_SQLSTATE = "25006"


class Base(DeclarativeBase):
    """Declarative base for every table."""


db = SQLAlchemy(model_class=Base)
csrf = CSRFProtect()
login_manager = LoginManager()
login_manager.login_view = "admin.login"
login_manager.login_message = "Please log in to see that page."
login_manager.session_protection = "strong"


def migrations(app: Flask) -> None:
    """Set up Flask-Migrate on `app`, once: for `flask --app wsgi db …` and `init`.
    Not at start-up: Flask-Migrate loads alembic, mako and pygments, about 12 MB in
    every web worker, which never migrates."""
    if "migrate" not in app.extensions:
        from flask_migrate import Migrate

        Migrate(app, db, directory=MIGRATIONS_DIR, render_as_batch=True)


class MigrationCommands(click.Group):
    """`flask --app wsgi db …`, listed like any command; Flask-Migrate's own group
    (its options and commands) is loaded when it runs (`migrations`)."""

    def __init__(self, app: Flask) -> None:
        super().__init__("db", help="Perform database migrations (Flask-Migrate).")
        self.app = app

    def _loaded(self) -> click.Group:
        migrations(self.app)
        return self.app.cli.commands["db"]

    def list_commands(self, ctx):
        return self._loaded().list_commands(ctx)

    def get_command(self, ctx, name):
        return self._loaded().get_command(ctx, name)

    def make_context(self, info_name, args, parent=None, **extra):
        return self._loaded().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx):
        return self._loaded().invoke(ctx)


def is_unavailable(error: Exception) -> bool:
    """True when the database could not be reached or was locked (a moment's
    trouble), not when a query was wrong (a bug)."""
    if isinstance(error, sa_exc.TimeoutError):  # every pooled connection was busy
        return True
    if getattr(getattr(error, "orig", None), "sqlstate", None) == READ_ONLY_SQLSTATE:
        return True
    return isinstance(error, (sa_exc.OperationalError, sa_exc.InterfaceError)) or bool(
        getattr(error, "connection_invalidated", False))


def unavailable_reason(error: Exception) -> str:
    """The first line of the driver's message, for one log line (no traceback, no
    SQL parameters)."""
    return str(getattr(error, "orig", None) or error).strip().splitlines()[0][:300]


@event.listens_for(Engine, "connect")
def _tune_sqlite(dbapi_connection, connection_record) -> None:
    """Make SQLite fit for several web workers: WAL lets readers run beside the one
    writer. (The busy timeout, which makes a writer wait for the lock instead of
    failing, is the driver's `timeout`: CAPTURE_DB_LOCK_TIMEOUT_SECONDS.)"""
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions with the signing serializer built once per set
    of keys, not twice per request (to read the cookie and to write it)."""

    _built: tuple | None = None

    def get_signing_serializer(self, app):
        keys = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        built = self._built
        if built is None or built[0] != keys:
            built = self._built = (keys, super().get_signing_serializer(app))
        return built[1]
