"""Dashboard log-in: every admin URL behind it, password check, throttling, session
renewal, safe redirects, log-out, cross-site posts, cookie flags and `owner create`."""

import re

import pytest
from sqlalchemy import func, select

from capture.access.owners import create_owner
from capture.db import db
from capture.models import Owner
from tests.conftest import OWNER_EMAIL, OWNER_PASSWORD, admin_urls, csrf_of, login

FAILURE_MESSAGE = "Wrong email or password."
THROTTLE_MESSAGE = "Too many failed attempts"


@pytest.fixture
def account(app):
    """An owner account (not logged in)."""
    with app.app_context():
        create_owner(OWNER_EMAIL, OWNER_PASSWORD)


def login_token(client, path="/admin/login") -> str:
    html = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" type="hidden" value="([^"]*)"', html).group(1)


def session_cookie(client) -> str | None:
    cookie = client.get_cookie("session")
    return cookie.value if cookie else None


# --- every page needs a log-in ----------------------------------------------------------

def test_every_admin_url_sends_an_anonymous_client_to_login(app, client):
    urls = admin_urls(app)
    endpoints = {endpoint for endpoint, _, _ in urls}
    assert {"admin.overview", "admin.sources", "admin.logout"} <= endpoints
    token = login_token(client)
    for endpoint, method, url in urls:
        data = {"csrf_token": token} if method != "GET" else None
        response = client.open(url, method=method, data=data)
        assert response.status_code == 302, (endpoint, method, url, response.status_code)
        assert response.headers["Location"].startswith("/admin/login?next="), (endpoint, url)


def test_anonymous_client_is_sent_back_after_logging_in(client, account):
    response = client.get("/admin/sources?by=ref")
    assert response.headers["Location"] == "/admin/login?next=%2Fadmin%2Fsources%3Fby%3Dref"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]*)"', page).group(1)
    answer = client.post(response.headers["Location"], data={
        "csrf_token": token, "email": OWNER_EMAIL, "password": OWNER_PASSWORD})
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/admin/sources?by=ref"
    assert client.get("/admin/sources?by=ref").status_code == 200


# --- logging in -----------------------------------------------------------------------------

def test_login_page_renders_with_a_csrf_token(client):
    response = client.get("/admin/login")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'name="csrf_token"' in html and 'name="password"' in html


def test_right_password_logs_in_and_opens_the_overview(app, client, account):
    response = login(client)
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/"
    overview = client.get("/admin/")
    assert overview.status_code == 200
    assert OWNER_EMAIL in overview.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(Owner.last_login_at)) is not None


def test_email_is_matched_without_regard_to_case_or_spaces(client, account):
    assert login(client, email="  Owner@Example.COM ").status_code == 302


@pytest.mark.parametrize(("email", "password"), [
    (OWNER_EMAIL, "wrong password, long enough"),
    ("nobody@example.com", OWNER_PASSWORD),
])
def test_wrong_email_or_password_is_refused_with_one_message(client, account, email, password):
    response = login(client, email=email, password=password)
    assert response.status_code == 401
    assert FAILURE_MESSAGE in response.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302


def test_unknown_address_costs_the_same_hash_check_as_a_known_one(client, account,
                                                                     monkeypatch):
    """Issue 15.6: an unknown address answered without a hash check (~12 ms against
    ~250 ms) told who the owners are. Both now run one check of the same method and
    cost (werkzeug's hash string starts with them: "scrypt:32768:8:1$…")."""
    import werkzeug.security

    checked = []
    real_check = werkzeug.security.check_password_hash

    def counting_check(pwhash, password):
        checked.append(pwhash.split("$", 1)[0])
        return real_check(pwhash, password)

    monkeypatch.setattr(werkzeug.security, "check_password_hash", counting_check)
    assert login(client, password="wrong password, long enough").status_code == 401
    known = list(checked)
    checked.clear()
    assert login(client, email="nobody@example.com").status_code == 401
    assert len(known) == 1
    assert checked == known


