"""GET /api/v1/broadcasts and /api/v1/broadcasts/<name>: state, audience and numbers."""

import pytest

from capture.db import db
from capture.models import Lead, Page
from tests.api.conftest import ApiClient, new_token
from tests.factories import tick


@pytest.fixture
def app(make_app, tmp_path):
    (tmp_path / "broadcasts").mkdir()
    app = make_app(BROADCASTS_DIR=str(tmp_path / "broadcasts"), MAIL_BACKEND="outbox")
    (tmp_path / "broadcasts" / "news.md").write_text(
        "---\nsubject: News\n---\nHello.\n", encoding="utf-8")
    with app.app_context():
        page = Page(slug="list", title="List", fields=[], rules={})
        db.session.add(page)
        db.session.flush()
        db.session.add(Lead(email="a@example.com", public_ref="ra", page_id=page.id,
                            review="approved", subscription="subscribed"))
        db.session.commit()
    return app


@pytest.fixture
def api(app):
    return ApiClient(app.test_client(), new_token(app))


def test_a_draft_has_its_audience_and_zero_numbers(api):
    answer = api.get("/broadcasts").get_json()
    assert [b["name"] for b in answer["broadcasts"]] == ["news"]
    news = answer["broadcasts"][0]
    assert news["state"] == "draft" and news["audience"] == 1 and news["send_at"] is None
    assert news["numbers"]["delivered"] == 0 and news["numbers"]["revenue"] == "0.00"


def test_a_sent_broadcast_has_its_numbers(app, api, clock):
    assert app.test_cli_runner().invoke(args=["broadcasts", "send", "news"]).exit_code == 0
    tick(app)
    news = api.get("/broadcasts/news").get_json()
    assert news["state"] == "sent"
    assert news["started_at"] == "2026-03-02T10:00:00Z"
    assert news["numbers"]["recipients"] == 1 and news["numbers"]["delivered"] == 1
    assert news["file_differs"] is False


def test_unknown_name_is_404_in_the_api_shape(api):
    response = api.get("/broadcasts/nothing")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_unknown_parameters_are_refused(api):
    response = api.get("/broadcasts?state=sent")
    assert response.status_code == 400
    assert "state" in response.get_json()["error"]["fields"]
