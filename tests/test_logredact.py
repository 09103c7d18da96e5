"""capture.logredact: no token in any log line, whoever writes it."""

import logging
from datetime import timedelta
from types import SimpleNamespace

import pytest

from capture.logredact import GunicornLogger, RedactingFilter, redact

TOKEN = "ImFiYzEyMyI.Xk3j5H1yZsWbQ8pLq0rTuVwXyZ"


@pytest.mark.parametrize(("line", "shown"), [
    (f"database unavailable for GET /confirm/{TOKEN}: locked", "/confirm/ImFi…: locked"),
    (f"POST /u/{TOKEN} 503", "/u/ImFi… 503"),
    (f"GET https://example.com/o/{TOKEN}?x=1", "https://example.com/o/ImFi…?x=1"),
    (f"GET /c/{TOKEN} HTTP/1.1", "GET /c/ImFi… HTTP/1.1"),
    (f"GET /admin/leads/import/{TOKEN}", "/admin/leads/import/ImFi…"),
    (f"GET /postback/upgrade?lead=r&txn=t&sig={TOKEN}&x=1", "txn=t&sig=ImFi…&x=1"),
    (f"Authorization: Bearer cap_{TOKEN}", "Bearer cap_…"),
])
def test_tokens_are_cut_to_a_prefix(line, shown):
    assert TOKEN not in redact(line)
    assert shown in redact(line)


def test_other_paths_are_left_as_they_are():
    line = "GET /p/demo?utm_source=news 200 /admin/leads/12 /static/capture.css"
    assert redact(line) == line


def test_app_log_records_are_redacted_with_their_arguments(app, caplog):
    with caplog.at_level(logging.INFO):
        app.logger.info("unavailable for %s %s", "GET", f"/confirm/{TOKEN}")
        logging.getLogger("werkzeug").info('"GET /u/%s HTTP/1.1" 200 -', TOKEN)
        try:
            raise ValueError(f"/c/{TOKEN}")
        except ValueError:
            app.logger.exception("failed on /o/%s", TOKEN)
    assert TOKEN not in caplog.text
    assert "/confirm/ImFi…" in caplog.text and "/u/ImFi…" in caplog.text
    assert "ValueError: /c/ImFi…" in caplog.text


def test_redacting_filter_for_a_logging_config():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "GET /c/%s", (TOKEN,), None)
    assert RedactingFilter().filter(record)
    assert record.getMessage() == "GET /c/ImFi…"


def test_gunicorn_access_log_lines_are_redacted():
    """gunicorn's `logger_class = "capture.logredact.GunicornLogger"` redacts the request
    line, path, query string and headers (the Referer of a confirmation page's CSS)."""
    config = SimpleNamespace(errorlog="-", loglevel="info", accesslog=None, syslog=False,
                             logconfig=None, logconfig_dict={}, logconfig_json=None,
                             capture_output=False, disable_redirect_access_to_syslog=False,
                             user=0, group=0, access_log_format="", env={})
    logger = GunicornLogger.__new__(GunicornLogger)
    logger.cfg = config
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": f"/u/{TOKEN}?sig={TOKEN}",
               "SERVER_PROTOCOL": "HTTP/1.1", "PATH_INFO": f"/u/{TOKEN}",
               "QUERY_STRING": f"sig={TOKEN}",
               "HTTP_REFERER": f"https://example.com/confirm/{TOKEN}"}
    response = SimpleNamespace(status="200 OK", sent=10, headers=[])
    request = SimpleNamespace(headers=[("Authorization", f"Bearer {TOKEN}")])
    atoms = logger.atoms(response, request, environ, timedelta(seconds=0))
    assert TOKEN not in repr(atoms)
    assert atoms["r"] == "GET /u/ImFi…?sig=ImFi… HTTP/1.1"
    assert atoms["f"] == "https://example.com/confirm/ImFi…"
