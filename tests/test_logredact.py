"""capture.web.logredact: no token in any log line, whoever writes it."""

import logging
import urllib.error
import urllib.request

import pytest

from capture.web.logredact import RedactingFilter, redact
from tests.live import start_stack

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


@pytest.mark.slow
def test_gunicorn_access_log_lines_are_redacted(tmp_path):
    """gunicorn with `--logger-class capture.web.logredact.GunicornLogger` (a real server):
    the request line, query string and Referer of its access log hold no token."""
    access_log = tmp_path / "access.log"
    arguments = (f"--logger-class capture.web.logredact.GunicornLogger --access-logfile {access_log}"
                 " --access-logformat '%(r)s %(s)s %(q)s \"%(f)s\" \"%({authorization}i)s\"'")
    stack, stop = start_stack(tmp_path, workers=1, scheduler=False,
                              extra_env={"GUNICORN_CMD_ARGS": arguments})
    try:
        for path in (f"/confirm/{TOKEN}", f"/u/{TOKEN}", f"/postback/upgrade?sig={TOKEN}"):
            request = urllib.request.Request(stack.base_url + path, headers={
                "Referer": f"{stack.base_url}/c/{TOKEN}", "Authorization": f"Bearer {TOKEN}"})
            try:
                urllib.request.urlopen(request, timeout=10).close()
            except urllib.error.HTTPError as error:  # 404 and 400 are logged all the same
                error.close()
    finally:
        stop()
    logged = access_log.read_text()
    assert "GET /confirm/ImFi… HTTP/1.1" in logged and "GET /u/ImFi… HTTP/1.1" in logged
    assert "sig=ImFi…" in logged and "/c/ImFi…" in logged and "Bearer ImFi…" in logged
    assert TOKEN not in logged
