"""The database locked or unreachable for a moment while visitors use the site: the
opt-in either stores the lead or answers a clear 503 with the form kept (never a
success without a stored lead); links in emails answer 503, the pixel its GIF.

SQLite: another connection holds the write lock longer than the busy timeout.
PostgreSQL: the server becomes unreachable (a TCP relay in front of it is shut)."""

import logging
import re
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.engine import make_url

from capture import links as tokens
from capture.leads.upgrades import postback_signature
from capture.db import db
from capture.models import Event, Lead
from tests.conftest import (
    HUMAN,
    POSTGRES_URL,
    body_text,
    confirm,
    count,
    form_tokens,
    lead_of,
    optin,
    send_confirmations,
)

sqlite_only = pytest.mark.skipif(bool(POSTGRES_URL), reason="SQLite's write lock")
postgres_only = pytest.mark.skipif(not POSTGRES_URL, reason="needs the PostgreSQL server")
RETRY_NOTICE = "We could not finish your sign-up just now"


def busy_timeout(app, milliseconds: int) -> None:
    """Make the app's SQLite connections wait at most this long for the write lock
    (the production setting waits 10 s; a test need not)."""
    with app.app_context():
        @event.listens_for(db.engine, "connect")
        def shorter(dbapi_connection, record):
            dbapi_connection.execute(f"PRAGMA busy_timeout={milliseconds}")

        db.engine.dispose()


@contextmanager
def write_lock(app, seconds: float | None = None):
    """Another connection holds SQLite's write lock: until the block ends, or for
    `seconds` (released by a thread while the block runs)."""
    with app.app_context():
        path = db.engine.url.database
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE pages SET title = title")
    timer = threading.Timer(seconds, other.rollback) if seconds else None
    try:
        if timer:
            timer.start()
        yield
    finally:
        if timer:
            timer.join()
        if other.in_transaction:
            other.rollback()
        other.close()


@contextmanager
def table_lock(app):
    """Another connection holds a lock the opt-in must wait for: SQLite's write lock,
    or on PostgreSQL an exclusive lock on the leads table."""
    if not POSTGRES_URL:
        with write_lock(app):
            yield
        return
    with app.app_context():
        other = db.engine.connect()
    try:
        other.execute(text("LOCK TABLE leads IN ACCESS EXCLUSIVE MODE"))
        yield
    finally:
        other.rollback()
        other.close()


def open_form(client, slug="demo"):
    """The opt-in page's hidden tokens, as a browser holds them."""
    return form_tokens(client.get(f"/p/{slug}").get_data(as_text=True))


def assert_clean_503(response):
    body = response.get_data(as_text=True)
    assert response.status_code == 503
    assert response.headers["Retry-After"].isdigit()
    assert "Traceback" not in body and "OperationalError" not in body
    return body


def test_a_lock_held_past_the_db_lock_timeout_gives_a_503_then_the_lead_is_stored(
    make_app, demo_page
):
    app = make_app(DB_LOCK_TIMEOUT_SECONDS=0.3)
    client = app.test_client()
    tokens = open_form(client)
    typed = {"email": "locked@example.com", "name": "Locked Out", "consent": "y"}
    with table_lock(app):
        started = time.monotonic()
        response = client.post("/p/demo", data={**tokens, **typed})
        waited = time.monotonic() - started
    body = assert_clean_503(response)
    assert 'value="locked@example.com"' in body
    assert 0.3 <= waited < 5
    assert count(app, Lead) == 0
    again = client.post("/p/demo", data={**form_tokens(body), **typed})
    assert again.status_code == 303
    assert lead_of(app, "locked@example.com").name == "Locked Out"


@sqlite_only
def test_opt_in_waits_out_a_short_lock_and_stores_the_lead(app, demo_page):
    busy_timeout(app, 3000)
    client = app.test_client()
    tokens = open_form(client)
    with write_lock(app, seconds=0.5):
        response = client.post("/p/demo", data={**tokens, "email": "wait@example.com",
                                                "name": "Wai", "consent": "y"})
    assert response.status_code == 303
    assert lead_of(app, "wait@example.com") is not None


