"""`flask init` builds the schema through the migrations and installs the demo; /healthz."""

import logging
import shutil

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select
from sqlalchemy.exc import OperationalError

from capture import create_app
from capture.db import db
from capture.models import Page
from config import ROOT, TestConfig
from tests.conftest import POSTGRES_URL, optin


def init(app):
    result = app.test_cli_runner().invoke(args=["init"])
    assert result.exit_code == 0, result.output
    return result.stdout


def tables(app):
    with app.app_context():
        return set(inspect(db.engine).get_table_names())


def page_count(app):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Page))


def test_new_database_starts_empty(fresh_app):
    assert tables(fresh_app) == set()


def test_init_creates_the_schema_through_the_migrations(fresh_app):
    init(fresh_app)
    created = tables(fresh_app)
    assert {"pages", "visits", "leads", "events", "suppressions"} <= created
    assert created == set(db.metadata.tables) | {"alembic_version"}
    with fresh_app.app_context():
        context = MigrationContext.configure(db.session.connection())
        assert context.get_current_revision() is not None


def test_init_installs_the_demo_page_and_sequence(fresh_app, tmp_path):
    output = init(fresh_app)
    assert "Database ready." in output
    assert "page /p/demo" in output
    assert page_count(fresh_app) == 1
    assert (tmp_path / "sequences" / "welcome").is_dir()
    copied = sorted(p.name for p in (tmp_path / "sequences" / "welcome").iterdir())
    assert copied == sorted(p.name for p in (ROOT / "sequences" / "welcome").iterdir())


def test_running_init_twice_is_safe_and_adds_nothing(fresh_app, tmp_path):
    init(fresh_app)
    with fresh_app.app_context():
        revision = MigrationContext.configure(db.session.connection()).get_current_revision()
    second = init(fresh_app)
    assert second.splitlines()[0] == "Database ready."  # nothing added
    assert "owner create" in second  # no login yet: it says how to make one
    assert page_count(fresh_app) == 1
    with fresh_app.app_context():
        again = MigrationContext.configure(db.session.connection()).get_current_revision()
    assert again == revision


def test_init_keeps_an_edited_demo_page(fresh_app):
    init(fresh_app)
    with fresh_app.app_context():
        page = db.session.scalar(select(Page).where(Page.slug == "demo"))
        page.title = "My own title"
        db.session.commit()
    init(fresh_app)
    with fresh_app.app_context():
        assert db.session.scalar(select(Page.title).where(Page.slug == "demo")) == "My own title"


def test_init_leaves_the_apps_loggers_working(fresh_app):
    logger = logging.getLogger("capture.leads.lifecycle")  # exists before init, like in a server
    seen = []
    handler = logging.Handler()
    handler.emit = seen.append
    logger.addHandler(handler)
    try:
        init(fresh_app)
        logger.warning("still logged after init")
    finally:
        logger.removeHandler(handler)
    assert [record.getMessage() for record in seen] == ["still logged after init"]


def test_migrated_schema_matches_the_models(fresh_app):
    init(fresh_app)
    with fresh_app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={"compare_type": True, "compare_server_default": True,
                  "render_as_batch": True},
        )
        assert compare_metadata(context, db.metadata) == []


def test_demo_page_renders_after_init(fresh_app):
    init(fresh_app)
    response = fresh_app.test_client().get("/p/demo")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "The One-Page Lead Magnet Checklist" in html
    assert "Send me the checklist" in html


def test_visitor_can_opt_in_on_the_demo_page_after_init(fresh_app):
    init(fresh_app)
    response = optin(fresh_app.test_client(), email="new@example.com", consent="y")
    assert response.status_code == 303
    assert response.headers["Location"] == "/p/demo/thanks"


def test_healthz_is_200_with_status_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.is_json
    assert response.get_json()["status"] == "ok"


def test_healthz_is_503_when_the_database_is_unreachable(app, client, monkeypatch):
    def unreachable(*args, **kwargs):
        raise OperationalError("SELECT 1", {}, Exception("could not connect to server"))

    monkeypatch.setattr(db.session, "execute", unreachable)
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] != "ok"
    assert "could not connect" not in response.get_data(as_text=True)


