"""Outgoing webhooks: each event queued in the transaction of the real action, posted
by the scheduler (never during the visitor's request) to a real HTTP server on
loopback, signed so that an independent HMAC verifies it, retried with back-off for a
bounded time, and never sent to loopback or private addresses unless allowed."""

import hashlib
import hmac
import json
import logging
import re
import socket
import ssl
import subprocess
import threading
from datetime import UTC, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from capture import scheduler
from capture.leads import upgrades as engagement
from capture.webhooks import delivery, endpoints, outbound
from capture.mail import engine, outcomes
from capture import links as tokens
from capture.webhooks import events as webhooks
from capture.db import db
from capture.models import Lead, Webhook, WebhookDelivery
from capture.settings import SettingError
from tests.conftest import Receiver, confirm, create_page, csrf_of, optin, sign_up
from tests.factories import add_webhook, deliver, rows


@pytest.fixture
def app(make_app):
    """The test app, allowed to call the loopback receiver. The timeout is a healthy
    one: a pause of the test process must not fail a delivery a test expects to go
    (the test of a timeout shortens it)."""
    return make_app(WEBHOOK_ALLOW_PRIVATE=True, WEBHOOK_TIMEOUT_SECONDS=10)


def secret_of(app, webhook_id) -> str:
    with app.app_context():
        return db.session.get(Webhook, webhook_id).secret


def body_of(request) -> dict:
    return json.loads(request["body"])


def verify(secret: str, request) -> bool:
    """The receiver's check, written from the README, independent of Capture's code."""
    header = request["headers"]["Capture-Signature"]
    parts = dict(item.split("=", 1) for item in header.split(","))
    signed = parts["t"].encode() + b"." + request["body"]
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


# --- signature and headers ------------------------------------------------------------

def test_delivery_is_signed_so_that_an_independent_hmac_verifies_it(app, client, receiver,
                                                                     clock):
    create_page(app, review="manual")
    hook = add_webhook(app, receiver.url + "/hooks?src=capture", events=["lead.created"])
    sign_up(app, client)
    assert deliver(app).delivered == 1
    [request] = receiver.requests
    assert request["path"] == "/hooks?src=capture"
    assert verify(secret_of(app, hook), request)
    assert not verify("whsec_wrong", request)
    signature = dict(p.split("=", 1) for p in request["headers"]["Capture-Signature"].split(","))
    assert int(signature["t"]) == int(clock.now.replace(tzinfo=UTC).timestamp())
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["Capture-Event"] == "lead.created"
    [row] = rows(app)
    assert request["headers"]["Capture-Delivery"] == str(row.id)
    assert request["body"].decode() == row.body


