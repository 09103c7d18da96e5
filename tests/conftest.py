"""Shared fixtures and helpers: a fresh app and database per test (or one with no
tables yet), the client, the CLI runner, an outbox reader, the opt-in helpers, real
SMTP and webhook servers on loopback, one email already sent, the frozen clock and
the owner's log-in. Plain factories (step files, enrolled leads, webhook endpoints,
CSV files) are in tests/factories.py.

The database is a SQLite file per test, or, when CAPTURE_TEST_DATABASE_URL is set,
a PostgreSQL schema made for this run (tables emptied between tests).
"""

import asyncio
import email
import email.policy
import json
import os
import re
import secrets
import socket
import ssl
import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from werkzeug.routing import IntegerConverter, PathConverter

from capture import create_app
from capture.db import db
from config import ROOT, TestConfig
from tests.factories import add_lead, sequence_folder, tick, write_step

POSTGRES_URL = os.environ.get("CAPTURE_TEST_DATABASE_URL")


def new_postgres_schema(prefix: str) -> tuple[str, callable]:
    """A new, empty schema on the test PostgreSQL server: its URL (search_path set)
    and a function that drops it."""
    schema = f"{prefix}_{secrets.token_hex(4)}"
    engine = sa.create_engine(POSTGRES_URL)
    with engine.begin() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in POSTGRES_URL else "?"

    def drop() -> None:
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()

    return f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}", drop


@pytest.fixture(scope="session")
def postgres_schema_url():
    """A schema of its own for this test run on the PostgreSQL server, dropped after."""
    if not POSTGRES_URL:
        yield None
        return
    url, drop = new_postgres_schema("capture_test")
    yield url
    drop()


@pytest.fixture
def database_url(tmp_path, postgres_schema_url):
    """The database URL for one test."""
    return postgres_schema_url or f"sqlite:///{tmp_path / 'capture.db'}"


@pytest.fixture
def make_app(tmp_path, database_url):
    """Build an app on the test database with extra settings; tables created empty."""
    apps = []

    def factory(**settings):
        config = {
            **{key: getattr(TestConfig, key) for key in dir(TestConfig) if key.isupper()},
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "DATABASE_URL": database_url,
            "SEQUENCES_DIR": str(ROOT / "sequences"),
            **settings,
        }
        app = create_app(config)
        with app.app_context():
            if not apps:
                db.create_all()
                _empty_tables()
        apps.append(app)
        return app

    yield factory
    for app in apps:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def _empty_tables():
    """Remove rows left by an earlier test (PostgreSQL shares one schema per run)."""
    if db.engine.dialect.name == "postgresql":
        names = ", ".join(table.name for table in db.metadata.sorted_tables)
        db.session.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        db.session.commit()


@pytest.fixture
def fresh_database(tmp_path):
    """A new, empty database: a SQLite file, or a new PostgreSQL schema."""
    if not POSTGRES_URL:
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    url, drop = new_postgres_schema("capture_fresh")
    yield url
    drop()


@pytest.fixture
def fresh_app(tmp_path, fresh_database):
    """An app on a new, empty database: no tables until `init` runs."""
    config = {
        **{key: getattr(TestConfig, key) for key in dir(TestConfig) if key.isupper()},
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "DATABASE_URL": fresh_database,
        "SEQUENCES_DIR": str(tmp_path / "sequences"),
    }
    app = create_app(config)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def app(make_app):
    """The app with the test settings."""
    return make_app()


@pytest.fixture
def client(app):
    """A test client (keeps cookies like a browser)."""
    return app.test_client()


@pytest.fixture
def runner(app):
    """A runner for the app's flask commands."""
    return app.test_cli_runner()


@pytest.fixture
def outbox(app):
    """Reads the messages the outbox backend wrote, oldest first."""
    return Outbox(Path(app.instance_path) / "outbox")


class Outbox:
    """The .eml files of the outbox backend, parsed."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def messages(self):
        if not self.folder.exists():
            return []
        return [
            email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            for path in sorted(self.folder.glob("*.eml"))
        ]

    def to(self, address: str):
        return [m for m in self.messages() if address in str(m["To"])]


def body_text(message) -> str:
    """The plain-text part of a message."""
    return message.get_body(preferencelist=("plain",)).get_content()


def form_tokens(html: str) -> dict[str, str]:
    """The hidden csrf_token and started values of a rendered opt-in form."""
    values = {}
    for name in ("csrf_token", "started"):
        match = re.search(rf'name="{name}" type="hidden" value="([^"]*)"', html)
        if match:
            values[name] = match.group(1)
    return values


def confirm(client, link: str):
    """Open a confirmation link like a person and press the page's one button."""
    path = urlsplit(link).path
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    return client.post(path, data=form_tokens(page.get_data(as_text=True)))


