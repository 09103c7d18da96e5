"""Settings: a bad value stops start-up with one line naming it; good values come from
the defaults, then CAPTURE_* variables; secrets are generated once and kept."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from capture import create_app
from capture.db import db
from capture.settings import SettingError
from config import ROOT


def build(tmp_path, **settings):
    """An app from the defaults plus the environment, like `flask --app wsgi` builds it."""
    config = {
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'capture.db'}",
        **settings,
    }
    app = create_app(config)
    with app.app_context():
        db.engine.dispose()
    return app


@pytest.fixture
def clean_environ(monkeypatch):
    """No CAPTURE_* variable of the machine running the tests leaks into the app."""
    for name in list(os.environ):
        if name.startswith("CAPTURE_"):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAIL_BACKEND", "pigeon"),
        ("SMTP_SECURITY", "tls-please"),
        ("SCHEDULER", "sometimes"),
        ("SMTP_PORT", "abc"),
        ("SMTP_PORT", 70000),
        ("SEND_RATE_PER_MINUTE", 0),
        ("OPTIN_RATE_LIMIT", "lots"),
        ("BASE_URL", "ftp://x"),
        ("BASE_URL", "example.com"),
        ("MAIL_FROM", "nobody"),
        ("DATABASE_URL", "nonsense://"),
        ("DATABASE_URL", "not a url at all"),
        ("DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/capture"),
        ("MIN_FORM_SECONDS", "soon"),
        ("MIN_FORM_SECONDS", "nan"),
        ("FORM_MAX_AGE_SECONDS", "a day"),
        ("FORM_MAX_AGE_SECONDS", 10),
        ("DB_LOCK_TIMEOUT_SECONDS", "0"),
        ("DB_LOCK_TIMEOUT_SECONDS", "inf"),
    ],
)
def test_bad_setting_stops_start_up_with_one_line_naming_it(make_app, name, value):
    with pytest.raises(SettingError) as raised:
        make_app(**{name: value})
    message = str(raised.value)
    assert f"CAPTURE_{name}" in message
    assert "\n" not in message


def test_database_in_a_missing_directory_stops_start_up_naming_database_url(
    make_app, tmp_path
):
    missing = tmp_path / "no" / "such" / "folder" / "capture.db"
    with pytest.raises(SettingError) as raised:
        make_app(DATABASE_URL=f"sqlite:///{missing}")
    message = str(raised.value)
    assert "CAPTURE_DATABASE_URL" in message
    assert "cannot connect" in message
    assert "\n" not in message


def test_bad_setting_exits_the_real_cli_with_one_line_and_no_traceback(tmp_path):
    env = {name: value for name, value in os.environ.items() if not name.startswith("CAPTURE_")}
    env.update(CAPTURE_MAIL_BACKEND="pigeon", CAPTURE_INSTANCE_PATH=str(tmp_path / "instance"))
    flask = Path(sys.executable).parent / "flask"
    result = subprocess.run(
        [str(flask), "--app", "wsgi", "pages", "list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "CAPTURE_MAIL_BACKEND" in lines[0]
    assert "pigeon" in lines[0]


def test_environment_variable_overrides_the_default(tmp_path, clean_environ):
    clean_environ.setenv("CAPTURE_BASE_URL", "https://leads.example.com/")
    clean_environ.setenv("CAPTURE_SEND_RATE_PER_MINUTE", "30")
    app = build(tmp_path)
    assert app.config["BASE_URL"] == "https://leads.example.com"
    assert app.config["SEND_RATE_PER_MINUTE"] == 30


def test_bad_environment_variable_stops_start_up_naming_it(tmp_path, clean_environ):
    clean_environ.setenv("CAPTURE_SMTP_SECURITY", "maybe")
    with pytest.raises(SettingError, match="CAPTURE_SMTP_SECURITY"):
        build(tmp_path)


def test_defaults_apply_without_any_variable(tmp_path, clean_environ):
    app = build(tmp_path)
    assert app.config["BASE_URL"] == "http://127.0.0.1:5000"
    assert app.config["MAIL_BACKEND"] == "outbox"
    assert app.config["SEND_RATE_PER_MINUTE"] == 600


def test_default_database_is_a_sqlite_file_in_the_instance_folder(tmp_path, clean_environ):
    app = create_app({"INSTANCE_PATH": str(tmp_path / "instance")})
    with app.app_context():
        db.engine.dispose()
    assert (tmp_path / "instance" / "capture.db").exists()


def test_secrets_are_generated_once_into_the_instance_folder(tmp_path, clean_environ):
    first = build(tmp_path)
    instance = tmp_path / "instance"
    secret_key = (instance / "secret_key").read_text().strip()
    postback_secret = (instance / "postback_secret").read_text().strip()
    assert first.config["SECRET_KEY"] == secret_key
    assert first.config["POSTBACK_SECRET"] == postback_secret
    assert len(secret_key) >= 32 and len(postback_secret) >= 32
    assert secret_key != postback_secret


def test_generated_secrets_are_the_same_on_the_next_start(tmp_path, clean_environ):
    first = build(tmp_path)
    second = build(tmp_path)
    assert second.config["SECRET_KEY"] == first.config["SECRET_KEY"]
    assert second.config["POSTBACK_SECRET"] == first.config["POSTBACK_SECRET"]


def test_generated_secret_files_are_readable_only_by_the_owner(tmp_path, clean_environ):
    build(tmp_path)
    for name in ("secret_key", "postback_secret"):
        assert (tmp_path / "instance" / name).stat().st_mode & 0o077 == 0


def test_a_secret_from_the_environment_wins_over_the_generated_one(tmp_path, clean_environ):
    clean_environ.setenv("CAPTURE_SECRET_KEY", "from-the-environment")
    app = build(tmp_path)
    assert app.config["SECRET_KEY"] == "from-the-environment"
    assert not (tmp_path / "instance" / "secret_key").exists()


def set_cookies(response):
    return response.headers.getlist("Set-Cookie")


def test_cookies_are_secure_when_base_url_is_https(make_app, demo_page):
    app = make_app(BASE_URL="https://leads.example.com")
    client = app.test_client()
    cookies = set_cookies(client.get("/p/demo"))
    assert any(c.startswith("session=") for c in cookies)
    assert any(c.startswith("capture_vid=") for c in cookies)
    assert all("Secure" in c for c in cookies), cookies


def test_cookies_are_not_secure_over_plain_http(client, demo_page):
    cookies = set_cookies(client.get("/p/demo"))
    assert cookies
    assert not any("Secure" in c for c in cookies), cookies



# --- what start-up says about mistakes it can name (issue 15, item 24) -----------------

def test_unknown_variable_is_logged_with_the_closest_setting(tmp_path, clean_environ, caplog):
    clean_environ.setenv("CAPTURE_SMTP_HOTS", "mail.example.com")
    clean_environ.setenv("CAPTURE_SESSION_COOKIE_NAME", "capture")  # Flask's own: known
    with caplog.at_level("WARNING"):
        app = build(tmp_path)
    warnings = [record.getMessage() for record in caplog.records
                if record.levelname == "WARNING"]
    assert warnings == ["Unknown setting CAPTURE_SMTP_HOTS is ignored; "
                        "did you mean CAPTURE_SMTP_HOST?"]
    assert app.config["SMTP_HOST"] == "localhost"  # start-up went on, with the default


def test_unknown_variable_is_a_line_on_stderr_for_a_command(tmp_path):
    env = {name: value for name, value in os.environ.items() if not name.startswith("CAPTURE_")}
    env.update(CAPTURE_SEND_RATE_PER_MINUT="60", CAPTURE_INSTANCE_PATH=str(tmp_path / "i"),
               CAPTURE_DATABASE_URL=f"sqlite:///{tmp_path / 'capture.db'}")
    flask = Path(sys.executable).parent / "flask"
    result = subprocess.run([str(flask), "--app", "wsgi", "routes"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "Warning: Unknown setting CAPTURE_SEND_RATE_PER_MINUT is ignored; "
        "did you mean CAPTURE_SEND_RATE_PER_MINUTE?"]
    assert "/admin/login" in result.stdout


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg2"])
def test_postgres_url_without_the_installed_driver_says_which_to_write(make_app, scheme):
    with pytest.raises(SettingError) as raised:
        make_app(DATABASE_URL=f"{scheme}://capture:secret@db.example.com/capture")
    assert str(raised.value) == (
        "Bad setting CAPTURE_DATABASE_URL: start it with postgresql+psycopg:// (the driver "
        f"Capture installs), not {scheme}://")
