"""The Webhooks area: endpoints created, edited, disabled and deleted by the owner with
a signing secret shown; each endpoint's deliveries with status code, time, attempts
and error; resending one, and a test event posted to a real local server."""

import re
from html import unescape

import pytest
from sqlalchemy import select

from capture.db import db
from capture.models import Page, Webhook, WebhookDelivery
from tests.conftest import OWNER_EMAIL, OWNER_PASSWORD, create_page, csrf_of, login, sign_up
from tests.factories import add_webhook, deliver, rows

ALL_EVENTS = ["lead.created", "lead.confirmed", "lead.approved", "lead.rejected",
              "lead.unsubscribed", "upgrade.recorded"]


@pytest.fixture
def app(make_app):
    """Allowed to call the loopback receiver, with a short timeout."""
    return make_app(WEBHOOK_ALLOW_PRIVATE=True, WEBHOOK_TIMEOUT_SECONDS=10)


def create(owner, url, events=("lead.created",), page="", active=True, token=None):
    data = {"csrf_token": token or csrf_of(owner, "/admin/webhooks/new"), "url": url,
            "events": list(events), "page": page}
    if active:
        data["active"] = "y"
    return owner.post("/admin/webhooks/new", data=data)


def hooks(app) -> list[Webhook]:
    with app.app_context():
        found = db.session.scalars(select(Webhook).order_by(Webhook.id)).all()
        for hook in found:
            db.session.expunge(hook)
        return list(found)


def text_of(response) -> str:
    return unescape(response.get_data(as_text=True))


def post(owner, path, data=None, back=None):
    token = csrf_of(owner, back or "/admin/webhooks")
    return owner.post(path, data={"csrf_token": token, **(data or {})})


# --- access ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/admin/webhooks", "/admin/webhooks/new", "/admin/webhooks/1",
                                  "/admin/webhooks/1/edit", "/admin/webhooks/1/delete"])
def test_webhook_pages_need_a_login(app, client, path):
    add_webhook(app, "https://crm.example.com/hook")
    response = client.get(path)
    assert response.status_code == 302
    assert "/admin/login" in response.headers["Location"]


@pytest.mark.parametrize("path", ["/admin/webhooks/1/test", "/admin/webhooks/1/secret",
                                  "/admin/webhooks/1/disable",
                                  "/admin/webhooks/deliveries/1/resend"])
def test_webhook_actions_need_a_login(app, client, receiver, path):
    add_webhook(app, receiver.url)
    token = csrf_of(client, "/admin/login")  # a genuine token, but nobody logged in
    response = client.post(path, data={"csrf_token": token})
    assert response.status_code == 302
    assert "/admin/login" in response.headers["Location"]
    assert receiver.requests == []
    assert hooks(app)[0].active


def test_the_sidebar_links_to_webhooks(app, owner):
    html = owner.get("/admin/webhooks").get_data(as_text=True)
    assert '<a href="/admin/webhooks" class="active">Webhooks</a>' in html
    assert "No webhooks yet" in html


# --- creating and editing ----------------------------------------------------------------

def test_owner_adds_an_endpoint_and_sees_its_signing_secret(app, owner):
    create_page(app, slug="offer")
    with app.app_context():
        page_id = db.session.scalar(select(Page.id))
    response = create(owner, "https://crm.example.com/hooks/capture",
                      events=["lead.approved", "upgrade.recorded"], page=str(page_id))
    assert response.status_code == 302
    [hook] = hooks(app)
    assert (hook.url, hook.events, hook.page_id, hook.active) == (
        "https://crm.example.com/hooks/capture", ["lead.approved", "upgrade.recorded"],
        page_id, True)
    assert re.fullmatch(r"whsec_[A-Za-z0-9_-]{43}", hook.secret)
    page = text_of(owner.get(response.headers["Location"]))
    assert hook.secret in page
    assert "Copy its signing secret" in page
    assert "/p/offer" in page


def test_the_new_form_offers_every_event_checked(app, owner):
    html = owner.get("/admin/webhooks/new").get_data(as_text=True)
    for event in ALL_EVENTS:
        assert re.search(rf'<input checked id="events-\d" name="events" type="checkbox" '
                         rf'value="{re.escape(event)}">', html), event


def test_each_endpoint_gets_its_own_secret(app, owner):
    create(owner, "https://a.example.com/hook")
    create(owner, "https://b.example.com/hook")
    first, second = hooks(app)
    assert first.secret != second.secret


def test_adding_without_the_csrf_token_is_refused(app, owner):
    response = owner.post("/admin/webhooks/new", data={"url": "https://crm.example.com/h",
                                                       "events": ["lead.created"]})
    assert response.status_code == 400
    assert hooks(app) == []


