"""Managing API tokens: `flask --app wsgi tokens …` and the dashboard's API tokens."""

import re

from sqlalchemy import select

from capture.db import db
from capture.models import ApiToken
from tests.conftest import csrf_of


def token_rows(app):
    with app.app_context():
        rows = db.session.scalars(select(ApiToken).order_by(ApiToken.id)).all()
        for row in rows:
            db.session.expunge(row)
        return rows


def calls(app, token: str) -> int:
    return app.test_client().get(
        "/api/v1/leads", headers={"Authorization": f"Bearer {token}"}).status_code


# --- the commands --------------------------------------------------------------------

def test_cli_create_prints_a_working_token_once(app, runner):
    result = runner.invoke(args=["tokens", "create", "store"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith("cap_")
    assert "Copy it now" in result.stderr
    assert calls(app, token) == 200
    [row] = token_rows(app)
    assert row.name == "store" and token not in row.token_hash


def test_cli_create_refuses_an_empty_name(app, runner):
    result = runner.invoke(args=["tokens", "create", "  "])
    assert result.exit_code == 1
    assert "name" in result.output
    assert token_rows(app) == []


def test_cli_list_shows_prefix_and_state_never_the_token(app, runner):
    token = runner.invoke(args=["tokens", "create", "store"]).stdout.strip()
    runner.invoke(args=["tokens", "create", "buyer"])
    runner.invoke(args=["tokens", "revoke", "2"])
    output = runner.invoke(args=["tokens", "list"]).output
    assert token[:12] in output and token not in output
    header, store, buyer = output.splitlines()  # active tokens first
    assert "active" in store and "store" in store
    assert "revoked" in buyer and "buyer" in buyer


def test_cli_list_without_tokens_says_how_to_make_one(runner):
    assert "tokens create" in runner.invoke(args=["tokens", "list"]).output


def test_cli_revoke_stops_the_token(app, runner):
    token = runner.invoke(args=["tokens", "create", "store"]).stdout.strip()
    result = runner.invoke(args=["tokens", "revoke", "1"])
    assert result.exit_code == 0
    assert "revoked" in result.output
    assert calls(app, token) == 401


def test_cli_revoke_of_an_unknown_id_fails(runner):
    result = runner.invoke(args=["tokens", "revoke", "9"])
    assert result.exit_code == 1
    assert "no token with id 9" in result.output


# --- the dashboard -------------------------------------------------------------------

def create_in_dashboard(owner, name="store"):
    token = csrf_of(owner, "/admin/tokens")
    return owner.post("/admin/tokens", data={"csrf_token": token, "name": name})


def test_dashboard_shows_a_new_token_once(app, owner):
    response = create_in_dashboard(owner)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    token = re.search(r'<code id="token">([^<]+)</code>', html).group(1)
    assert calls(app, token) == 200
    listing = owner.get("/admin/tokens").get_data(as_text=True)
    assert "store" in listing and token[:12] in listing
    assert token not in listing


def test_new_token_page_has_a_copy_button_without_inline_script(app, owner):
    html = create_in_dashboard(owner).get_data(as_text=True)
    assert '<button type="button" class="button secondary js-only" data-copy="token">Copy' in html
    assert '<script src="/static/admin/copy.js" defer></script>' in html
    assert "<script>" not in html and "onclick" not in html
    with owner.get("/static/admin/copy.js") as script:
        assert "navigator.clipboard" in script.get_data(as_text=True)


def test_dashboard_lists_tokens_with_last_use(app, owner):
    create_in_dashboard(owner, "buyer")
    html = owner.get("/admin/tokens").get_data(as_text=True)
    assert "buyer" in html and "active" in html
    assert 'href="/admin/tokens"' in html  # in the sidebar


def test_dashboard_refuses_a_token_without_a_name(app, owner):
    response = create_in_dashboard(owner, " ")
    assert response.status_code == 422
    assert "Give the token a name" in response.get_data(as_text=True)
    assert token_rows(app) == []


def test_dashboard_revokes_a_token(app, owner):
    html = create_in_dashboard(owner).get_data(as_text=True)
    token = re.search(r'<code id="token">([^<]+)</code>', html).group(1)
    csrf = csrf_of(owner, "/admin/tokens")
    response = owner.post("/admin/tokens/1/revoke", data={"csrf_token": csrf},
                          follow_redirects=True)
    assert "is revoked" in response.get_data(as_text=True)
    assert calls(app, token) == 401
    assert token_rows(app)[0].revoked_at is not None


def test_dashboard_revoke_needs_the_csrf_token(app, owner):
    create_in_dashboard(owner)
    response = owner.post("/admin/tokens/1/revoke", data={})
    assert response.status_code == 400
    assert token_rows(app)[0].revoked_at is None


def test_dashboard_tokens_need_a_login(app, client):
    assert client.get("/admin/tokens").status_code == 302
