"""The Deliveries area: emails in unknown, failed or retry, and resending one on
purpose: it goes out once on the next tick, never moving the lead's place back."""

import re

import pytest
from sqlalchemy import select

from capture.leads import lifecycle as leads
from capture.mail import backends as mail
from capture.mail import actions
from capture.db import db
from capture.models import Delivery, Enrollment, Event, Lead
from tests.admin.conftest import owner_of
from tests.conftest import csrf_of
from tests.factories import add_lead, deliveries, subjects, three_steps, tick


def place(app, lead_id):
    """Where the lead stands in its sequence."""
    with app.app_context():
        enrollment = db.session.scalar(select(Enrollment).where(Enrollment.lead_id == lead_id))
        return (enrollment.state, enrollment.last_step, enrollment.last_filename,
                enrollment.last_sent_at, enrollment.next_due_at)


def delivery_id(app, lead_id, step):
    with app.app_context():
        return db.session.scalar(select(Delivery.id).where(Delivery.lead_id == lead_id,
                                                           Delivery.step == step))


def resend(client, delivery, token=None):
    token = token or csrf_of(client, "/admin/deliveries")
    return client.post(f"/admin/deliveries/{delivery}/resend", data={"csrf_token": token},
                       follow_redirects=True)


def make_unknown(app, clock, monkeypatch, **lead):
    """A lead whose first email was handed to SMTP by a sender that then died."""
    three_steps(app)
    lead_id = add_lead(app, **lead)

    class Crash(BaseException):
        """The process dies mid-send."""

    def die(self, message, then=None):
        raise Crash()

    monkeypatch.setattr(mail.SmtpBackend, "send", die)
    with pytest.raises(Crash):
        tick(app)
    monkeypatch.setattr(mail.SmtpBackend, "send", _original_send)
    clock.advance(minutes=11)
    assert tick(app).unknown == 1
    return lead_id


_original_send = mail.SmtpBackend.send


# --- access -----------------------------------------------------------------------------

def test_page_renders_for_the_owner_and_redirects_anonymous_visitors(app, owner, client):
    page = owner.get("/admin/deliveries")
    assert page.status_code == 200
    assert "Nothing to look at" in page.get_data(as_text=True)
    response = client.get("/admin/deliveries")
    assert response.status_code == 302 and "/admin/login" in response.headers["Location"]


def test_resend_without_csrf_token_is_refused(smtp_app, smtp, clock):
    three_steps(smtp_app)
    lead_id = add_lead(smtp_app)
    smtp.data_replies = ["554 5.6.0 message rejected"]
    tick(smtp_app)
    owner = owner_of(smtp_app)
    response = owner.post(f"/admin/deliveries/{delivery_id(smtp_app, lead_id, 'welcome')}/resend")
    assert response.status_code == 400
    assert deliveries(smtp_app, lead_id) == [("welcome", "failed")]


def test_resend_of_a_missing_delivery_is_404(app, owner):
    token = csrf_of(owner, "/admin/deliveries")
    assert owner.post("/admin/deliveries/999/resend",
                      data={"csrf_token": token}).status_code == 404


# --- the list ---------------------------------------------------------------------------

def test_unknown_failed_and_retrying_emails_are_listed_with_their_error(
    smtp_app, smtp, clock, monkeypatch
):
    unknown = make_unknown(smtp_app, clock, monkeypatch, email="u@example.com",
                           name="<script>alert(1)</script>")
    smtp.data_replies = ["554 5.6.0 message rejected", "451 4.3.0 try again later"]
    failed = add_lead(smtp_app, email="f@example.com")
    retrying = add_lead(smtp_app, email="r@example.com")
    tick(smtp_app)
    fine = add_lead(smtp_app, email="ok@example.com")
    tick(smtp_app)
    assert deliveries(smtp_app, fine) == [("welcome", "sent")]

    owner = owner_of(smtp_app)
    page = owner.get("/admin/deliveries").get_data(as_text=True)
    rows = re.findall(r'<tr data-delivery="(\d+)">(.*?)</tr>', page, re.S)
    shown = {int(number): row for number, row in rows}
    assert list(shown) == [delivery_id(smtp_app, lead, "welcome")
                           for lead in (unknown, failed, retrying)]
    unknown_row, failed_row, retry_row = shown.values()
    assert "no outcome recorded: the sender stopped while sending" in unknown_row
    assert f'href="/admin/leads/{unknown}"' in unknown_row
    assert "554" in failed_row and "message rejected" in failed_row
    assert "waiting to retry" in retry_row and "451" in retry_row
    assert "ok@example.com" not in page
    assert "may or may not have been sent" in page
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page

    only_failed = owner.get("/admin/deliveries?status=failed").get_data(as_text=True)
    assert re.findall(r'<tr data-delivery="(\d+)">', only_failed) == [
        str(delivery_id(smtp_app, failed, "welcome"))]