def test_the_readme_verification_example_accepts_a_real_delivery_only(app, client, receiver):
    readme = (Path(__file__).resolve().parent.parent / "docs/integrate/webhooks.md").read_text()
    code = re.search(r"```python\n(import hashlib, hmac, time\n.*?)```", readme, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 (our own docs)
    check = namespace["capture_signature_ok"]
    create_page(app, review="manual")
    hook = add_webhook(app, receiver.url, events=["lead.created"])
    sign_up(app, client)
    deliver(app)
    [request] = receiver.requests
    header, body = request["headers"]["Capture-Signature"], request["body"]
    assert check(secret_of(app, hook), body, header)
    assert not check(secret_of(app, hook), body.replace(b"ann@", b"eve@"), header)
    assert not check("whsec_someone-else", body, header)
    assert not check(secret_of(app, hook), body, header, tolerance=-1)


def test_each_attempt_is_signed_afresh_with_its_own_timestamp(app, client, receiver, clock):
    create_page(app, review="manual")
    hook = add_webhook(app, receiver.url, events=["lead.created"])
    sign_up(app, client)
    receiver.replies = [503]
    deliver(app)
    clock.advance(minutes=5)
    deliver(app)
    first, second = receiver.requests
    assert first["body"] == second["body"]
    assert first["headers"]["Capture-Signature"] != second["headers"]["Capture-Signature"]
    assert verify(secret_of(app, hook), first) and verify(secret_of(app, hook), second)


# --- the outbox: nothing leaves during the visitor's request ------------------------------

def test_optin_queues_a_pending_delivery_and_posts_nothing_during_the_request(app, client,
                                                                               receiver):
    create_page(app, review="manual")
    add_webhook(app, receiver.url)
    sign_up(app, client)
    assert receiver.requests == []
    [row] = rows(app)
    assert (row.event, row.status, row.attempts) == ("lead.created", "pending", 0)
    deliver(app)
    assert receiver.events() == ["lead.created"]
    assert rows(app)[0].status == "delivered"


def test_an_event_is_queued_only_with_the_change_it_reports(app, receiver):
    create_page(app)
    add_webhook(app, receiver.url)
    with app.app_context():
        lead = Lead(email="gone@example.com", public_ref="ref-gone")
        db.session.add(lead)
        db.session.flush()
        assert webhooks.emit("lead.created", lead) == 1
        db.session.rollback()
    assert rows(app) == []


def test_unknown_event_names_are_refused(app):
    with app.app_context(), pytest.raises(ValueError, match="lead.deleted"):
        webhooks.emit("lead.deleted", Lead(email="x@example.com"))


# --- each event fires on the real action -------------------------------------------------

def test_optin_fires_lead_created_with_the_lead_and_its_attribution(app, client, receiver,
                                                                     clock):
    create_page(app, review="manual", consent="Send me the guide.", tags=["guide"], fields=[
        {"name": "name", "label": "Name", "type": "text", "required": False},
        {"name": "email", "label": "Email", "type": "email", "required": True},
        {"name": "company", "label": "Company", "type": "text", "required": False}])
    add_webhook(app, receiver.url)
    lead = sign_up(app, client, name="Ann Lee", consent="y", company="Lee & Co",
                   query="?utm_source=news&utm_medium=email&utm_campaign=spring&ref=partner7")
    deliver(app)
    [request] = receiver.requests
    body = body_of(request)
    assert body["event"] == "lead.created"
    assert body["id"].startswith("evt_")
    assert body["occurred_at"] == "2026-03-02T10:00:00.000Z"
    assert body["lead"] == {
        "id": lead.public_ref, "email": "ann@example.com", "name": "Ann Lee",
        "country": None, "page": "offer", "review": "pending", "review_reason": "",
        "subscription": "unconfirmed",
        "attribution": {"utm_source": "news", "utm_medium": "email", "utm_campaign": "spring",
                        "utm_content": None, "utm_term": None, "ref": "partner7",
                        "referrer": None},
        "fields": {"company": "Lee & Co"},
        "consent": {"text": "Send me the guide.", "at": "2026-03-02T10:00:00.000Z"},
        "created_at": "2026-03-02T10:00:00.000Z", "confirmed_at": None,
        "tags": ["guide"],
    }
    assert "upgrade" not in body


def test_auto_approved_optin_fires_created_then_approved(app, client, receiver):
    create_page(app)
    add_webhook(app, receiver.url)
    sign_up(app, client)
    deliver(app)
    assert receiver.events() == ["lead.created", "lead.approved"]
    assert body_of(receiver.requests[1])["lead"]["review"] == "approved"


def test_optin_rejected_by_a_rule_fires_rejected_with_the_reason(app, client, receiver):
    create_page(app, rules={"block_domains": ["spam.example"]})
    add_webhook(app, receiver.url, events=["lead.rejected"])
    sign_up(app, client, email="bot@spam.example")
    deliver(app)
    [request] = receiver.requests
    assert body_of(request)["lead"]["review"] == "rejected"
    assert body_of(request)["lead"]["review_reason"] == "domain spam.example is blocked"


def test_a_repeat_optin_of_a_known_address_fires_nothing(app, client, receiver):
    create_page(app, review="manual")
    add_webhook(app, receiver.url)
    sign_up(app, client)
    optin(app.test_client(), "offer", email="ann@example.com")
    assert [row.event for row in rows(app)] == ["lead.created"]


def test_confirming_fires_lead_confirmed_once(app, client, receiver, clock):
    create_page(app, review="manual")
    add_webhook(app, receiver.url, events=["lead.confirmed"])
    lead = sign_up(app, client)
    clock.advance(minutes=3)
    with app.app_context():
        path = "/confirm/" + tokens.make("confirm", lead.public_ref)
    assert confirm(client, path).status_code == 200
    assert client.get(path).status_code == 200
    deliver(app)
    [request] = receiver.requests
    body = body_of(request)
    assert body["event"] == "lead.confirmed"
    assert body["lead"]["subscription"] == "subscribed"
    assert body["lead"]["confirmed_at"] == body["occurred_at"] == "2026-03-02T10:03:00.000Z"


def test_owner_approval_in_the_dashboard_fires_lead_approved(app, owner, receiver):
    create_page(app, review="manual")
    add_webhook(app, receiver.url, events=["lead.approved"])
    lead = sign_up(app, app.test_client())
    token = csrf_of(owner, f"/admin/leads/{lead.id}")
    assert owner.post(f"/admin/leads/{lead.id}/approve",
                      data={"csrf_token": token}).status_code == 302
    deliver(app)
    [request] = receiver.requests
    assert body_of(request)["event"] == "lead.approved"
    assert body_of(request)["lead"]["id"] == lead.public_ref


def test_owner_rejection_fires_lead_rejected_with_the_reason(app, owner, receiver):
    create_page(app, review="manual")
    add_webhook(app, receiver.url, events=["lead.rejected"])
    lead = sign_up(app, app.test_client())
    token = csrf_of(owner, f"/admin/leads/{lead.id}")
    owner.post(f"/admin/leads/{lead.id}/reject", data={"csrf_token": token,
                                                       "reason": "Fake name"})
    deliver(app)
    [request] = receiver.requests
    assert body_of(request)["lead"]["review"] == "rejected"
    assert body_of(request)["lead"]["review_reason"] == "Fake name"


def test_unsubscribing_fires_lead_unsubscribed(app, client, receiver):
    create_page(app, review="manual")
    add_webhook(app, receiver.url, events=["lead.unsubscribed"])
    lead = sign_up(app, client)
    with app.app_context():
        url = tokens.unsubscribe_url(lead.public_ref)
    assert client.post(url.removeprefix(app.config["BASE_URL"])).status_code == 200
    deliver(app)
    [request] = receiver.requests
    assert body_of(request)["lead"]["subscription"] == "unsubscribed"


def test_a_postback_upgrade_fires_upgrade_recorded_once(app, client, receiver):
    create_page(app, review="manual")
    add_webhook(app, receiver.url, events=["upgrade.recorded"])
    lead = sign_up(app, client)
    params = {"lead": lead.public_ref, "amount": "49", "currency": "eur", "txn": "order-7"}
    params["sig"] = engagement.postback_signature(params, app.config["POSTBACK_SECRET"])
    assert client.get("/postback/upgrade?" + urlencode(params)).status_code == 200
    assert client.get("/postback/upgrade?" + urlencode(params)).json["replay"] is True
    deliver(app)
    [request] = receiver.requests
    body = body_of(request)
    assert body["event"] == "upgrade.recorded"
    assert body["upgrade"] == {"amount": "49.00", "currency": "EUR", "txn": "order-7",
                               "source": "postback"}
    assert body["lead"]["id"] == lead.public_ref


# --- which endpoints get what ---------------------------------------------------------------

def test_an_endpoint_gets_only_the_events_it_subscribed_to(app, client, receiver):
    create_page(app)
    add_webhook(app, receiver.url, events=["lead.approved"])
    sign_up(app, client)
    deliver(app)
    assert receiver.events() == ["lead.approved"]


def test_a_page_filter_limits_an_endpoint_to_that_pages_leads(app, receiver):
    create_page(app, slug="offer", review="manual")
    create_page(app, slug="other", review="manual")
    add_webhook(app, receiver.url + "/offer-only", page="offer")
    add_webhook(app, receiver.url + "/all")
    sign_up(app, app.test_client(), email="a@example.com", slug="offer")
    sign_up(app, app.test_client(), email="b@example.com", slug="other")
    deliver(app)
    seen = sorted((r["path"], body_of(r)["lead"]["email"]) for r in receiver.requests)
    assert seen == [("/all", "a@example.com"), ("/all", "b@example.com"),
                    ("/offer-only", "a@example.com")]


def test_a_disabled_endpoint_is_sent_nothing(app, client, receiver):
    create_page(app)
    add_webhook(app, receiver.url, active=False)
    sign_up(app, client)
    deliver(app)
    assert rows(app) == [] and receiver.requests == []


def test_deliveries_queued_before_an_endpoint_was_disabled_wait_for_it(app, client, receiver):
    create_page(app, review="manual")
    hook = add_webhook(app, receiver.url)
    sign_up(app, client)
    with app.app_context():
        db.session.get(Webhook, hook).active = False
        db.session.commit()
    deliver(app)
    assert receiver.requests == [] and rows(app)[0].status == "pending"


# --- retries -----------------------------------------------------------------------------

def test_a_failing_endpoint_is_retried_with_backoff_until_it_answers(app, client, receiver,
                                                                      clock):
    create_page(app, review="manual")
    add_webhook(app, receiver.url)
    sign_up(app, client)
    receiver.replies = [500]
    assert deliver(app).retrying == 1
    [row] = rows(app)
    assert (row.status, row.attempts, row.status_code) == ("pending", 1, 500)
    assert row.error == "HTTP 500: server trouble"
    assert timedelta(seconds=48) <= row.next_attempt_at - clock.now <= timedelta(seconds=72)
    deliver(app)  # not due yet
    assert len(receiver.requests) == 1
    clock.advance(seconds=73)
    assert deliver(app).delivered == 1
    [row] = rows(app)
    assert (row.status, row.attempts, row.status_code, row.error) == ("delivered", 2, 200, "")
    assert row.response_ms is not None and row.delivered_at == clock.now
    assert len(receiver.requests) == 2


def test_a_timeout_is_recorded_and_retried(app, client, receiver, clock):
    create_page(app, review="manual")
    add_webhook(app, receiver.url)
    sign_up(app, client)
    receiver.replies = ["hang"]
    app.config["WEBHOOK_TIMEOUT_SECONDS"] = 1
    assert deliver(app).retrying == 1
    [row] = rows(app)
    assert (row.status, row.status_code) == ("pending", None)
    assert row.error == "timed out after 1 s"
    app.config["WEBHOOK_TIMEOUT_SECONDS"] = 10
    clock.advance(minutes=2)
    deliver(app)
    assert rows(app)[0].status == "delivered"


def test_a_redirect_is_not_followed(app, client, receiver):
    create_page(app, review="manual")
    add_webhook(app, receiver.url)
    sign_up(app, client)
    receiver.replies = [302]
    deliver(app)
    [row] = rows(app)
    assert (row.status, row.status_code) == ("pending", 302)
    assert row.error.startswith(f"HTTP 302: redirect to {receiver.url}/elsewhere not followed")
    assert [r["path"] for r in receiver.requests] == ["/"]


def test_retries_stop_after_the_retry_window_and_the_delivery_fails(make_app, receiver, clock):
    app = make_app(WEBHOOK_ALLOW_PRIVATE=True, WEBHOOK_RETRY_HOURS=1)
    create_page(app, review="manual")
    add_webhook(app, receiver.url)
    sign_up(app, app.test_client())
    receiver.replies = [500] * 50
    for _ in range(20):
        deliver(app)
        clock.advance(minutes=10)
    [row] = rows(app)
    assert row.status == "failed"
    assert row.error.startswith(f"gave up after {row.attempts} attempts: HTTP 500")
    tries = len(receiver.requests)
    assert 4 <= tries == row.attempts < 10
    clock.advance(hours=5)
    deliver(app)
    assert len(receiver.requests) == tries


def test_an_endpoint_that_does_not_answer_is_not_tried_again_in_the_same_run(app, receiver):
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    create_page(app, review="manual")
    add_webhook(app, f"http://127.0.0.1:{closed}/")
    add_webhook(app, receiver.url)
    for index in range(3):
        sign_up(app, app.test_client(), email=f"l{index}@example.com")
    summary = deliver(app)
    assert (summary.retrying, summary.delivered) == (1, 3)
    down = [row for row in rows(app) if row.status == "pending"]
    assert sorted(row.attempts for row in down) == [0, 0, 1]
    assert [row.error for row in down if row.attempts] == ["connection refused"]


def test_a_claim_left_by_a_dead_process_is_given_back(app, client, receiver, clock):
    create_page(app, review="manual")
    add_webhook(app, receiver.url)
    sign_up(app, client)
    with app.app_context():
        row = db.session.scalar(select(WebhookDelivery))
        row.status, row.claimed_at = "sending", clock.now
        db.session.commit()
    deliver(app)
    assert receiver.requests == []
    clock.advance(minutes=6)
    summary = deliver(app)
    assert (summary.given_back, summary.delivered) == (1, 1)
    assert rows(app)[0].status == "delivered"


def test_concurrent_runs_post_each_delivery_once(app, receiver):
    create_page(app, review="manual")
    add_webhook(app, receiver.url)
    with app.app_context():
        lead = Lead(email="many@example.com", public_ref="ref-many")
        db.session.add(lead)
        db.session.flush()
        for _ in range(30):
            webhooks.emit("lead.created", lead)
        db.session.commit()
    barrier = threading.Barrier(3)
    failures = []

    def run():
        try:
            with app.app_context():
                barrier.wait()
                delivery.deliver_due(limit=10)
                delivery.deliver_due(limit=10)
        except Exception as error:  # reported below
            failures.append(error)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    posted = [r["headers"]["Capture-Delivery"] for r in receiver.requests]
    assert len(posted) == len(set(posted)) == 30
    assert {row.status for row in rows(app)} == {"delivered"}


# --- SSRF --------------------------------------------------------------------------------

@pytest.fixture
def strict_app(make_app):
    """An app with CAPTURE_WEBHOOK_ALLOW_PRIVATE off (the default)."""
    return make_app()


PRIVATE_URLS = [
    "http://127.0.0.1:{port}/", "http://10.0.0.1/hook", "http://169.254.169.254/latest/meta-data",
    "http://[::1]:{port}/", "http://localhost:{port}/", "http://[::ffff:127.0.0.1]:{port}/",
    "http://192.168.1.10/", "http://0.0.0.0:{port}/", "http://100.64.0.1/",
]


@pytest.mark.parametrize("template", PRIVATE_URLS)
def test_private_addresses_are_refused_at_delivery_without_a_request(strict_app, receiver,
                                                                     template):
    url = template.format(port=receiver.port)
    create_page(strict_app, review="manual")
    add_webhook(strict_app, url)  # stored directly: as if saved while allowed
    sign_up(strict_app, strict_app.test_client())
    assert deliver(strict_app).failed == 1
    [row] = rows(strict_app)
    assert row.status == "failed" and row.status_code is None and row.attempts == 1
    assert row.error.startswith("refused: ")
    assert "CAPTURE_WEBHOOK_ALLOW_PRIVATE" in row.error
    assert receiver.requests == []


def test_a_hostname_resolving_to_loopback_is_refused_naming_the_address(strict_app, receiver):
    create_page(strict_app, review="manual")
    add_webhook(strict_app, f"http://localhost:{receiver.port}/")
    sign_up(strict_app, strict_app.test_client())
    deliver(strict_app)
    error = rows(strict_app)[0].error
    assert error.startswith("refused: localhost resolves to ")
    assert "which is a loopback address" in error


@pytest.mark.parametrize("url", [u.format(port=8080) for u in PRIVATE_URLS])
def test_saving_a_private_url_is_refused_with_one_line(strict_app, url):
    with strict_app.app_context(), pytest.raises(outbound.UrlError) as raised:
        endpoints.check_url(url)
    assert "CAPTURE_WEBHOOK_ALLOW_PRIVATE" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_private_urls_are_accepted_when_the_setting_allows_them(app):
    with app.app_context():
        assert endpoints.check_url(" http://127.0.0.1:8080/hook ") == "http://127.0.0.1:8080/hook"


@pytest.mark.parametrize(("url", "message"), [
    ("", "Enter the URL"),
    ("ftp://example.com/hook", "must start with https:// or http://"),
    ("javascript:alert(1)", "must start with https:// or http://"),
    ("example.com/hook", "must start with https:// or http://"),
    ("https://", "must name a host"),
    ("https://user:secret@example.com/hook", "no user name or password"),
    ("https://exa mple.com/hook", "spaces"),
    ("https://example.com:99999/hook", "check the host and the port"),
    ("https://example.com/hook#part", "#fragment"),
])
def test_a_webhook_url_must_be_http_with_a_host(strict_app, url, message):
    with strict_app.app_context(), pytest.raises(outbound.UrlError, match=message):
        endpoints.check_url(url)


def test_a_public_https_url_is_accepted_without_resolving_it(strict_app):
    with strict_app.app_context():
        url = "https://hooks.example.com/capture?x=1"
        assert endpoints.check_url(url) == url


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for the name localhost (not for 127.0.0.1)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                        "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    except FileNotFoundError:
        pytest.skip("needs the openssl command")
    return str(cert), str(key)


@pytest.fixture
def tls_receiver(certificate, monkeypatch):
    """An HTTPS receiver whose certificate Capture trusts (as if a CA had signed it)."""
    original = ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context",
                        lambda *args, **kwargs: original(cafile=certificate[0]))
    server = Receiver(tls=certificate)
    yield server
    server.stop()