def optin(client, slug="demo", query="", headers=None, **fields):
    """Open the page like a visitor (recording a visit), then submit the form; then
    run the confirmation queue once, as the scheduler's fast lane does seconds later
    (the request itself never sends an email)."""
    page = client.get(f"/p/{slug}{query}", headers=headers or {})
    assert page.status_code == 200, page.status_code
    data = {**form_tokens(page.get_data(as_text=True)), **fields}
    response = client.post(f"/p/{slug}", data=data, headers=headers or {})
    send_confirmations(client.application)
    return response


def send_confirmations(app) -> int:
    """Send the queued confirmation emails once (the scheduler's fast lane); return
    how many went out."""
    from capture.leads import confirmations

    with app.app_context():
        return confirmations.send_queued()


def sign_up(app, client, email="ann@example.com", slug="offer", query="", **fields):
    response = optin(client, slug, query=query, email=email, **fields)
    assert response.status_code == 303, response.status_code
    return lead_of(app, email)


@pytest.fixture
def demo_page(app):
    """The demo page, installed as `init` does."""
    from capture.pages import demo

    with app.app_context():
        demo.install()
    return "demo"


def create_page(app, **values) -> str:
    """Create a page in `app` from JSON-format values (the defaults make a valid page)."""
    from capture.models import Page
    from capture.pages.definition import apply_page, page_templates_dir, validate_page

    data = {
        "slug": "offer",
        "title": "Free guide",
        "fields": [
            {"name": "name", "label": "Name", "type": "text", "required": False},
            {"name": "email", "label": "Email", "type": "email", "required": True},
        ],
        "double_opt_in": True,
        **values,
    }
    with app.app_context():
        clean, problems = validate_page(
            data, sequences_dir=app.config["SEQUENCES_DIR"], templates_dir=page_templates_dir()
        )
        assert not problems, problems
        page = apply_page(Page(), clean)
        db.session.add(page)
        db.session.commit()
        return page.slug


@pytest.fixture
def make_page(app):
    """Create a page from JSON-format values in the `app` fixture's app."""
    return lambda **values: create_page(app, **values)


class SmtpCollector:
    """An aiosmtpd handler that keeps every message and can be told to refuse."""

    def __init__(self) -> None:
        self.messages = []
        # Each kept message's bytes as they arrived (a DKIM signature covers these).
        self.raw: list[bytes] = []
        self.lock = threading.Lock()
        # Replies to give instead of accepting: one per DATA (e.g. "451 try later").
        self.data_replies: list[str] = []
        # Addresses to refuse at RCPT with "550 no such user".
        self.refuse: set[str] = set()
        # A reply for every RCPT (e.g. "554 5.7.1 relay access denied") or MAIL FROM.
        self.rcpt_reply: str | None = None
        self.mail_reply: str | None = None
        # Seconds to stall before answering a command ("MAIL", "RCPT" or "DATA"),
        # e.g. longer than the client's timeout. At DATA the message is kept first
        # and only the answer is late, as with a server that queued it.
        self.stalls: dict[str, float] = {}
        self.attempts = 0
        # Connections that said EHLO (each backend opened against this server).
        self.greetings = 0
        # Offer PIPELINING (RFC 2920) as Postfix and the big relays do: the client
        # then sends MAIL, RCPT and DATA together. False: one command at a time.
        self.pipelining = True

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.greetings += 1
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def _stall(self, command: str) -> None:
        if self.stalls.get(command):
            await asyncio.sleep(self.stalls[command])

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.attempts += 1
        await self._stall("MAIL")
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        await self._stall("RCPT")
        if self.rcpt_reply:
            return self.rcpt_reply
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            reply = self.data_replies.pop(0) if self.data_replies else None
            if reply is None:
                self.messages.append(
                    email.message_from_bytes(envelope.content, policy=email.policy.default)
                )
                self.raw.append(envelope.content)
        await self._stall("DATA")
        return reply or "250 Message accepted"

    def to(self, address: str):
        return [m for m in self.messages if address in str(m["To"])]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp():
    """A real SMTP server on loopback (aiosmtpd) that collects what it receives."""
    from aiosmtpd.controller import Controller

    handler = SmtpCollector()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port())
    controller.start()
    handler.port = controller.port
    yield handler
    controller.stop()


@pytest.fixture
def smtp_app(make_app, smtp, tmp_path):
    """An app that sends through the test SMTP server, with its own sequences folder."""
    folder = tmp_path / "sequences"
    folder.mkdir()
    return make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port,
                    SEQUENCES_DIR=str(folder), POSTAL_ADDRESS="1 Main St, Springfield")


class Receiver:
    """A ThreadingHTTPServer on 127.0.0.1 that keeps every POST (path, headers, raw body)
    and answers from a script: a status per request (then 200), or "hang" to answer
    nothing until the test ends. With `tls` (certificate and key files) it speaks HTTPS."""

    def __init__(self, tls: tuple[str, str] | None = None) -> None:
        self.requests: list[dict] = []
        self.replies: list = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests.append({"path": self.path, "headers": self.headers,
                                              "body": raw})
                    reply = receiver.replies.pop(0) if receiver.replies else 200
                if reply == "hang":
                    receiver.release.wait(10)
                    return
                self.send_response(reply)
                if 300 <= reply < 400:
                    self.send_header("Location", f"{receiver.url}/elsewhere")
                answer = b"ok" if reply < 400 else b"server trouble"
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.url = f"https://localhost:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[str]:
        return [json.loads(r["body"])["event"] for r in self.requests]


