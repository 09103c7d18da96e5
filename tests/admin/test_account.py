"""The owner's password: `flask owner password` and the dashboard's Account page
(current password, new one twice; every other session ends, this one stays)."""

import pytest
from sqlalchemy import select

from capture.db import db
from capture.models import Owner
from tests.conftest import OWNER_EMAIL, OWNER_PASSWORD, csrf_of, login

NEW_PASSWORD = "a brand new passphrase"


def stored_hash(app) -> str:
    with app.app_context():
        return db.session.scalar(select(Owner.password_hash).where(Owner.email == OWNER_EMAIL))


def change(client, current=OWNER_PASSWORD, new=NEW_PASSWORD, repeat=None):
    token = csrf_of(client, "/admin/account")
    return client.post("/admin/account", data={
        "csrf_token": token, "current": current, "new": new,
        "repeat": new if repeat is None else repeat})


# --- flask owner password ------------------------------------------------------------------

def test_owner_password_sets_a_new_hash_and_ends_the_sessions(app, owner, runner, client):
    before = stored_hash(app)
    result = runner.invoke(args=["owner", "password", "Owner@Example.com",
                                 "--password", NEW_PASSWORD])
    assert result.exit_code == 0, result.output
    assert f"Password of {OWNER_EMAIL} changed" in result.output
    after = stored_hash(app)
    assert after != before and NEW_PASSWORD not in after
    assert owner.get("/admin/").status_code == 302  # the open session ended
    assert login(client).status_code == 401
    assert login(client, password=NEW_PASSWORD).status_code == 302


def test_owner_password_prompts_twice(app, owner, runner, client):
    result = runner.invoke(args=["owner", "password", OWNER_EMAIL],
                           input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("New password") == 1
    assert "Repeat for confirmation" in result.output
    assert login(client, password=NEW_PASSWORD).status_code == 302


def test_owner_password_of_an_unknown_address_is_one_line_and_exit_1(app, owner, runner):
    before = stored_hash(app)
    result = runner.invoke(args=["owner", "password", "nobody@example.com",
                                 "--password", NEW_PASSWORD])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: no owner 'nobody@example.com' (see: .venv/bin/flask --app wsgi owner create)"]
    assert stored_hash(app) == before


def test_owner_password_refuses_a_short_one_and_keeps_the_old(app, owner, runner):
    before = stored_hash(app)
    result = runner.invoke(args=["owner", "password", OWNER_EMAIL, "--password", "short"])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: the password needs at least 10 characters"
    assert stored_hash(app) == before
    assert owner.get("/admin/").status_code == 200


# --- the Account page ------------------------------------------------------------------

def test_account_page_is_linked_from_every_dashboard_page(owner):
    html = owner.get("/admin/").get_data(as_text=True)
    assert 'href="/admin/account"' in html
    page = owner.get("/admin/account").get_data(as_text=True)
    assert "Change the password" in page and 'autocomplete="current-password"' in page


def test_wrong_current_password_changes_nothing(app, owner, client):
    before = stored_hash(app)
    response = change(owner, current="not my password at all")
    assert response.status_code == 422
    assert "The current password is wrong." in response.get_data(as_text=True)
    assert stored_hash(app) == before
    assert login(client).status_code == 302


@pytest.mark.parametrize(("new", "repeat", "message"), [
    (NEW_PASSWORD, NEW_PASSWORD + "!", "The two new passwords are not the same."),
    ("short", "short", "The password needs at least 10 characters."),
    ("", "", "Enter a new password."),
])
def test_unusable_new_password_is_explained(app, owner, new, repeat, message):
    before = stored_hash(app)
    response = change(owner, new=new, repeat=repeat)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert stored_hash(app) == before


def test_change_logs_out_every_other_session_and_keeps_this_one(app, owner):
    other = app.test_client()
    assert login(other).status_code == 302
    assert other.get("/admin/").status_code == 200

    response = change(owner)
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/account"
    page = owner.get("/admin/account").get_data(as_text=True)
    assert "Your password is changed. Every other session is logged out." in page
    assert owner.get("/admin/leads").status_code == 200  # this session goes on
    assert other.get("/admin/").status_code == 302  # the other one ended
    assert login(other).status_code == 401
    assert login(other, password=NEW_PASSWORD).status_code == 302


def test_change_needs_the_csrf_token(app, owner):
    before = stored_hash(app)
    response = owner.post("/admin/account", data={
        "current": OWNER_PASSWORD, "new": NEW_PASSWORD, "repeat": NEW_PASSWORD})
    assert response.status_code == 400
    assert stored_hash(app) == before


def test_wrong_current_passwords_count_as_failed_log_ins(app, owner):
    before = stored_hash(app)
    for _ in range(20):
        assert change(owner, current="guessing the password").status_code == 422
    response = change(owner)
    assert response.status_code == 429
    assert "Too many failed attempts" in response.get_data(as_text=True)
    assert stored_hash(app) == before
    assert login(app.test_client()).status_code == 429  # the log-in form pauses too