def test_https_delivery_checks_the_certificate_against_the_host_name(app, client, tls_receiver):
    create_page(app, review="manual")
    add_webhook(app, tls_receiver.url + "/hook")
    sign_up(app, client)
    assert deliver(app).delivered == 1
    [request] = tls_receiver.requests
    assert request["headers"]["Host"] == f"localhost:{tls_receiver.port}"


def test_https_to_a_name_the_certificate_does_not_cover_is_not_sent(app, client, tls_receiver):
    create_page(app, review="manual")
    add_webhook(app, f"https://127.0.0.1:{tls_receiver.port}/hook")
    sign_up(app, client)
    deliver(app)
    [row] = rows(app)
    assert row.status == "pending" and row.status_code is None
    assert row.error.startswith("TLS certificate not accepted")
    assert tls_receiver.requests == []


def test_the_connection_goes_to_the_address_that_was_checked(strict_app, monkeypatch):
    """A DNS server that answers a public address to the check and a loopback one to a
    second lookup (DNS rebinding) gets only one question: the connection is made to
    the address that was checked, under the URL's host name."""
    create_page(strict_app, review="manual")
    add_webhook(strict_app, "https://hooks.example.com/capture")
    sign_up(strict_app, strict_app.test_client())
    lookups, connections = [], []

    def rebinding_dns(host, port, *args, **kwargs):
        lookups.append(host)
        address = "93.184.216.34" if len(lookups) == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    def no_network(address, *args, **kwargs):
        connections.append(address)
        raise ConnectionRefusedError()

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_dns)
    monkeypatch.setattr(socket, "create_connection", no_network)
    deliver(strict_app)
    monkeypatch.undo()
    assert lookups == ["hooks.example.com"]
    assert connections == [("93.184.216.34", 443)]
    assert rows(strict_app)[0].error == "connection refused"


