"""Tokens out of every log line: confirm, unsubscribe, open and click links, import
mappings, postback signatures and API bearer tokens are cut to a short prefix.

Each of them grants something to whoever reads it (a confirmation, an unsubscribe, a
lead's identity in the opens), and log files travel further than the database:
to support tickets, log services, backups. `init_app` redacts every record the
process makes, whoever logs it (our code, werkzeug's request lines, gunicorn's access
log in a worker). `GunicornLogger` does the same for gunicorn's access log from the
first request, for a config that names it: `logger_class =
"capture.web.logredact.GunicornLogger"` (see deploy/ and docs/run/production.md).
"""

import logging
import re

from flask import Flask

# Enough of a token to tell two apart in a log, too little to use or guess it.
KEPT_CHARACTERS = 4
# What a token is made of: URL-safe base64, its dots and dashes, percent-escapes.
_TOKEN = r"[A-Za-z0-9._~%+/=-]"
_PATH_TOKEN = re.compile(
    rf"(?P<kept>/(?:confirm|u|o|c|admin/leads/import)/{_TOKEN.replace('/', '')}"
    rf"{{{KEPT_CHARACTERS}}}){_TOKEN.replace('/', '')}+")
_QUERY_TOKEN = re.compile(
    rf"(?P<kept>(?<![A-Za-z0-9_])(?:sig|token|signature)={_TOKEN}{{{KEPT_CHARACTERS}}}){_TOKEN}+",
    re.IGNORECASE)
_BEARER_TOKEN = re.compile(
    rf"(?P<kept>Bearer\s+{_TOKEN}{{{KEPT_CHARACTERS}}}){_TOKEN}+", re.IGNORECASE)
_PATTERNS = (_PATH_TOKEN, _QUERY_TOKEN, _BEARER_TOKEN)


def redact(text: str) -> str:
    """`text` with every token cut to its first characters and "…"."""
    for pattern in _PATTERNS:
        text = pattern.sub(r"\g<kept>…", text)
    return text


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Redact a record in place: its message (arguments merged in) and its traceback."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: logging reports that itself
        return record
    redacted = redact(message)
    if redacted != message:
        record.msg, record.args = redacted, None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    return record


class RedactingFilter(logging.Filter):
    """A filter for any handler (a logging config file can name it): lets every
    record through, redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def init_app(app: Flask) -> None:
    """Redact every log record this process makes from now on (once per process,
    however many apps are created)."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "redacts_tokens", False):
        return

    def redacting_factory(*args, **kwargs) -> logging.LogRecord:
        return redact_record(factory(*args, **kwargs))

    redacting_factory.redacts_tokens = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(redacting_factory)


try:  # gunicorn is what production runs; tests and `flask run` do without it
    from gunicorn.glogging import Logger as _GunicornLogger
except ImportError:  # pragma: no cover
    _GunicornLogger = None

if _GunicornLogger is not None:
    class GunicornLogger(_GunicornLogger):
        """gunicorn's logger with tokens cut from the access log's request line,
        path, query string and headers (a Referer holds the page's URL)."""

        def atoms(self, resp, req, environ, request_time):
            """gunicorn's access-log values, redacted."""
            values = super().atoms(resp, req, environ, request_time)
            return {key: redact(value) if isinstance(value, str) else value
                    for key, value in values.items()}
