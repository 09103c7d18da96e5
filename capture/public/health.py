"""Blueprint for /healthz: is the app up and can its database take a write."""

import shutil
from pathlib import Path

from flask import Blueprint, current_app
from sqlalchemy import false, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from capture.db import db, unavailable_reason
from capture.models import RollupState
from config import HEALTH_MIN_FREE_BYTES

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """200 when the database answers and would take a write, 503 with a one-line
    reason otherwise: a site whose opt-ins all fail must not look healthy."""
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        db.session.rollback()
        current_app.logger.warning("health check failed: %s", unavailable_reason(error))
        return _failed("unreachable", "the database cannot be reached")
    try:
        # An UPDATE that changes no row still needs write access: SQLite opened
        # read-only and a PostgreSQL read-only transaction refuse it; no row is locked.
        db.session.execute(update(RollupState).where(false()).values(value=0))
    except SQLAlchemyError as error:
        current_app.logger.warning("health check: database not writable: %s",
                                   unavailable_reason(error))
        return _failed("not writable", "the database refused a write")
    finally:
        db.session.rollback()
    free = _free_bytes_beside_sqlite_file()
    if free is not None and free < HEALTH_MIN_FREE_BYTES:
        # A full disk fails only writes that grow the file, which the check above
        # does not make: the space left where the file lives tells instead.
        current_app.logger.warning("health check: %d bytes free beside the database", free)
        return _failed("not writable", "the disk holding the database is full")
    return {"status": "ok", "database": "ok"}, 200


def _failed(state: str, reason: str):
    return {"status": "error", "database": state, "reason": reason}, 503


def _free_bytes_beside_sqlite_file() -> int | None:
    """Bytes this process may still write where the SQLite file lives; None for a
    database server (its disk is the server's to watch) or an in-memory database."""
    url = make_url(current_app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    path = url.database.removeprefix("file:").split("?", 1)[0]
    try:
        return shutil.disk_usage(Path(path).resolve().parent).free
    except OSError:
        return None
