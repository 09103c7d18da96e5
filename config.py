"""Capture's settings, each declared once: name, default, kind, bounds and meaning.

`create_app()` loads `Config` (built from `SETTINGS`), then
`app.config.from_prefixed_env("CAPTURE")`, so `CAPTURE_BASE_URL=https://example.com`
sets `BASE_URL`. Values that are `None` here are filled in at start-up (the SQLite file
and the generated secrets live in the instance folder). `capture/settings.py` checks
every value against its declaration and stops start-up on a bad one;
`docs/generate.py` writes the settings table of docs/run/settings.md from the same
declarations. This file imports nothing outside the standard library: any Python can
read it.
"""

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
# /healthz answers 503 once less than this is free on the disk of the SQLite file.
HEALTH_MIN_FREE_BYTES = 1024 * 1024

# What a value of each kind may be, as the settings table says it. Kinds a declaration
# fully describes (integer, number, boolean, choice, text) are checked from it alone;
# capture/settings.py has one hand-written check for each of the others.
KINDS = {
    "integer": "a whole number",
    "number": "a number",
    "boolean": "`true` or `false` (also `1`/`0`, `yes`/`no`, `on`/`off`)",
    "choice": "one of",
    "text": "any text",
    "folder": "a folder's path",
    "file": "a file's path, or empty",
    "secret": "any text; empty: generated",
    "web address": "an `http://` or `https://` URL without query or fragment",
    "database URL": "an SQLAlchemy URL, `postgresql+psycopg://…` or `sqlite:///…`",
    "sender": "an address like `Name <news@example.com>`",
    "email address": "an email address, or empty",
    "rate": "`N/second`, `N/minute`, `N/hour` or `N/day`; `0` turns it off",
    "rate storage": "`database`, `memory://` or `redis://host:port`",
    "mailbox URL": "`imaps://`, `imap://`, `pop3s://` or `pop3://` `user:password@host`, "
                   "or empty",
}


@dataclass(frozen=True)
class Setting:
    """One setting: `CAPTURE_<name>` overrides `default`; `kind` (a key of KINDS) and
    the bounds say which values start-up accepts; `meaning` is its line in the docs.
    `shown_default` is what the docs print instead of the default where that says too
    little (one worked out at start-up, a size in bytes)."""

    name: str
    default: object
    kind: str
    meaning: str
    minimum: float | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()
    shown_default: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: unknown kind {self.kind!r}")
        if (self.kind == "choice") != bool(self.choices):
            raise ValueError(f"{self.name}: choices go with the kind 'choice' alone")
        if (self.minimum is not None or self.maximum is not None) and \
                self.kind not in ("integer", "number"):
            raise ValueError(f"{self.name}: bounds go with a number")