def test_login_post_without_csrf_token_is_refused(client, account):
    response = client.post("/admin/login", data={"email": OWNER_EMAIL,
                                                 "password": OWNER_PASSWORD})
    assert response.status_code == 400
    assert client.get("/admin/").status_code == 302


def test_five_failures_pause_log_in_even_with_the_right_password(client, account):
    for _ in range(5):
        assert login(client, password="not the password at all").status_code == 401
    response = login(client)
    assert response.status_code == 429
    html = response.get_data(as_text=True)
    assert "Too many failed attempts. Wait 15 minutes and try again." in html
    assert client.get("/admin/").status_code == 302


def test_failures_are_counted_per_account_from_any_address(client, account):
    """A higher bar than per address (20), so a stranger cannot lock the owner out
    with five guesses, but a distributed guess at one account is still paused."""
    for number in range(20):
        login_from = {"REMOTE_ADDR": f"10.0.0.{number}"}
        token = login_token(client)
        assert client.post("/admin/login", data={
            "csrf_token": token, "email": OWNER_EMAIL, "password": "not the password"},
            environ_base=login_from).status_code == 401
    token = login_token(client)
    assert client.post("/admin/login", data={
        "csrf_token": token, "email": OWNER_EMAIL, "password": OWNER_PASSWORD},
        environ_base={"REMOTE_ADDR": "10.0.0.99"}).status_code == 429


def test_session_is_renewed_on_login(client, account):
    client.get("/admin/login")
    with client.session_transaction() as session:
        session["planted"] = "by someone else"
        planted_csrf = session.get("csrf_token")
    before = session_cookie(client)
    assert before
    assert login(client).status_code == 302
    after = session_cookie(client)
    assert after and after != before
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session.get("csrf_token") != planted_csrf
        assert session.get("_user_id")


# --- where log-in sends you ---------------------------------------------------------------

@pytest.mark.parametrize("target", [
    "//evil.example", "https://evil.example", "http://evil.example/admin/",
    "/\\evil.example", "\\\\evil.example", "/\t/evil.example", "/\n/evil.example",
    "javascript:alert(1)", "",
])
def test_next_cannot_leave_the_site(client, account, target):
    path = "/admin/login"
    token = login_token(client, path)
    response = client.post(path, query_string={"next": target}, data={
        "csrf_token": token, "email": OWNER_EMAIL, "password": OWNER_PASSWORD})
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/"


def test_next_within_the_site_is_followed(client, account):
    token = login_token(client)
    response = client.post("/admin/login", query_string={"next": "/admin/sources?by=ref"},
                           data={"csrf_token": token, "email": OWNER_EMAIL,
                                 "password": OWNER_PASSWORD})
    assert response.headers["Location"] == "/admin/sources?by=ref"


# --- logging out ------------------------------------------------------------------------------

