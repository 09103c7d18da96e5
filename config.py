"""Capture's settings: the defaults, each overridable by a CAPTURE_-prefixed variable.

`create_app()` loads `Config`, then `app.config.from_prefixed_env("CAPTURE")`, so
`CAPTURE_BASE_URL=https://example.com` sets `BASE_URL`. Values that are `None` here are
filled in at start-up (the SQLite file and the generated secrets live in the instance
folder). `capture/settings.py` checks every value and stops start-up on a bad one.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent
# /healthz answers 503 once less than this is free on the disk of the SQLite file.
HEALTH_MIN_FREE_BYTES = 1024 * 1024


class Config:
    """Defaults for a local install; production overrides them from the environment."""

    # Any SQLAlchemy URL; None means instance/capture.db (SQLite).
    DATABASE_URL: str | None = None
    # How long a query waits for a lock another connection holds before it gives up
    # (a visitor then gets a 503 with what they typed kept): SQLite's busy timeout,
    # PostgreSQL's lock_timeout.
    DB_LOCK_TIMEOUT_SECONDS = 10
    # None means: generated once and kept in instance/secret_key.
    SECRET_KEY: str | None = None
    # Absolute links in emails are built from this.
    BASE_URL = "http://127.0.0.1:5000"

    MAIL_BACKEND = "outbox"  # outbox | smtp | console
    MAIL_FROM = "Capture <no-reply@localhost>"
    SMTP_HOST = "localhost"
    SMTP_PORT = 25
    SMTP_USERNAME = ""
    SMTP_PASSWORD = ""
    SMTP_SECURITY = "none"  # none | starttls | ssl
    SMTP_TIMEOUT = 10
    # Whether the SMTP server offers SMTPUTF8: only then are addresses with non-ASCII
    # characters before the @ (müller@example.de) accepted at opt-in.
    SMTP_UTF8 = False
    # Printed in every email footer (CAN-SPAM); empty shows a warning to the owner.
    POSTAL_ADDRESS = ""

    SEQUENCES_DIR = str(ROOT / "sequences")
    SEND_RATE_PER_MINUTE = 600
    # embedded: the scheduler job runs inside the web process (make run); off: a
    # separate `flask --app wsgi scheduler` process does the sending.
    SCHEDULER = "off"
    # How often the scheduler job runs.
    SCHEDULER_INTERVAL_SECONDS = 10
    # How often the scheduler's fast lane sends the queued confirmation emails (a
    # visitor waits for that one).
    CONFIRM_INTERVAL_SECONDS = 2
    # Most messages one tick sends (the rate cap may allow fewer).
    SEND_BATCH_SIZE = 200
    # A delivery claimed this long ago without an outcome is marked unknown.
    SENDING_TIMEOUT_MINUTES = 10
    # A lead whose next step file is broken is looked at again after this long.
    HOLD_MINUTES = 5
    # SMTP 4xx and connection errors are retried with back-off for this long.
    RETRY_HOURS = 24
    # Opens and clicks sooner than this after sending are taken as machine-made.
    MACHINE_SECONDS = 10
    # Optional address for List-Unsubscribe's mailto: form.
    UNSUBSCRIBE_MAILTO = ""
    # None means: generated once and kept in instance/postback_secret.
    POSTBACK_SECRET: str | None = None

    # Outgoing webhooks: seconds to wait for an endpoint's answer, hours to retry a
    # failing delivery, most deliveries one scheduler run posts, and whether loopback
    # and private-network addresses may be called (off: they are refused, see SSRF).
    WEBHOOK_TIMEOUT_SECONDS = 5
    WEBHOOK_RETRY_HOURS = 24
    WEBHOOK_BATCH_SIZE = 100
    WEBHOOK_ALLOW_PRIVATE = False

    # Opt-in defences: a form sent back sooner than MIN_FORM_SECONDS after it was shown
    # is a bot's; one open longer than FORM_MAX_AGE_SECONDS is shown again, to submit
    # once more (its fill-time token has expired).
    MIN_FORM_SECONDS = 2
    FORM_MAX_AGE_SECONDS = 6 * 3600
    OPTIN_RATE_LIMIT = "20/minute"  # per client address; 0 turns it off
    # Where the rate-limit counters live: database (the app's own, shared by every
    # worker and server), redis://host:6379, or memory:// (each process counts alone).
    RATE_LIMIT_STORAGE = "database"
    # API requests per token; 0 turns the limit off.
    API_RATE_LIMIT = "600/minute"
    # A repeat opt-in of an unconfirmed address re-sends the confirmation email at
    # most once in this many minutes, so a flood cannot mail-bomb anyone.
    CONFIRM_RESEND_MINUTES = 10
    # Checking that the domain accepts mail needs DNS, so it is opt-in.
    CHECK_DELIVERABILITY = False
    # Number of reverse proxies in front of the app whose X-Forwarded-* to trust.
    PROXY_COUNT = 0
    # Largest request body accepted, in bytes (visitors; the dashboard's own limit).
    MAX_CONTENT_LENGTH = 64 * 1024
    ADMIN_MAX_CONTENT_LENGTH = 1024 * 1024

    # The dashboard's leads table: rows per page, most leads one bulk action takes.
    LEADS_PER_PAGE = 50
    LEADS_BULK_LIMIT = 500

    # List import (`leads import`, the dashboard's Import): rows written per
    # transaction, the largest file the dashboard accepts, in bytes, and the most
    # columns a file may have (each one is a row of the mapping page).
    IMPORT_BATCH_ROWS = 500
    IMPORT_MAX_BYTES = 20 * 1024 * 1024
    IMPORT_MAX_COLUMNS = 200

    # Visitor cookie lifetime (first-party, random id).
    VISITOR_COOKIE_DAYS = 365


class TestConfig(Config):
    """What the test suite starts from; each test's fixture adds its own database."""

    TESTING = True
    SECRET_KEY = "test-secret-key"
    POSTBACK_SECRET = "test-postback-secret"
    MIN_FORM_SECONDS = 0
    OPTIN_RATE_LIMIT = "0"
