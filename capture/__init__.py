"""Capture: lead capture pages and email follow-up. `create_app` builds the app."""

import os
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from config import ROOT, Config


def create_app(config: dict[str, Any] | type | None = None) -> Flask:
    """Build the app: defaults, then CAPTURE_* variables, then `config` (tests)."""
    overrides = _as_mapping(config)
    instance_path = overrides.get("INSTANCE_PATH") or os.environ.get("CAPTURE_INSTANCE_PATH")
    app = Flask(
        __name__,
        instance_path=str(Path(instance_path).resolve()) if instance_path else None,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    # Ids in URLs fit a database integer; a longer number is simply not found.
    app.url_map.converters["int"] = DatabaseIdConverter
    app.config.from_object(Config)
    app.config.from_prefixed_env("CAPTURE")
    app.config.update(overrides)

    from capture import admin, api, commands, db, languages, scheduler, settings
    from capture.leads import optins
    from capture.mail import dkim
    from capture.mail.library import Library
    from capture.numbers import rollup_queue
    from capture.public import (bots, embed, health, images, mail_hooks, optin, render,
                                tracking, tracking_wsgi)
    from capture.web import errors, headers, hygiene, logredact, rate_limits

    logredact.init_app(app)
    settings.init_app(app)
    dkim.init_app(app)
    languages.init_app(app)
    app.session_interface = db.SessionInterface()
    _init_database(app)
    rollup_queue.init_app(app)
    optins.init_app(app)
    rate_limits.init_app(app)
    app.cli.add_command(db.MigrationCommands(app))
    hygiene.init_app(app)
    db.csrf.init_app(app)
    bots.RateLimit().init_app(app)
    Library.init_app(app)
    render.init_app(app)
    app.register_blueprint(optin.bp)
    app.register_blueprint(embed.bp)
    app.register_blueprint(tracking.bp)
    app.register_blueprint(mail_hooks.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(images.bp)
    admin.init_app(app)
    api.init_app(app)
    errors.init_app(app)
    headers.init_app(app)
    commands.register(app)
    scheduler.init_app(app)
    tracking_wsgi.init_app(app)
    if app.config["PROXY_COUNT"]:
        count = app.config["PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count)
    return app


class DatabaseIdConverter(IntegerConverter):
    """`<int:…>` in routes, capped at the largest id a database column holds."""

    def __init__(self, url_map, *args, **kwargs) -> None:
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(url_map, *args, **kwargs)


def _as_mapping(config: dict[str, Any] | type | None) -> dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, dict):
        return dict(config)
    return {key: getattr(config, key) for key in dir(config) if key.isupper()}


def _init_database(app: Flask) -> None:
    """Bind the database; stop start-up with one line when it cannot be reached."""
    from capture.db import db
    from capture.settings import SettingError

    try:
        db.init_app(app)
        with app.app_context(), db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise SettingError("DATABASE_URL", f"cannot connect: {reason}") from None
    except ModuleNotFoundError as error:
        raise SettingError("DATABASE_URL", f"driver not installed: {error.name}") from None
