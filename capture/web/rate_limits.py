"""Rate limits that hold for the whole site: where the counters live
(CAPTURE_RATE_LIMIT_STORAGE) and the one limiter the opt-in, log-in and API use.

Counters kept in a worker's memory count per process: with four gunicorn workers a
limit of 5 lets 20 through. The default keeps them in the app's database instead, so
every worker and every server count together without another service; `redis://`
shares them through Redis, `memory://` keeps the old per-process count.
"""

import hashlib
import time

import limits.storage
import limits.strategies
from flask import Flask, current_app
from sqlalchemy import Double, Integer, bindparam, case, delete, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from capture.db import db
from capture.models import RateLimitCounter
from capture.settings import SettingError

DATABASE = "database"
# The databases whose UPSERT (INSERT … ON CONFLICT … RETURNING) the counters use.
UPSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
# Counters whose window ended are deleted at most this often, by each process.
PURGE_SECONDS = 60


class DatabaseStorage(limits.storage.Storage):
    """Fixed-window counters in the table rate_limit_counters: one UPSERT per hit,
    atomic on SQLite and PostgreSQL alike. A window starts with the first hit of a
    key and lasts the limit's period, as in the library's memory and Redis storages."""

    STORAGE_SCHEME = None  # made by init_app() with the app's engine, not from a URI

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        self.table = RateLimitCounter.__table__
        self.next_purge = 0.0
        # Built once: making the statement anew costs more than running it.
        columns = self.table.c
        amount = bindparam("amount", type_=Integer)
        ends = bindparam("ends", type_=Double)
        ended = columns.expires_at <= bindparam("now", type_=Double)
        self.count_hit = (
            UPSERTS[engine.dialect.name](self.table)
            .values(key=bindparam("key"), count=amount, expires_at=ends)
            .on_conflict_do_update(
                index_elements=[columns.key],
                set_={"count": case((ended, amount), else_=columns.count + amount),
                      "expires_at": case((ended, ends), else_=columns.expires_at)})
            .returning(columns.count)
        )
        self.purge = delete(self.table).where(ended)

    @property
    def base_exceptions(self) -> type[Exception]:
        return SQLAlchemyError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Count `amount` hits of `key`; the count in its window afterwards."""
        now = time.time()
        values = {"key": _stored(key), "amount": amount, "now": now, "ends": now + expiry}
        with self.engine.begin() as connection:
            count = connection.execute(self.count_hit, values).scalar_one()
            if now >= self.next_purge:
                self.next_purge = now + PURGE_SECONDS
                connection.execute(self.purge, {"now": now})
        return count

    def get(self, key: str) -> int:
        """The hits of `key` in its current window."""
        return self._current(key, self.table.c.count) or 0

    def get_expiry(self, key: str) -> float:
        """When the current window of `key` ends (now when it has none)."""
        return self._current(key, self.table.c.expires_at) or time.time()

    def _current(self, key: str, column):
        columns = self.table.c
        with self.engine.connect() as connection:
            return connection.scalar(select(column).where(
                columns.key == _stored(key), columns.expires_at > time.time()))

    def check(self) -> bool:
        """True when the database answers."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return False
        return True

    def reset(self) -> int | None:
        """Forget every counter; how many there were."""
        with self.engine.begin() as connection:
            return connection.execute(delete(self.table)).rowcount

    def clear(self, key: str) -> None:
        """Forget the counter of `key`."""
        with self.engine.begin() as connection:
            connection.execute(delete(self.table).where(self.table.c.key == _stored(key)))


def _stored(key: str) -> str:
    """The key as stored: a long one (a long address in it) by its hash."""
    if len(key) <= 255:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def init_app(app: Flask) -> None:
    """Build the app's limiter on the storage RATE_LIMIT_STORAGE names (checked by
    capture.settings): fixed windows, the one strategy every storage offers."""
    uri = app.config["RATE_LIMIT_STORAGE"]
    if uri == DATABASE:
        with app.app_context():
            engine = db.engine
        if engine.dialect.name not in UPSERTS:
            raise SettingError("RATE_LIMIT_STORAGE", f"database needs SQLite or PostgreSQL, "
                                                     f"not {engine.dialect.name}: use redis://…")
        storage = DatabaseStorage(engine)
    else:
        storage = limits.storage.storage_from_string(uri)
    app.extensions["capture.rate_limiter"] = limits.strategies.FixedWindowRateLimiter(storage)


def limiter(app: Flask | None = None) -> limits.strategies.FixedWindowRateLimiter:
    """The app's limiter."""
    return (app or current_app).extensions["capture.rate_limiter"]