# --- the scheduler, the commands, the settings ---------------------------------------------

def test_the_scheduler_delivers_webhooks_even_when_the_email_tick_fails(app, client, receiver,
                                                                         monkeypatch, caplog):
    create_page(app, review="manual")
    add_webhook(app, receiver.url)
    sign_up(app, client)

    def broken_tick():
        raise RuntimeError("SMTP exploded")

    monkeypatch.setattr(engine, "tick", broken_tick)
    with caplog.at_level(logging.ERROR, logger="capture.scheduler"):
        assert scheduler.run_tick(app) is None
    assert "SMTP exploded" in caplog.text
    assert receiver.events() == ["lead.created"]


def test_a_failing_webhook_run_does_not_stop_the_email_tick(app, monkeypatch, caplog):
    def broken_delivery(limit=None):
        raise RuntimeError("webhooks exploded")

    monkeypatch.setattr(delivery, "deliver_due", broken_delivery)
    with caplog.at_level(logging.ERROR, logger="capture.scheduler"):
        summary = scheduler.run_tick(app)
    assert isinstance(summary, outcomes.Summary)
    assert "webhook delivery run failed" in caplog.text
    assert "webhooks exploded" in caplog.text


def test_send_due_command_posts_and_prints_a_summary(app, client, receiver):
    create_page(app, review="manual")
    add_webhook(app, receiver.url)
    sign_up(app, client)
    result = app.test_cli_runner().invoke(args=["webhooks", "send-due"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == ("webhooks: delivered 1, retrying 0, failed 0, "
                                     "given back 0")
    assert receiver.events() == ["lead.created"]


def test_the_one_tick_send_due_command_also_posts_due_webhooks(app, client, receiver):
    create_page(app, review="manual")
    add_webhook(app, receiver.url)
    sign_up(app, client)
    result = app.test_cli_runner().invoke(args=["send-due"])
    assert result.exit_code == 0, result.output
    assert "webhooks: delivered 1" in result.output
    assert receiver.events() == ["lead.created"]


def test_list_command_shows_each_endpoint(app, receiver):
    create_page(app, review="manual")
    add_webhook(app, receiver.url + "/crm", events=["lead.approved"], page="offer")
    runner = app.test_cli_runner()
    output = runner.invoke(args=["webhooks", "list"]).output
    assert "active" in output and "offer" in output and "lead.approved" in output
    assert receiver.url + "/crm" in output


def test_list_command_without_webhooks_says_how_to_add_one(app):
    output = app.test_cli_runner().invoke(args=["webhooks", "list"]).output
    assert "No webhooks yet" in output


@pytest.mark.parametrize(("name", "value"), [
    ("WEBHOOK_TIMEOUT_SECONDS", 0), ("WEBHOOK_TIMEOUT_SECONDS", 600),
    ("WEBHOOK_RETRY_HOURS", "a day"), ("WEBHOOK_ALLOW_PRIVATE", "perhaps"),
    ("WEBHOOK_BATCH_SIZE", 0),
])
def test_a_bad_webhook_setting_stops_start_up_with_one_line(make_app, name, value):
    with pytest.raises(SettingError) as raised:
        make_app(**{name: value})
    assert f"CAPTURE_{name}" in str(raised.value)
    assert "\n" not in str(raised.value)
