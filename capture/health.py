"""Blueprint for /healthz: is the app up and its database reachable."""

from flask import Blueprint, current_app
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from capture.extensions import db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """200 when a query on the database succeeds, 503 otherwise."""
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        db.session.rollback()
        current_app.logger.warning("health check failed: %s", error)
        return {"status": "error", "database": "unreachable"}, 503
    return {"status": "ok", "database": "ok"}, 200
