"""The Broadcasts area: the list (empty state, drafts, states, progress), one broadcast's
page (audience, frozen content in a sandboxed frame, numbers), and the buttons: send
now, schedule, cancel, a test to an address, all CSRF-protected POSTs."""

import re
from pathlib import Path

import pytest
from sqlalchemy import select

from capture.db import db
from capture.models import Broadcast, Lead, Page
from tests.admin.conftest import owner_of
from tests.conftest import Outbox, csrf_of
from tests.factories import tick

NEWS = """---
subject: "News for {{ lead.first_name }}"
---
Hello, read [this](https://example.com/news).
"""


@pytest.fixture
def app(make_app, tmp_path):
    (tmp_path / "broadcasts").mkdir()
    return make_app(BROADCASTS_DIR=str(tmp_path / "broadcasts"), MAIL_BACKEND="outbox")


@pytest.fixture
def owner(app):
    return owner_of(app)


def write(app, name, text=NEWS):
    (Path(app.config["BROADCASTS_DIR"]) / f"{name}.md").write_text(text, encoding="utf-8")


def add_leads(app, *emails):
    with app.app_context():
        page = Page(slug="list", title="List", fields=[], rules={})
        db.session.add(page)
        db.session.flush()
        for email in emails:
            db.session.add(Lead(email=email, name="Ann", public_ref=f"r-{email}",
                                page_id=page.id, review="approved", subscription="subscribed"))
        db.session.commit()


def state(app, name):
    with app.app_context():
        return db.session.scalar(select(Broadcast.state).where(Broadcast.name == name))


def test_empty_list_says_how_to_write_one(owner):
    page = owner.get("/admin/broadcasts").get_data(as_text=True)
    assert "No broadcasts yet" in page and "broadcasts check" in page


def test_list_shows_a_draft_with_its_audience(app, owner):
    write(app, "news")
    add_leads(app, "a@example.com", "b@example.com")
    page = owner.get("/admin/broadcasts").get_data(as_text=True)
    row = re.search(r'<tr data-broadcast="news">.*?</tr>', page, re.S).group(0)
    assert 'data-state="draft"' in row
    assert ">2</td>" in row


def test_detail_shows_the_content_in_a_sandboxed_frame(app, owner):
    write(app, "news")
    response = owner.get("/admin/broadcasts/news")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert '<iframe class="email-frame" sandbox=""' in page
    assert "News for Jane" in page
    assert "default-src" in response.headers["Content-Security-Policy"]


def test_unknown_broadcast_is_404(owner):
    assert owner.get("/admin/broadcasts/nothing").status_code == 404


def test_send_now_freezes_and_the_scheduler_sends_it(app, owner, clock):
    write(app, "news")
    add_leads(app, "a@example.com")
    token = csrf_of(owner, "/admin/broadcasts/news")
    response = owner.post("/admin/broadcasts/news/send", data={"csrf_token": token},
                          follow_redirects=True)
    assert "content frozen" in response.get_data(as_text=True)
    assert state(app, "news") == "scheduled"
    tick(app)
    assert state(app, "news") == "sent"
    page = owner.get("/admin/broadcasts/news").get_data(as_text=True)
    assert 'data-state="sent"' in page and "1 sent" in page
    outbox = Outbox(Path(app.instance_path) / "outbox")
    assert [str(m["Subject"]) for m in outbox.messages()] == ["News for Ann"]


def test_schedule_then_cancel(app, owner, clock):
    write(app, "news")
    add_leads(app, "a@example.com")
    token = csrf_of(owner, "/admin/broadcasts/news")
    owner.post("/admin/broadcasts/news/send", data={"csrf_token": token,
                                                    "at": "2026-03-04T09:30"})
    with app.app_context():
        assert str(db.session.scalar(select(Broadcast.send_at))) == "2026-03-04 09:30:00"
    response = owner.post("/admin/broadcasts/news/cancel", data={"csrf_token": token},
                          follow_redirects=True)
    assert "news cancelled" in response.get_data(as_text=True)
    assert state(app, "news") == "cancelled"


def test_a_bad_file_cannot_be_sent_and_says_why(app, owner):
    write(app, "news", "---\nsubject: Hi\nsegment: {colour: red}\n---\nBody\n")
    page = owner.get("/admin/broadcasts/news").get_data(as_text=True)
    assert "news.md:3: segment.colour: unknown key" in page
    token = csrf_of(owner, "/admin/broadcasts/news")
    response = owner.post("/admin/broadcasts/news/send", data={"csrf_token": token},
                          follow_redirects=True)
    assert "Nothing was sent" in response.get_data(as_text=True)
    assert state(app, "news") is None


def test_test_email_goes_to_the_address_given(app, owner):
    write(app, "news")
    token = csrf_of(owner, "/admin/broadcasts/news")
    response = owner.post("/admin/broadcasts/news/test",
                          data={"csrf_token": token, "email": "me@example.com"},
                          follow_redirects=True)
    assert "Test email sent to me@example.com" in response.get_data(as_text=True)
    outbox = Outbox(Path(app.instance_path) / "outbox")
    assert [str(m["To"]) for m in outbox.messages()] == ["me@example.com"]
    assert state(app, "news") is None


def test_posts_without_csrf_are_refused(app, owner):
    write(app, "news")
    for action in ("send", "cancel", "test"):
        assert owner.post(f"/admin/broadcasts/news/{action}").status_code == 400
    assert state(app, "news") is None


def test_detail_shows_the_bounce_and_complaint_rates(app, owner, clock):
    from capture.models import Delivery, Event

    write(app, "news")
    add_leads(app, "a@example.com", "b@example.com")
    owner.post("/admin/broadcasts/news/send",
               data={"csrf_token": csrf_of(owner, "/admin/broadcasts/news")})
    tick(app)
    with app.app_context():
        delivery = db.session.scalars(select(Delivery).order_by(Delivery.id)).first()
        db.session.add(Event(lead_id=delivery.lead_id, kind="bounce", delivery_id=delivery.id,
                             machine=False, data={}))
        db.session.commit()
    page = owner.get("/admin/broadcasts/news").get_data(as_text=True)
    assert "<dt>Bounced</dt><dd>1 · 50.0%</dd>" in page
    assert "<dt>Complaints</dt><dd>0 · 0.0%</dd>" in page