def test_list_is_paginated(app, owner):
    with app.app_context():
        for number in range(53):
            lead = Lead(email=f"p{number}@example.com", public_ref=f"p{number}")
            db.session.add(lead)
            db.session.flush()
            db.session.add(Delivery(lead_id=lead.id, sequence="welcome", step="welcome",
                                    filename="01-welcome.md", status="failed",
                                    error=f"error {number}"))
        db.session.commit()
    first = owner.get("/admin/deliveries").get_data(as_text=True)
    second = owner.get("/admin/deliveries?page=2").get_data(as_text=True)
    assert len(re.findall(r"<tr data-delivery=", first)) == 50
    assert len(re.findall(r"<tr data-delivery=", second)) == 3
    assert "Page 2 of 2" in second
    assert 'href="/admin/deliveries?page=2"' in first
    failed = owner.get("/admin/deliveries?status=failed").get_data(as_text=True)
    assert 'href="/admin/deliveries?page=2&amp;status=failed"' in failed
    assert owner.get("/admin/deliveries?page=9").status_code == 302


# --- resend -----------------------------------------------------------------------------

def test_resend_of_an_unknown_email_goes_out_once_and_keeps_the_schedule(
    smtp_app, smtp, clock, monkeypatch
):
    lead_id = make_unknown(smtp_app, clock, monkeypatch)
    before = place(smtp_app, lead_id)
    assert before[:3] == ("active", "welcome", "01-welcome.md")
    owner = owner_of(smtp_app)
    page = resend(owner, delivery_id(smtp_app, lead_id, "welcome")).get_data(as_text=True)
    assert "is queued: it goes out on the next scheduler run" in page
    assert deliveries(smtp_app, lead_id) == [("welcome", "retry")]
    assert smtp.messages == []

    assert tick(smtp_app).sent == 1
    assert subjects(smtp) == ["Welcome, Ann"]
    assert deliveries(smtp_app, lead_id) == [("welcome", "sent")]
    assert place(smtp_app, lead_id) == before
    tick(smtp_app)
    assert subjects(smtp) == ["Welcome, Ann"]
    with smtp_app.app_context():
        delivery = db.session.scalar(select(Delivery))
        assert delivery.attempts == 2 and delivery.error == ""
        event = db.session.scalar(select(Event).where(Event.kind == "resend"))
        assert event.delivery_id == delivery.id
        assert event.data["previous"] == "unknown"
    # The next step keeps its time (two days after the first attempt).
    clock.advance(days=2)
    tick(smtp_app)
    assert subjects(smtp) == ["Welcome, Ann", "Three tips"]


def test_resend_of_an_earlier_email_never_moves_the_lead_back(smtp_app, smtp, clock):
    three_steps(smtp_app)
    lead_id = add_lead(smtp_app)
    smtp.data_replies = ["554 5.6.0 message rejected"]
    tick(smtp_app)
    clock.advance(days=2)
    tick(smtp_app)
    assert deliveries(smtp_app, lead_id) == [("welcome", "failed"), ("tips", "sent")]
    before = place(smtp_app, lead_id)
    assert before[1] == "tips"

    owner = owner_of(smtp_app)
    resend(owner, delivery_id(smtp_app, lead_id, "welcome"))
    clock.advance(hours=1)
    assert tick(smtp_app).sent == 1
    assert place(smtp_app, lead_id) == before
    for _ in range(3):
        clock.advance(days=3)
        tick(smtp_app)
    assert subjects(smtp) == ["Three tips", "Welcome, Ann", "An offer"]
    assert deliveries(smtp_app, lead_id) == [("welcome", "sent"), ("tips", "sent"),
                                             ("offer", "sent")]