@pytest.mark.parametrize(("url", "message"), [
    ("ftp://crm.example.com/hook", "The URL must start with https:// or http://."),
    ("https://", "The URL must name a host, like https://example.com/hooks/capture."),
    ("", "Enter the URL that receives the events."),
])
def test_a_bad_url_is_shown_with_one_clear_line_and_nothing_is_stored(app, owner, url,
                                                                       message):
    response = create(owner, url)
    assert response.status_code == 422
    assert f'<p class="error" role="alert">{message}</p>' in text_of(response)
    assert hooks(app) == []


def test_a_private_address_is_refused_when_the_setting_is_off(make_app):
    from capture.access.owners import create_owner

    app = make_app()
    with app.app_context():
        create_owner(OWNER_EMAIL, OWNER_PASSWORD)
    owner = app.test_client()
    login(owner)
    response = create(owner, "http://169.254.169.254/latest/meta-data")
    assert response.status_code == 422
    assert ("169.254.169.254 is a link-local address; Capture calls only public addresses "
            "unless CAPTURE_WEBHOOK_ALLOW_PRIVATE is on.") in text_of(response)
    assert hooks(app) == []


def test_at_least_one_event_is_needed(app, owner):
    response = create(owner, "https://crm.example.com/hook", events=[])
    assert response.status_code == 422
    assert "Choose at least one event." in text_of(response)


def test_an_unknown_event_or_page_is_refused(app, owner):
    assert create(owner, "https://crm.example.com/h", events=["lead.deleted"]).status_code == 422
    assert create(owner, "https://crm.example.com/h", page="999").status_code == 422
    assert hooks(app) == []


def test_owner_edits_the_url_events_and_page_filter(app, owner):
    create_page(app, slug="offer")
    hook_id = add_webhook(app, "https://old.example.com/hook", page="offer")
    secret = hooks(app)[0].secret
    form = owner.get(f"/admin/webhooks/{hook_id}/edit").get_data(as_text=True)
    assert 'value="https://old.example.com/hook"' in form
    response = owner.post(f"/admin/webhooks/{hook_id}/edit", data={
        "csrf_token": csrf_of(owner, f"/admin/webhooks/{hook_id}/edit"),
        "url": "https://new.example.com/hook", "events": ["lead.rejected"], "page": "",
        "active": "y"})
    assert response.status_code == 302
    [hook] = hooks(app)
    assert (hook.url, hook.events, hook.page_id, hook.secret) == (
        "https://new.example.com/hook", ["lead.rejected"], None, secret)


def test_an_invalid_edit_changes_nothing(app, owner):
    hook_id = add_webhook(app, "https://old.example.com/hook")
    response = owner.post(f"/admin/webhooks/{hook_id}/edit", data={
        "csrf_token": csrf_of(owner, f"/admin/webhooks/{hook_id}/edit"),
        "url": "gopher://old.example.com", "events": ["lead.created"]})
    assert response.status_code == 422
    assert hooks(app)[0].url == "https://old.example.com/hook"


def test_a_disabled_endpoint_gets_no_new_events_until_enabled(app, owner, receiver):
    create_page(app, review="manual")
    hook_id = add_webhook(app, receiver.url)
    back = f"/admin/webhooks/{hook_id}"
    assert post(owner, f"/admin/webhooks/{hook_id}/disable", back=back).status_code == 302
    assert "disabled" in text_of(owner.get(back))
    sign_up(app, app.test_client(), email="a@example.com")
    assert rows(app) == []
    post(owner, f"/admin/webhooks/{hook_id}/enable", back=back)
    sign_up(app, app.test_client(), email="b@example.com")
    deliver(app)
    assert [r["body"] for r in receiver.requests][0].count(b"b@example.com") == 1
    assert len(receiver.requests) == 1


def test_a_new_secret_replaces_the_old_one(app, owner):
    hook_id = add_webhook(app, "https://crm.example.com/hook")
    old = hooks(app)[0].secret
    response = post(owner, f"/admin/webhooks/{hook_id}/secret", back=f"/admin/webhooks/{hook_id}")
    assert response.status_code == 302
    new = hooks(app)[0].secret
    assert new != old and new in text_of(owner.get(f"/admin/webhooks/{hook_id}"))


def test_deleting_asks_first_then_removes_the_endpoint_and_its_deliveries(app, owner):
    create_page(app, review="manual")
    hook_id = add_webhook(app, "https://crm.example.com/hook")
    sign_up(app, app.test_client())
    page = owner.get(f"/admin/webhooks/{hook_id}/delete")
    assert "Delete this webhook?" in text_of(page)
    assert len(hooks(app)) == 1
    response = post(owner, f"/admin/webhooks/{hook_id}/delete",
                    back=f"/admin/webhooks/{hook_id}/delete")
    assert response.headers["Location"].endswith("/admin/webhooks")
    assert hooks(app) == [] and rows(app) == []


def test_an_unknown_webhook_is_404(app, owner):
    assert owner.get("/admin/webhooks/42").status_code == 404
    assert post(owner, "/admin/webhooks/42/test").status_code == 404
    assert post(owner, "/admin/webhooks/deliveries/42/resend").status_code == 404


# --- deliveries ------------------------------------------------------------------------------