SECTIONS = (
    ("Database, secrets and links", (
        Setting("DATABASE_URL", None, "database URL",
                "the database: SQLite, or PostgreSQL for scale (`postgres://` and "
                "`postgresql://` are refused: `postgresql+psycopg` is the driver Capture "
                "installs)",
                shown_default="`instance/capture.db` (SQLite)"),
        Setting("DB_LOCK_TIMEOUT_SECONDS", 10, "number",
                "longest wait for a lock another connection holds before the request gives "
                "up with a `503`, what the visitor typed kept (SQLite's busy timeout, "
                "PostgreSQL's `lock_timeout`)",
                minimum=0.1),
        Setting("SECRET_KEY", None, "secret", "signs sessions and tokens",
                shown_default="generated once into `instance/secret_key`"),
        Setting("BASE_URL", "http://127.0.0.1:5000", "web address",
                "absolute links in emails are built from it; `https://…` makes cookies "
                "`Secure`"),
    )),
    ("Mail", (
        Setting("MAIL_BACKEND", "outbox", "choice",
                "how email leaves: `outbox` (`.eml` files in `instance/outbox/`), `smtp`, or "
                "`console` (printed)",
                choices=("outbox", "smtp", "console")),
        Setting("MAIL_FROM", "Capture <no-reply@localhost>", "sender", "the default sender"),
        Setting("SMTP_HOST", "localhost", "text", "the SMTP server"),
        Setting("SMTP_PORT", 25, "integer", "the SMTP server's port", minimum=1, maximum=65535),
        Setting("SMTP_USERNAME", "", "text", "SMTP login; empty: no login"),
        Setting("SMTP_PASSWORD", "", "text", "SMTP password"),
        Setting("SMTP_SECURITY", "none", "choice",
                "`starttls` upgrades the connection, `ssl` opens it encrypted",
                choices=("none", "starttls", "ssl")),
        Setting("SMTP_TIMEOUT", 10, "integer", "seconds to wait for the SMTP server",
                minimum=1),
        Setting("SMTP_CONNECTIONS", 10, "integer",
                "SMTP connections each scheduler process sends over at once (opened one by one "
                "as the earlier ones deliver); with a relay across a network, more connections "
                "send more per second",
                minimum=1, maximum=100),
        Setting("SMTP_UTF8", False, "boolean",
                "`true` when the SMTP server offers SMTPUTF8: only then are addresses with "
                "non-ASCII letters before the @ (`müller@example.de`) accepted at opt-in and "
                "import"),
        Setting("POSTAL_ADDRESS", "", "text",
                "printed in every email footer (CAN-SPAM); empty shows a warning to the owner"),
    )),
    ("DKIM signing", (
        Setting("DKIM_DOMAIN", "", "text",
                "the signing domain (`d=`): the `CAPTURE_MAIL_FROM` domain or a parent of it, "
                "for DMARC; set the three DKIM settings together, or none (no signing)"),
        Setting("DKIM_SELECTOR", "", "text",
                "the selector (`s=`): the public key is published at "
                "`<selector>._domainkey.<domain>`"),
        Setting("DKIM_KEY_FILE", "", "file",
                "the RSA private key in PEM that `dkim keygen` wrote; read once at start"),
    )),
    ("Sending", (
        Setting("SEQUENCES_DIR", str(ROOT / "sequences"), "folder",
                "where the sequence folders live", shown_default="`sequences/`"),
        Setting("BROADCASTS_DIR", str(ROOT / "broadcasts"), "folder",
                "where the broadcast files (`<name>.md`) live", shown_default="`broadcasts/`"),
        Setting("BROADCAST_TAKE_ROWS", 2000, "integer",
                "leads a broadcast's recipients are taken in per transaction when it starts "
                "sending (each chunk holds SQLite's write lock for its own rows only)",
                minimum=1, maximum=100000),
        Setting("SEND_RATE_PER_MINUTE", 600, "integer",
                "cap on outgoing mail: sequence, broadcast and confirmation emails wait for the "
                "next minute once the emails of the last minute (confirmations included) reach "
                "it; confirmations go first, then sequence steps, then broadcasts",
                minimum=1),
        Setting("SCHEDULER", "off", "choice",
                "`embedded` runs the sending job inside the web process (what `make run` "
                "uses); `off` leaves it to a separate `.venv/bin/flask --app wsgi scheduler` "
                "process",
                choices=("embedded", "off")),
        Setting("SCHEDULER_INTERVAL_SECONDS", 10, "integer", "how often the sending job runs",
                minimum=1),
        Setting("CONFIRM_INTERVAL_SECONDS", 2, "integer",
                "how often the scheduler's fast lane sends the queued confirmation emails (a "
                "visitor waits for that one)",
                minimum=1),
        Setting("OPTIN_PROCESSING", "queued", "choice",
                "`queued`: a sign-up from the opt-in page or the embedded form is one durable "
                "append when the visitor gets the answer, and the scheduler's processor makes "
                "its lead, events, enrolment, webhooks and confirmation within about a second; "
                "`direct`: the request does all of it itself (the API always does). The "
                "same setting decides where a person's click on a tagged or trigger link "
                "gets its tag and starts its sequences: queued for the processor, or in "
                "the click's request",
                choices=("queued", "direct")),
        Setting("INTAKE_INTERVAL_SECONDS", 1, "integer",
                "how often the scheduler's processor folds in the queued sign-ups",
                minimum=1, maximum=60),
        Setting("INTAKE_BATCH_SIZE", 50, "integer",
                "most queued sign-ups folded in per transaction (on SQLite each batch holds "
                "the write lock while it runs)",
                minimum=1, maximum=1000),
        Setting("SEND_BATCH_SIZE", 200, "integer",
                "most messages one tick sends (the rate cap may allow fewer)", minimum=1),
        Setting("SENDING_TIMEOUT_MINUTES", 10, "integer",
                "a delivery claimed this long ago without an outcome is marked `unknown`",
                minimum=1),
        Setting("HOLD_MINUTES", 5, "integer",
                "wait before looking again at a lead whose due step could not be worked out, "
                "or a retry whose step file is broken",
                minimum=1),
        Setting("RETRY_HOURS", 24, "integer",
                "how long SMTP `4xx` answers and connection errors are retried, with back-off",
                minimum=0),
        Setting("MACHINE_SECONDS", 10, "integer",
                "opens and clicks sooner than this after sending count as machine-made",
                minimum=0),
        Setting("UNSUBSCRIBE_MAILTO", "", "email address",
                "address for the `mailto:` form of `List-Unsubscribe`"),
        Setting("POSTBACK_SECRET", None, "secret", "HMAC key of upgrade postbacks",
                shown_default="generated once into `instance/postback_secret`"),
        Setting("ATTRIBUTION_DAYS", 7, "integer",
                "an upgrade is credited to the last email the lead clicked within this many "
                "days before it (sequence step or broadcast)",
                minimum=1, maximum=365),
    )),
    ("Bounces and complaints", (
        Setting("BOUNCE_ADDRESS", "", "email address",
                "the envelope sender's base, like `bounces@mail.example.com`: each email goes "
                "out from `bounces+<signed delivery>@mail.example.com` (VERP); empty: from "
                "the sender's address"),
        Setting("BOUNCE_MAILBOX", "", "mailbox URL",
                "the mailbox the bounces arrive in, read by the scheduler: "
                "`imaps://user:password@host:993/INBOX`, `imap://…` (STARTTLS), "
                "`pop3s://…` (read-only); empty: not read"),
        Setting("BOUNCE_INTERVAL_SECONDS", 300, "integer",
                "how often the scheduler reads the bounce mailbox", minimum=10),
        Setting("BOUNCE_MAILBOX_TIMEOUT", 20, "integer",
                "seconds to wait for the bounce mailbox's server", minimum=1),
        Setting("BOUNCE_BATCH_SIZE", 200, "integer",
                "messages read from the bounce mailbox per tick", minimum=1),
        Setting("SOFT_BOUNCE_LIMIT", 3, "integer",
                "soft bounces (a full mailbox, a server down) within 7 days that make a "
                "lead `bounced`", minimum=1),
        Setting("SES_TOPIC_ARNS", "", "text",
                "the SNS topics (ARNs, comma-separated) whose SES bounce and complaint "
                "notifications `/hooks/mail/ses` takes; empty: that URL answers 404"),
        Setting("POSTMARK_WEBHOOK_AUTH", "", "text",
                "`user:password` that Postmark's bounce and spam complaint webhooks send "
                "(HTTP Basic auth) to `/hooks/mail/postmark`; empty: that URL answers 404"),
        Setting("MAILGUN_SIGNING_KEY", "", "text",
                "Mailgun's HTTP webhook signing key, checking the events sent to "
                "`/hooks/mail/mailgun`; empty: that URL answers 404"),
        Setting("SENDGRID_PUBLIC_KEY", "", "text",
                "the public key (base64, as SendGrid shows it) of SendGrid's signed event "
                "webhook, checking the events sent to `/hooks/mail/sendgrid`; empty: that "
                "URL answers 404"),
    )),
    ("Outgoing webhooks", (
        Setting("WEBHOOK_TIMEOUT_SECONDS", 5, "integer",
                "how long a webhook endpoint has to answer, in seconds", minimum=1, maximum=60),
        Setting("WEBHOOK_RETRY_HOURS", 24, "integer",
                "how long failing webhook deliveries are retried; `0`: the first failure is "
                "final",
                minimum=0),
        Setting("WEBHOOK_BATCH_SIZE", 100, "integer",
                "most webhook deliveries one scheduler run posts", minimum=1),
        Setting("WEBHOOK_ALLOW_PRIVATE", False, "boolean",
                "`true` lets webhooks call loopback and private-network addresses (refused "
                "otherwise, against SSRF)"),
    )),
    ("Opt-in defences and requests", (
        Setting("MIN_FORM_SECONDS", 2, "number",
                "a form sent back sooner than this after it was shown is a bot's", minimum=0),
        Setting("FORM_MAX_AGE_SECONDS", 6 * 3600, "integer",
                "a form left open longer (its fill-time token has expired) is shown again, to "
                "submit once more; longer than `CAPTURE_MIN_FORM_SECONDS`",
                minimum=60, shown_default="`21600` (6 hours)"),
        Setting("OPTIN_RATE_LIMIT", "20/minute", "rate", "opt-ins per client address"),
        Setting("POW_MAX_NUMBER", 100_000, "integer",
                "difficulty of the proof of work of pages with `proof_of_work`: the "
                "visitor's browser computes on average half this many SHA-256 hashes",
                minimum=1000, maximum=10_000_000),
        Setting("POW_CHALLENGE_SECONDS", 20 * 60, "integer",
                "how long a proof-of-work challenge may be solved and its form sent",
                minimum=60, maximum=24 * 3600, shown_default="`1200` (20 minutes)"),
        Setting("POW_CHALLENGE_RATE_LIMIT", "30/minute", "rate",
                "proof-of-work challenges per client address"),
        Setting("RATE_LIMIT_STORAGE", "database", "rate storage",
                "where the rate-limit counters (opt-in, log-in, API) live: `database` (the "
                "app's own, shared by every worker and server), `redis://host:6379`, or "
                "`memory://` (each process counts alone)"),
        Setting("API_RATE_LIMIT", "600/minute", "rate", "API requests per token"),
        Setting("CONFIRM_RESEND_MINUTES", 10, "integer",
                "a repeat opt-in of an unconfirmed address re-sends the confirmation email at "
                "most once in this many minutes, so a flood cannot mail-bomb anyone",
                minimum=0),
        Setting("CHECK_DELIVERABILITY", False, "boolean",
                "also check by DNS that the address's domain accepts mail"),
        Setting("PROXY_COUNT", 0, "integer",
                "reverse proxies in front of the app whose `X-Forwarded-*` headers to trust; "
                "`1` behind `deploy/nginx.conf`",
                minimum=0),
        Setting("MAX_CONTENT_LENGTH", 64 * 1024, "integer",
                "largest request body from visitors, in bytes (`413` above it)", minimum=1024,
                shown_default="`65536` (64 KiB)"),
        Setting("ADMIN_MAX_CONTENT_LENGTH", 1024 * 1024, "integer",
                "largest request body in the dashboard, in bytes (long page texts)",
                minimum=1024, shown_default="`1048576` (1 MiB)"),
    )),
    ("The dashboard and list imports", (
        Setting("LEADS_PER_PAGE", 50, "integer", "rows per page of the dashboard's leads table",
                minimum=1, maximum=1000),
        Setting("LEADS_BULK_LIMIT", 500, "integer",
                "most leads one bulk approve or reject takes", minimum=1),
        Setting("IMPORT_BATCH_ROWS", 500, "integer",
                "rows a list import writes per transaction", minimum=1, maximum=10000),
        Setting("IMPORT_MAX_BYTES", 20 * 1024 * 1024, "integer",
                "largest file the dashboard's list import accepts, in bytes", minimum=1024,
                shown_default="`20971520` (20 MiB)"),
        Setting("IMPORT_MAX_COLUMNS", 200, "integer",
                "most columns a list import's file may have (each is a row of the mapping "
                "page)",
                minimum=1, maximum=10000),
        Setting("IMAGE_MAX_BYTES", 5 * 1024 * 1024, "integer",
                "largest image file the dashboard's image upload accepts, in bytes",
                minimum=1024, shown_default="`5242880` (5 MiB)"),
        Setting("IMAGE_MAX_PIXELS", 25_000_000, "integer",
                "most pixels (width × height, times the frames of an animation) an uploaded "
                "image may have: a small file that unpacks to a huge picture (a "
                "decompression bomb) is refused before it is decoded",
                minimum=1, shown_default="`25000000` (25 megapixels)"),
    )),
    ("Visitors", (
        Setting("VISITOR_COOKIE_DAYS", 365, "integer",
                "lifetime of the visitor cookie (first-party, a random id)", minimum=1),
    )),
    ("Personal data", (
        Setting("UNCONFIRMED_RETENTION_DAYS", 30, "integer",
                "leads still unconfirmed (double opt-in) this many days after they opted in "
                "are erased by the scheduler; `0` keeps them",
                minimum=0),
    )),
)
# Every setting, in the order of the sections.
SETTINGS = tuple(setting for _, settings in SECTIONS for setting in settings)

# CAPTURE_ variables that are no setting of `Config` but are read all the same, before
# there is an app (create_app) or by the test suite alone: known, so never warned about.
OTHER_VARIABLES = (
    Setting("INSTANCE_PATH", None, "folder",
            "the folder of the SQLite file, the generated secrets and the outbox",
            shown_default="`instance/`"),
    Setting("TEST_DATABASE_URL", None, "database URL",
            "the test suite runs on this PostgreSQL database instead of SQLite files",
            shown_default="empty"),
)


Config = type("Config", (), {
    "__doc__": "Defaults for a local install; production overrides them from the "
               "environment.",
    **{setting.name: setting.default for setting in SETTINGS},
})


class TestConfig(Config):
    """What the test suite starts from; each test's fixture adds its own database."""

    TESTING = True
    SECRET_KEY = "test-secret-key"
    POSTBACK_SECRET = "test-postback-secret"
    MIN_FORM_SECONDS = 0
    OPTIN_RATE_LIMIT = "0"
    # The sign-up's own behaviour, tested through the request; tests/test_intake.py
    # and the process tests run the queued path the scheduler folds in.
    OPTIN_PROCESSING = "direct"
    POW_MAX_NUMBER = 1000  # the least difficulty: a test solves a challenge at once
