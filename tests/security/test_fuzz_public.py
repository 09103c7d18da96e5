"""Every public endpoint fuzzed: never a 500, never a traceback, nothing stored on
rejection."""

import re
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from capture.db import db
from capture.models import Event, Lead, Upgrade

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
text = st.text(max_size=300)
values = st.one_of(text, st.text(min_size=1000, max_size=5000), st.binary(max_size=200))
form_fields = st.dictionaries(
    st.sampled_from(["email", "name", "consent", "website", "started", "csrf_token",
                     "utm_source", "country", "x" * 300, "email[]", "\x00"]),
    values, max_size=8,
)


def no_traceback(response):
    body = response.get_data(as_text=True)
    assert response.status_code < 500, body[:300]
    assert "Traceback" not in body and "File \"" not in body


def count(app, model):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def csrf_off_app(make_app):
    """CSRF off, so the fuzzing reaches the form validation behind it."""
    from capture.pages import demo

    app = make_app(WTF_CSRF_ENABLED=False)
    with app.app_context():
        demo.install()
    return app


@FUZZ
@given(fields=form_fields)
def test_optin_with_any_fields_never_fails_and_stores_only_valid_leads(csrf_off_app, fields):
    client = csrf_off_app.test_client()
    before = count(csrf_off_app, Lead)
    response = client.post("/p/demo", data=fields)
    no_traceback(response)
    if response.status_code != 303:
        assert count(csrf_off_app, Lead) == before


@FUZZ
@given(body=st.binary(max_size=2000), content_type=st.sampled_from([
    "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
    "multipart/form-data", "application/json", "text/plain", "application/xml", "",
    "application/x-www-form-urlencoded; charset=utf-16"]))
def test_optin_with_any_raw_body_never_fails(csrf_off_app, body, content_type):
    response = csrf_off_app.test_client().post("/p/demo", data=body,
                                                content_type=content_type)
    no_traceback(response)
    assert count(csrf_off_app, Lead) == 0


def test_invalid_utf8_and_repeated_keys_are_refused_cleanly(csrf_off_app):
    client = csrf_off_app.test_client()
    response = client.post("/p/demo", data=b"email=%ff%fe%fd&name=\xff\xfe&consent=y",
                           content_type="application/x-www-form-urlencoded")
    no_traceback(response)
    response = client.post("/p/demo", data="email=a@example.com&email=b@example.com&consent=y",
                           content_type="application/x-www-form-urlencoded")
    no_traceback(response)
    assert count(csrf_off_app, Lead) <= 1


def test_oversized_body_is_413(csrf_off_app):
    response = csrf_off_app.test_client().post("/p/demo", data={"name": "x" * 70_000})
    assert response.status_code == 413
    assert count(csrf_off_app, Lead) == 0


header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=300)


@FUZZ
@given(params=st.dictionaries(st.sampled_from(["utm_source", "utm_medium", "utm_campaign",
                                                "utm_content", "utm_term", "ref", "from",
                                                "utm_source[]", "x" * 300]),
                              st.one_of(text, st.text(min_size=1000, max_size=3000)),
                              max_size=6),
       referrer=header_text, agent=header_text)
def test_page_view_with_any_query_referrer_and_agent_never_fails(csrf_off_app, params,
                                                                 referrer, agent):
    client = csrf_off_app.test_client()
    headers = {"Referer": referrer, "User-Agent": agent}
    page = client.get("/p/demo", query_string=params, headers=headers)
    no_traceback(page)
    assert page.status_code == 200
    no_traceback(client.get("/p/demo/thanks", query_string=params, headers=headers))


@FUZZ
@given(token=st.text(min_size=1, max_size=600).filter(lambda t: "/" not in t and "\x00" not in t))
def test_tokens_in_urls_never_fail_and_change_nothing(app, token):
    client = app.test_client()
    token = quote(token, safe="")
    for path in ("/confirm/", "/u/", "/c/"):
        response = client.get(path + token)
        no_traceback(response)
        assert response.status_code in (404, 405) or response.status_code < 400
    response = client.post("/u/" + token)
    no_traceback(response)
    pixel = client.get("/o/" + token)
    assert pixel.status_code == 200 and pixel.headers["Content-Type"] == "image/gif"
    assert count(app, Event) == 0


@FUZZ
@given(params=st.dictionaries(st.sampled_from(["lead", "amount", "currency", "txn", "sig",
                                                "extra"]), text, max_size=6))
def test_postback_with_any_parameters_never_fails_and_records_nothing(app, params):
    client = app.test_client()
    for response in (client.get("/postback/upgrade", query_string=params),
                     client.post("/postback/upgrade", data=params)):
        no_traceback(response)
        assert response.status_code in (400, 403, 404)
        assert response.is_json
    assert count(app, Upgrade) == 0


@pytest.mark.parametrize("path", [
    "/p/", "/p/%00", "/p/" + "a" * 5000, "/p/demo/thanks/extra", "/confirm/",
    "/admin/../p/demo", "/static/../config.py", "/p/demo?utm_source=%ff%fe",
])
def test_odd_paths_get_a_clean_answer(app, demo_page, path):
    response = app.test_client().get(path)
    no_traceback(response)
    assert not re.search(r"SECRET|secret_key", response.get_data(as_text=True))


@pytest.mark.parametrize(("method", "path", "data"), [
    ("get", "/p/%00", None),
    ("get", "/p/demo/thanks?utm_source=a%00b", None),
    ("get", "/c/abc%00def", None),
    ("post", "/postback/upgrade", {"lead": "x\x00", "amount": "1", "currency": "USD",
                                    "txn": "t", "sig": "0"}),
    ("post", "/p/demo", {"email": "a@example.com", "name": "A\x00B", "consent": "y"}),
    ("get", "/admin/leads?q=%00", None),
])
def test_nul_bytes_are_refused_before_any_query(csrf_off_app, method, path, data):
    client = csrf_off_app.test_client()
    response = getattr(client, method)(path, data=data)
    assert response.status_code == 400
    no_traceback(response)
    assert count(csrf_off_app, Lead) == 0