def test_deliveries_show_status_code_time_attempts_and_error(app, owner, receiver, clock):
    create_page(app, review="manual")
    hook_id = add_webhook(app, receiver.url)
    sign_up(app, app.test_client())
    receiver.replies = [500]
    deliver(app)
    html = owner.get(f"/admin/webhooks/{hook_id}").get_data(as_text=True)
    row = re.search(r'<tr data-delivery="\d+">(.*?)</tr>', html, re.S).group(1)
    assert '<span class="badge pending">pending</span>' in row
    assert '<td class="num" data-field="status_code">500</td>' in row
    assert re.search(r'data-field="response_ms">\d+ ms</td>', row)
    assert '<td class="num" data-field="attempts">1</td>' in row
    assert '<td class="error-cell" data-field="error">HTTP 500: server trouble</td>' in row
    listing = owner.get("/admin/webhooks").get_data(as_text=True)
    assert receiver.url in listing and "HTTP 500" in listing


def test_resend_queues_a_failed_delivery_for_the_next_run(make_app, receiver, clock):
    from capture.access.owners import create_owner

    app = make_app(WEBHOOK_ALLOW_PRIVATE=True, WEBHOOK_RETRY_HOURS=0)
    with app.app_context():
        create_owner(OWNER_EMAIL, OWNER_PASSWORD)
    owner = app.test_client()
    login(owner)
    create_page(app, review="manual")
    hook_id = add_webhook(app, receiver.url)
    sign_up(app, app.test_client())
    receiver.replies = [503]
    deliver(app)
    [row] = rows(app)
    assert row.status == "failed"
    clock.advance(hours=3)
    response = post(owner, f"/admin/webhooks/deliveries/{row.id}/resend",
                    back=f"/admin/webhooks/{hook_id}")
    assert response.status_code == 302
    assert "is queued" in text_of(owner.get(response.headers["Location"]))
    [row] = rows(app)
    assert (row.status, row.next_attempt_at) == ("pending", clock.now)
    assert len(receiver.requests) == 1  # nothing posted by the owner's request
    deliver(app)
    [row] = rows(app)
    assert (row.status, row.attempts, row.status_code) == ("delivered", 2, 200)


def test_resend_without_the_csrf_token_is_refused(app, owner, receiver):
    create_page(app, review="manual")
    add_webhook(app, receiver.url)
    sign_up(app, app.test_client())
    deliver(app)
    [row] = rows(app)
    response = owner.post(f"/admin/webhooks/deliveries/{row.id}/resend")
    assert response.status_code == 400
    assert rows(app)[0].status == "delivered"


def test_a_delivery_being_posted_is_not_resent(app, owner):
    create_page(app, review="manual")
    hook_id = add_webhook(app, "https://crm.example.com/hook")
    sign_up(app, app.test_client())
    with app.app_context():
        row = db.session.scalar(select(WebhookDelivery))
        row.status = "sending"
        db.session.commit()
        row_id = row.id
    response = post(owner, f"/admin/webhooks/deliveries/{row_id}/resend",
                    back=f"/admin/webhooks/{hook_id}")
    assert "being posted right now" in text_of(owner.get(response.headers["Location"]))
    assert rows(app)[0].status == "sending"


def test_the_deliveries_list_filters_by_state(app, owner, receiver):
    create_page(app, review="manual")
    hook_id = add_webhook(app, receiver.url)
    sign_up(app, app.test_client(), email="a@example.com")
    deliver(app)
    sign_up(app, app.test_client(), email="b@example.com")
    pending = owner.get(f"/admin/webhooks/{hook_id}?status=pending").get_data(as_text=True)
    assert pending.count("<tr data-delivery=") == 1
    everything = owner.get(f"/admin/webhooks/{hook_id}").get_data(as_text=True)
    assert everything.count("<tr data-delivery=") == 2


# --- test event ------------------------------------------------------------------------------

def test_send_a_test_event_posts_it_now_and_shows_the_answer(app, owner, receiver):
    hook_id = add_webhook(app, receiver.url, active=False)
    response = post(owner, f"/admin/webhooks/{hook_id}/test", back=f"/admin/webhooks/{hook_id}")
    assert response.status_code == 302
    page = text_of(owner.get(response.headers["Location"]))
    assert re.search(r"Test event delivered: HTTP 200 in \d+ ms\.", page)
    [request] = receiver.requests
    assert request["headers"]["Capture-Event"] == "webhook.test"
    assert b'"email":"jane@example.com"' in request["body"]
    [row] = rows(app)
    assert (row.event, row.status) == ("webhook.test", "delivered")


def test_a_failing_test_event_says_why_and_is_not_retried(app, owner, receiver):
    hook_id = add_webhook(app, receiver.url)
    receiver.replies = [404]
    response = post(owner, f"/admin/webhooks/{hook_id}/test", back=f"/admin/webhooks/{hook_id}")
    assert "Test event not delivered: HTTP 404" in text_of(owner.get(response.headers["Location"]))
    assert rows(app)[0].status == "failed"