@sqlite_only
def test_opt_in_during_a_long_lock_is_503_with_the_form_kept_and_nothing_stored(
    app, demo_page, caplog
):
    busy_timeout(app, 200)
    client = app.test_client()
    tokens = open_form(client)
    with write_lock(app), caplog.at_level(logging.INFO):
        response = client.post("/p/demo", data={**tokens, "email": "kept@example.com",
                                                "name": "Kept Name", "consent": "y"})
    body = assert_clean_503(response)
    assert RETRY_NOTICE in body
    assert 'value="kept@example.com"' in body and 'value="Kept Name"' in body
    assert count(app, Lead) == 0
    logged = [r for r in caplog.records if "database unavailable" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is None
    assert "kept@example.com" not in caplog.text  # the SQL's parameters are not logged


@sqlite_only
def test_the_kept_form_submitted_again_after_the_lock_stores_the_lead_once(
    app, demo_page, outbox
):
    busy_timeout(app, 200)
    client = app.test_client()
    tokens = open_form(client)
    typed = {"email": "again@example.com", "name": "Again", "consent": "y"}
    with write_lock(app):
        page = client.post("/p/demo", data={**tokens, **typed}).get_data(as_text=True)
    # The visitor presses the button again on the page they were shown.
    response = client.post("/p/demo", data={**form_tokens(page), **typed})
    assert response.status_code == 303
    assert count(app, Lead) == 1
    send_confirmations(app)
    assert len(outbox.to("again@example.com")) == 1


@sqlite_only
def test_opt_in_page_view_during_a_long_lock_is_a_clear_503(app, demo_page):
    busy_timeout(app, 200)
    with write_lock(app):
        response = app.test_client().get("/p/demo")
    assert "try again" in assert_clean_503(response).lower()


@sqlite_only
def test_links_in_an_email_during_a_long_lock(smtp_app, sent):
    busy_timeout(smtp_app, 200)
    client = sent["client"]
    click = re.search(r"http://127\.0\.0\.1:5000(/c/[\w-]+)", sent["text"]).group(1)
    pixel = re.search(r"http://127\.0\.0\.1:5000(/o/[\w.-]+)", sent["html"]).group(1)
    leave = re.search(r"http://127\.0\.0\.1:5000(/u/[\w.-]+)", sent["text"]).group(1)
    with write_lock(smtp_app):
        opened = client.get(pixel, headers={"User-Agent": HUMAN})
        clicked = client.get(click, headers={"User-Agent": HUMAN})
        shown = client.get(leave)
        left = client.post(leave, data={"List-Unsubscribe": "One-Click"})
    assert opened.status_code == 200 and opened.headers["Content-Type"] == "image/gif"
    assert_clean_503(clicked)
    assert shown.status_code == 200  # reading needs no write lock
    assert_clean_503(left)
    with smtp_app.app_context():
        assert db.session.scalar(select(Lead.subscription)) == "subscribed"
        assert db.session.scalars(select(Event.kind).where(
            Event.kind.in_(("open", "click", "unsubscribe")))).all() == []
    # A moment later the same links work.
    assert client.get(click, headers={"User-Agent": HUMAN}).status_code == 302
    assert client.post(leave, data={"List-Unsubscribe": "One-Click"}).status_code == 200


@sqlite_only
def test_confirm_link_during_a_long_lock_is_503_and_works_after(app, demo_page, outbox):
    client = app.test_client()
    optin(client, email="conf@example.com", consent="y")
    link = re.search(r"/confirm/\S+", body_text(outbox.to("conf@example.com")[0])).group(0)
    busy_timeout(app, 200)
    tokens = form_tokens(client.get(link).get_data(as_text=True))
    with write_lock(app):
        assert_clean_503(client.post(link, data=tokens))
    assert lead_of(app, "conf@example.com").subscription == "unconfirmed"
    assert confirm(client, link).status_code == 200
    assert lead_of(app, "conf@example.com").subscription == "subscribed"


class Relay:
    """A TCP relay on loopback in front of the database server; shutting it cuts
    every connection and refuses new ones, as a server that went away does."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.port = 0
        self.listener: socket.socket | None = None
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream, timeout=5)
            server.settimeout(None)
            with self.lock:
                self.sockets += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        for end in (source, target):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def shut(self) -> None:
        """The server is gone: refuse new connections, cut the open ones."""
        if self.listener is not None:
            try:
                self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
            except OSError:
                pass
            self.listener.close()
            self.listener = None
        with self.lock:
            for sock in self.sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self.sockets.clear()


@pytest.fixture
def relayed_app(make_app, database_url):
    """The app on PostgreSQL through a relay the test can shut and open again."""
    url = make_url(database_url)
    relay = Relay(url.host or "127.0.0.1", url.port or 5432)
    relay.open()
    app = make_app(DATABASE_URL=url.set(host="127.0.0.1", port=relay.port)
                   .render_as_string(hide_password=False))
    from capture.pages import demo

    with app.app_context():
        demo.install()
    yield app, relay
    relay.shut()


@postgres_only
def test_opt_in_while_postgresql_is_unreachable_is_503_with_the_input_kept(
    relayed_app, caplog
):
    app, relay = relayed_app
    client = app.test_client()
    tokens = open_form(client)
    typed = {"email": "gone@example.com", "name": "Gone Away", "consent": "y"}
    relay.shut()
    with caplog.at_level(logging.INFO):
        response = client.post("/p/demo", data={**tokens, **typed})
    body = assert_clean_503(response)
    assert RETRY_NOTICE in body
    # The page itself could not be read: the visitor's own values ride in "Try again".
    kept = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', body))
    assert kept == {**tokens, **typed}
    logged = [r for r in caplog.records if "database unavailable" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is None

    relay.open()
    again = client.post("/p/demo", data=kept)  # the "Try again" button
    assert again.status_code == 303
    assert count(app, Lead) == 1 and lead_of(app, "gone@example.com").name == "Gone Away"


@postgres_only
def test_links_while_postgresql_is_unreachable(relayed_app):
    app, relay = relayed_app
    client = app.test_client()
    with app.app_context():  # genuine tokens: forged ones are refused before any query
        pixel_url, confirm, leave = (tokens.make("open", "1"), tokens.make("confirm", "ref"),
                                     tokens.make("unsubscribe", "ref"))
    relay.shut()
    pixel = client.get(f"/o/{pixel_url}", headers={"User-Agent": HUMAN})
    assert pixel.status_code == 200 and pixel.headers["Content-Type"] == "image/gif"
    for response in (client.get("/c/" + "a" * 22), client.get(f"/confirm/{confirm}"),
                     client.post(f"/u/{leave}"), client.get("/p/demo")):
        assert_clean_503(response)
    params = {"lead": "x", "amount": "1", "currency": "USD", "txn": "t"}
    params["sig"] = postback_signature(params, app.config["POSTBACK_SECRET"])
    postback = client.post("/postback/upgrade", data=params)
    assert postback.status_code == 503 and postback.is_json
    assert postback.headers["Retry-After"].isdigit()


@sqlite_only
def test_an_open_during_a_long_lock_logs_one_line_not_a_traceback(
    smtp_app, sent, caplog
):
    busy_timeout(smtp_app, 200)
    pixel = re.search(r"http://127\.0\.0\.1:5000(/o/[\w.-]+)", sent["html"]).group(1)
    with write_lock(smtp_app), caplog.at_level("ERROR"):
        opened = sent["client"].get(pixel, headers={"User-Agent": HUMAN})
    assert opened.headers["Content-Type"] == "image/gif"
    records = [r for r in caplog.records if "open not recorded" in r.getMessage()]
    assert len(records) == 1
    assert "database unavailable" in records[0].getMessage()
    assert records[0].exc_info is None


@sqlite_only
def test_tokens_of_links_met_by_a_locked_database_never_reach_the_log(
    smtp_app, sent, caplog
):
    """Issue 15.9: `GET /confirm/<token>` with the database locked logged the whole
    token (the 503's log line names the path). Confirm, click, pixel and unsubscribe
    links are logged with a short prefix of their token only."""
    busy_timeout(smtp_app, 200)
    client = sent["client"]
    with smtp_app.app_context():
        lead = db.session.get(Lead, sent["lead_id"])
        lead.subscription = "unconfirmed"
        db.session.commit()
        confirm = "/confirm/" + tokens.make("confirm", lead.public_ref)
    click = re.search(r"http://127\.0\.0\.1:5000(/c/[\w-]+)", sent["text"]).group(1)
    pixel = re.search(r"http://127\.0\.0\.1:5000(/o/[\w.-]+)", sent["html"]).group(1)
    leave = re.search(r"http://127\.0\.0\.1:5000(/u/[\w.-]+)", sent["text"]).group(1)
    # The confirm page (a read) works under the lock; its button's POST meets the lock.
    button = form_tokens(client.get(confirm).get_data(as_text=True))
    with write_lock(smtp_app), caplog.at_level(logging.DEBUG):
        for path in (confirm, click, pixel):
            client.get(path, headers={"User-Agent": HUMAN})
        client.post(confirm, data=button)
        client.post(leave, data={"List-Unsubscribe": "One-Click"})
    logged = caplog.text + "".join(str(record.args) for record in caplog.records)
    for path in (confirm, click, pixel, leave):
        kind, token = path.rsplit("/", 1)
        assert token not in logged, path
    for path in (confirm, click, leave):  # the pixel logs no path, only the failure
        kind, token = path.rsplit("/", 1)
        assert f"{kind}/{token[:4]}…" in logged, path