def test_logout_is_a_post_with_csrf_that_ends_the_session(owner):
    assert owner.get("/admin/logout").status_code == 405
    assert owner.post("/admin/logout").status_code == 400  # no CSRF token
    assert owner.get("/admin/").status_code == 200
    token = csrf_of(owner, "/admin/")
    response = owner.post("/admin/logout", data={"csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/login"
    assert "You are logged out." in owner.get("/admin/login").get_data(as_text=True)
    assert owner.get("/admin/").status_code == 302
    with owner.session_transaction() as session:
        assert "_user_id" not in session


def test_logout_replaces_the_session_cookie(owner):
    old_cookie = session_cookie(owner)
    owner.post("/admin/logout", data={"csrf_token": csrf_of(owner, "/admin/")})
    assert session_cookie(owner) != old_cookie


# --- cross-site posts ---------------------------------------------------------------------------

def test_post_from_another_origin_is_refused(owner):
    token = csrf_of(owner, "/admin/")
    response = owner.post("/admin/logout", data={"csrf_token": token},
                          headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    assert owner.get("/admin/").status_code == 200
    same = owner.post("/admin/logout", data={"csrf_token": token},
                      headers={"Origin": "http://localhost"})
    assert same.status_code == 302


def test_login_post_from_another_origin_is_refused(client, account):
    token = login_token(client)
    response = client.post("/admin/login", headers={"Origin": "https://evil.example"},
                           data={"csrf_token": token, "email": OWNER_EMAIL,
                                 "password": OWNER_PASSWORD})
    assert response.status_code == 403
    assert client.get("/admin/").status_code == 302


# --- cookies ------------------------------------------------------------------------------------

def set_cookie_headers(response) -> list[str]:
    return [value for name, value in response.headers if name.lower() == "set-cookie"]


def test_session_cookie_is_httponly_and_samesite_lax(client, account):
    response = login(client)
    cookies = [c for c in set_cookie_headers(response) if c.startswith("session=")]
    assert cookies
    for cookie in cookies:
        assert "HttpOnly" in cookie
        assert "SameSite=Lax" in cookie
        assert "Secure" not in cookie  # BASE_URL is http in the tests


def test_session_cookie_is_secure_when_the_base_url_is_https(make_app):
    app = make_app(BASE_URL="https://capture.example.com")
    with app.app_context():
        create_owner(OWNER_EMAIL, OWNER_PASSWORD)
    client = app.test_client()
    page = client.get("/admin/login", base_url="https://capture.example.com")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]*)"',
                      page.get_data(as_text=True)).group(1)
    response = client.post("/admin/login", base_url="https://capture.example.com",
                           headers={"Referer": "https://capture.example.com/admin/login"},
                           data={"csrf_token": token, "email": OWNER_EMAIL,
                                 "password": OWNER_PASSWORD})
    assert response.status_code == 302
    cookies = [c for c in set_cookie_headers(response) if c.startswith("session=")]
    assert cookies
    for cookie in cookies:
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


# --- flask owner create -------------------------------------------------------------------------

def owners(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(Owner.email).order_by(Owner.email)))


def test_owner_create_with_password_makes_a_working_login(app, runner, client):
    result = runner.invoke(args=["owner", "create", "Boss@Example.com",
                                 "--password", "a long enough password"])
    assert result.exit_code == 0, result.output
    assert "Owner boss@example.com created" in result.output
    assert "/admin/login" in result.output
    assert owners(app) == ["boss@example.com"]
    with app.app_context():
        stored = db.session.scalar(select(Owner.password_hash))
    assert "a long enough password" not in stored
    assert login(client, email="boss@example.com",
                 password="a long enough password").status_code == 302


def test_owner_create_prompts_for_the_password(app, runner):
    result = runner.invoke(args=["owner", "create", "boss@example.com"],
                           input="a long enough password\na long enough password\n")
    assert result.exit_code == 0, result.output
    assert owners(app) == ["boss@example.com"]


def test_owner_create_refuses_a_short_password(app, runner):
    result = runner.invoke(args=["owner", "create", "boss@example.com", "--password", "short"])
    assert result.exit_code == 1
    assert "Error: the password needs at least 10 characters" in result.output
    assert "Traceback" not in result.output
    assert owners(app) == []


def test_owner_create_refuses_a_duplicate(app, runner):
    args = ["owner", "create", "boss@example.com", "--password", "a long enough password"]
    assert runner.invoke(args=args).exit_code == 0
    result = runner.invoke(args=["owner", "create", "BOSS@example.com",
                                 "--password", "another long password"])
    assert result.exit_code == 1
    assert "Error: an owner boss@example.com exists already" in result.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Owner)) == 1


def test_owner_create_refuses_something_that_is_not_an_address(app, runner):
    result = runner.invoke(args=["owner", "create", "boss", "--password",
                                 "a long enough password"])
    assert result.exit_code == 1
    assert "is not an email address" in result.output
    assert owners(app) == []


def test_logout_ends_every_session_of_the_owner_even_a_copied_cookie(app, owner):
    """Sessions are signed cookies; log-out rotates the owner's session token."""
    copy = app.test_client()
    cookie = owner.get_cookie("session")
    copy.set_cookie("session", cookie.value)
    assert copy.get("/admin/").status_code == 200
    token = csrf_of(owner, "/admin/")
    assert owner.post("/admin/logout", data={"csrf_token": token}).status_code == 302
    assert copy.get("/admin/").status_code == 302
