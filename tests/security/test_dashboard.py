"""Every dashboard route against a forged session, a missing or wrong CSRF token and
a cross-site Origin: refused, and nothing changes."""

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from capture.db import db
from capture.models import Lead, Owner, Page
from tests.conftest import admin_urls, create_page, csrf_of

# Rows a dashboard action could create, change or delete.
WATCHED = (Lead, Page, Owner)


def snapshot(app) -> dict:
    with app.app_context():
        return {model.__tablename__: sorted(map(tuple, db.session.execute(
            sa.select(*model.__table__.columns)).all()), key=repr) for model in WATCHED}


def forged_cookie(secret: str, data: dict) -> str:
    """A session cookie as Flask writes it, signed with `secret`."""
    signer = Flask("forger")
    signer.secret_key = secret
    return SecureCookieSessionInterface().get_signing_serializer(signer).dumps(data)


@pytest.fixture
def seeded(app, owner):
    """An owner logged in, a page and a lead, so actions have something to act on."""
    create_page(app, slug="offer")
    with app.app_context():
        page = db.session.scalar(sa.select(Page))
        db.session.add(Lead(email="lead@example.com", public_ref="r1", page_id=page.id,
                            review="pending", subscription="subscribed"))
        db.session.commit()
    return owner


def owner_session(app) -> dict:
    with app.app_context():
        owner = db.session.scalar(sa.select(Owner))
        return {"_user_id": f"{owner.id}.{owner.session_token}", "_fresh": True}


@pytest.mark.parametrize("forge", ["other secret", "right secret, wrong token",
                                   "right secret, no token"])
def test_every_admin_url_with_a_forged_session_goes_to_login(app, seeded, forge):
    real = owner_session(app)
    owner_id = real["_user_id"].split(".")[0]
    data = {"other secret": real,
            "right secret, wrong token": {**real, "_user_id": f"{owner_id}.forged"},
            "right secret, no token": {**real, "_user_id": owner_id}}[forge]
    secret = "not-the-secret" if forge == "other secret" else app.config["SECRET_KEY"]
    client = app.test_client()
    client.set_cookie("session", forged_cookie(secret, data))
    before = snapshot(app)
    for endpoint, method, url in admin_urls(app):
        response = client.open(url, method=method)
        assert response.status_code in (302, 400), (endpoint, method, response.status_code)
        if response.status_code == 302:
            assert response.headers["Location"].startswith("/admin/login"), endpoint
    assert snapshot(app) == before


def test_every_admin_post_without_a_csrf_token_is_refused(app, seeded):
    before = snapshot(app)
    posts = [(e, url) for e, method, url in admin_urls(app) if method == "POST"]
    assert len(posts) > 10
    for endpoint, url in posts:
        response = seeded.post(url, data={"reason": "x", "ids": "1"})
        assert response.status_code == 400, (endpoint, response.status_code)
        assert "Traceback" not in response.get_data(as_text=True)
    assert snapshot(app) == before
    assert seeded.get("/admin/").status_code == 200  # still logged in


def test_every_admin_post_with_another_sessions_csrf_token_is_refused(app, seeded):
    stranger = app.test_client()
    token = csrf_of(stranger, "/admin/login")
    before = snapshot(app)
    for endpoint, method, url in admin_urls(app):
        if method == "POST":
            response = seeded.post(url, data={"csrf_token": token, "reason": "x"})
            assert response.status_code == 400, (endpoint, response.status_code)
    assert snapshot(app) == before
    assert seeded.get("/admin/").status_code == 200


@pytest.mark.parametrize("origin", ["https://evil.example", "http://localhost.evil.example"])
def test_every_admin_post_from_another_origin_is_refused(app, seeded, origin):
    token = csrf_of(seeded, "/admin/")
    before = snapshot(app)
    for endpoint, method, url in admin_urls(app):
        if method == "POST":
            response = seeded.post(url, data={"csrf_token": token, "reason": "x"},
                                   headers={"Origin": origin})
            assert response.status_code == 403, (endpoint, response.status_code)
    assert snapshot(app) == before
    assert seeded.get("/admin/").status_code == 200