def test_resend_is_refused_for_an_unsubscribed_lead(smtp_app, smtp, clock):
    three_steps(smtp_app)
    lead_id = add_lead(smtp_app)
    smtp.data_replies = ["554 5.6.0 message rejected"]
    tick(smtp_app)
    with smtp_app.app_context():
        leads.unsubscribe(db.session.get(Lead, lead_id), source="test")
    owner = owner_of(smtp_app)
    page = resend(owner, delivery_id(smtp_app, lead_id, "welcome")).get_data(as_text=True)
    assert "Not resent: ann@example.com unsubscribed" in page
    assert deliveries(smtp_app, lead_id) == [("welcome", "failed")]
    tick(smtp_app)
    assert smtp.messages == []


def test_resend_is_refused_for_sent_bounced_and_rejected(smtp_app, smtp, clock):
    three_steps(smtp_app)
    sent = add_lead(smtp_app, email="s@example.com")
    bounced = add_lead(smtp_app, email="b@example.com")
    smtp.refuse.add("b@example.com")
    tick(smtp_app)
    with smtp_app.app_context():
        def refusal(lead_id):
            delivery = db.session.scalar(select(Delivery).where(Delivery.lead_id == lead_id))
            with pytest.raises(ValueError) as error:
                actions.resend(delivery)
            return str(error.value)

        assert "already sent" in refusal(sent)
        assert "bounced" in refusal(bounced)
        lead = db.session.get(Lead, sent)
        db.session.scalar(select(Delivery).where(Delivery.lead_id == sent)).status = "failed"
        leads.reject(lead, "fake")
        assert "rejected in review" in refusal(sent)
        assert db.session.scalar(select(Event.id).where(Event.kind == "resend")) is None


def test_a_resend_that_crashes_again_stays_unknown_without_moving_the_lead(
    smtp_app, smtp, clock, monkeypatch
):
    lead_id = make_unknown(smtp_app, clock, monkeypatch)
    clock.advance(days=2)
    tick(smtp_app)
    before = place(smtp_app, lead_id)
    assert before[1] == "tips"
    owner = owner_of(smtp_app)
    resend(owner, delivery_id(smtp_app, lead_id, "welcome"))

    class Crash(BaseException):
        """The process dies mid-send again."""

    def die(self, message, then=None):
        raise Crash()

    monkeypatch.setattr(mail.SmtpBackend, "send", die)
    with pytest.raises(Crash):
        tick(smtp_app)
    monkeypatch.setattr(mail.SmtpBackend, "send", _original_send)
    clock.advance(minutes=11)
    tick(smtp_app)
    assert deliveries(smtp_app, lead_id)[0] == ("welcome", "unknown")
    assert place(smtp_app, lead_id) == before


def test_resend_of_a_waiting_retry_sends_it_now_and_the_lead_moves_on(smtp_app, smtp, clock):
    three_steps(smtp_app)
    lead_id = add_lead(smtp_app)
    smtp.data_replies = ["451 4.3.0 try again later"]
    tick(smtp_app)
    assert deliveries(smtp_app, lead_id) == [("welcome", "retry")]
    owner = owner_of(smtp_app)
    resend(owner, delivery_id(smtp_app, lead_id, "welcome"))
    assert tick(smtp_app).sent == 1  # at once, not after the back-off
    state, last_step, _, last_sent_at, next_due_at = place(smtp_app, lead_id)
    assert (state, last_step, last_sent_at) == ("active", "welcome", clock.now)
    assert next_due_at == clock.now.replace(day=4)
    clock.advance(days=2)
    tick(smtp_app)
    assert subjects(smtp) == ["Welcome, Ann", "Three tips"]