@pytest.fixture
def receiver():
    """A webhook endpoint: the real HTTP server the endpoints point at."""
    server = Receiver()
    yield server
    server.stop()


class Clock:
    """Time under the test's control: every module reads it through capture.clock."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 10, 0, 0)

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock(monkeypatch):
    """Freeze time at 2026-03-02 10:00 UTC; `clock.advance(hours=1)` moves it."""
    from capture import clock as clock_module

    frozen = Clock()
    # `clock.as_of` (the intake's processor dating what it stores) still applies.
    monkeypatch.setattr(clock_module, "utcnow", lambda: clock_module._AS_OF.get() or frozen.now)
    return frozen


# A person's mail client opening an email (not a scanner).
HUMAN = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari"


@pytest.fixture
def sent(smtp_app, smtp, clock):
    """One email sent to Ann with a normal link, a mailto and the unsubscribe link."""
    write_step(
        sequence_folder(smtp_app), "01-hi.md", "Hi",
        "Read [the guide](https://example.com/guide?a=1&b=2).\n\n"
        "Or write to [us](mailto:help@example.com).\n\n"
        "[Leave]({{ unsubscribe_url }})\n\nAlso https://example.com/plain",
        delay=0,
    )
    lead_id = add_lead(smtp_app)
    tick(smtp_app)
    clock.advance(minutes=5)  # later than any scanner's "too soon"
    message = smtp.messages[0]
    return {
        "lead_id": lead_id,
        "message": message,
        "html": message.get_body(("html",)).get_content(),
        "text": message.get_body(("plain",)).get_content(),
        "client": smtp_app.test_client(),
    }


OWNER_EMAIL = "owner@example.com"
OWNER_PASSWORD = "correct horse battery staple"


def login(client, email=OWNER_EMAIL, password=OWNER_PASSWORD):
    """Log in through the real form (CSRF token and all); return the response."""
    page = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]*)"', page).group(1)
    return client.post("/admin/login", data={"csrf_token": token, "email": email,
                                             "password": password})


def csrf_of(client, path: str) -> str:
    """The CSRF token of a dashboard page, for posting its forms."""
    html = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token"[^>]*value="([^"]*)"', html).group(1)


@pytest.fixture
def owner(app):
    """A client logged in to the dashboard as an owner."""
    from capture.access.owners import create_owner

    with app.app_context():
        create_owner(OWNER_EMAIL, OWNER_PASSWORD)
    client = app.test_client()
    response = login(client)
    assert response.status_code == 302, response.status_code
    return client


def owner_client(app):
    """A client of `app` logged in as the owner (created if missing)."""
    from capture.access.owners import create_owner
    from capture.models import Owner

    with app.app_context():
        if db.session.scalar(sa.select(Owner.id).where(Owner.email == OWNER_EMAIL)) is None:
            create_owner(OWNER_EMAIL, OWNER_PASSWORD)
    client = app.test_client()
    assert login(client).status_code == 302
    return client


def admin_urls(app) -> list[tuple[str, str, str]]:
    """(endpoint, method, url) of every dashboard route but the log-in form, with
    made-up values for its parameters."""
    urls = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin.") or rule.endpoint == "admin.login":
            continue
        values = {}
        for name, converter in rule._converters.items():
            if isinstance(converter, IntegerConverter):
                values[name] = 1
            elif isinstance(converter, PathConverter):
                values[name] = "some/thing"
            else:
                values[name] = "something"
        url = rule.build(values)[1]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            urls.append((rule.endpoint, method, url))
    return urls


def banners(html: str) -> dict[str, str]:
    """The overview's warning banners: their text by data-warning kind."""
    return {kind: re.sub(r"\s+", " ", text).strip() for kind, text in
            re.findall(r'<div class="banner[^"]*" role="alert" data-warning="(\w+)">(.*?)</div>',
                       html, re.S)}


def count(app, model) -> int:
    """How many rows of `model` exist."""
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model))


@pytest.fixture
def frozen_clock(monkeypatch):
    """capture.clock.utcnow stopped at the real time; `advance(minutes=…)` moves it."""
    from capture import clock as clock_module

    frozen = Clock()
    frozen.now = clock_module.utcnow()
    # `clock.as_of` (the intake's processor dating what it stores) still applies.
    monkeypatch.setattr(clock_module, "utcnow", lambda: clock_module._AS_OF.get() or frozen.now)
    return frozen


def lead_of(app, email: str):
    """The lead with this address (detached, readable after the context), or None."""
    from capture.models import Lead

    with app.app_context():
        lead = db.session.scalar(sa.select(Lead).where(Lead.email == email))
        if lead is not None:
            db.session.expunge(lead)
        return lead