def test_instance_folder_database_secrets_and_outbox_are_private(tmp_path):
    """Issue 15.13: instance/ and the SQLite file were created world-readable."""
    if POSTGRES_URL:
        pytest.skip("the SQLite file is what this checks")
    import os
    import stat

    from capture.mail import backends as mail
    from capture.mail.mime import Email

    instance = tmp_path / "instance"
    app = create_app({
        **{key: getattr(TestConfig, key) for key in dir(TestConfig) if key.isupper()},
        "INSTANCE_PATH": str(instance), "DATABASE_URL": None, "SECRET_KEY": None,
        "POSTBACK_SECRET": None, "SEQUENCES_DIR": str(tmp_path / "sequences"),
        "MAIL_BACKEND": "outbox"})
    try:
        init(app)
        with app.test_request_context():
            mail.send(Email([("Subject", "Hi")], "Hello", "<p>Hello</p>",
                            sender="a@example.com", recipient="b@example.com"))
        with app.app_context(), db.engine.connect() as connection:
            modes = {path.relative_to(instance).as_posix(): stat.S_IMODE(os.stat(path).st_mode)
                     for path in [instance, *instance.rglob("*")]}
    finally:
        with app.app_context():
            db.engine.dispose()
    assert modes.pop(".") == 0o700
    assert modes.pop("outbox") == 0o700
    assert {"capture.db", "capture.db-wal", "capture.db-shm", "secret_key",
            "postback_secret"} <= set(modes)
    assert set(modes.values()) == {0o600}, modes


def read_only(url: str) -> str:
    """The same database opened so that it refuses every write."""
    if url.startswith("sqlite:///"):
        return f"sqlite:///file:{url.removeprefix('sqlite:///')}?mode=ro&uri=true"
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-c%20default_transaction_read_only%3Don"


def test_healthz_is_503_when_the_database_refuses_writes(fresh_app, fresh_database,
                                                         tmp_path):
    """Issue 15.13: with the disk full every opt-in got a 503 while /healthz said ok."""
    init(fresh_app)
    locked = create_app({
        **{key: getattr(TestConfig, key) for key in dir(TestConfig) if key.isupper()},
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "DATABASE_URL": read_only(fresh_database),
        "SEQUENCES_DIR": str(tmp_path / "sequences"),
    })
    try:
        response = locked.test_client().get("/healthz")
        assert response.status_code == 503
        assert response.get_json() == {"status": "error", "database": "not writable",
                                       "reason": "the database refused a write"}
        # What a visitor meets meanwhile (the visit cannot be recorded).
        assert locked.test_client().get("/p/demo").status_code == 503
    finally:
        with locked.app_context():
            db.engine.dispose()
    assert fresh_app.test_client().get("/healthz").status_code == 200


def test_healthz_is_503_when_the_disk_of_the_sqlite_file_is_full(client, monkeypatch):
    if POSTGRES_URL:
        pytest.skip("the disk of a database server is the server's to watch")
    real_usage = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda path: real_usage(path)._replace(free=4096))
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["reason"] == "the disk holding the database is full"


def test_healthz_recovers_when_the_database_is_back(app, client, monkeypatch):
    def unreachable(*args, **kwargs):
        raise OperationalError("SELECT 1", {}, Exception("down"))

    with monkeypatch.context() as patch:
        patch.setattr(db.session, "execute", unreachable)
        assert client.get("/healthz").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_the_demo_welcome_email_comes_at_any_hour(fresh_app, tmp_path, clock):
    from capture.leads import lifecycle as leads
    from capture.mail import engine
    from tests.conftest import Outbox, body_text

    clock.now = clock.now.replace(hour=23)  # outside the 08:00-20:00 the demo once had
    init(fresh_app)
    client = fresh_app.test_client()
    assert optin(client, email="night@example.com", name="Nia",
                 consent="y").status_code == 303
    outbox = Outbox(tmp_path / "instance" / "outbox")
    [confirmation] = outbox.to("night@example.com")
    token = body_text(confirmation).split("/confirm/")[1].split()[0]
    with fresh_app.app_context():
        # What the confirmation link does, whichever way the page asks for it.
        assert leads.confirm(leads.lead_for_confirm_token(token), "127.0.0.1")
        clock.advance(seconds=10)  # the next tick of the embedded scheduler
        assert engine.tick().sent == 1
    subjects = [str(message["Subject"]) for message in outbox.to("night@example.com")]
    assert subjects[-1] == "Your checklist is here, Nia"
