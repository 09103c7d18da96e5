"""The unsubscribe page's choices: a sequence's email offers "Unsubscribe from
everything" (the default) and "Only stop these emails"; leaving one sequence keeps
every other email coming and is no unsubscribe; the one-click POST always
unsubscribes from everything; opening the page changes nothing."""

import re
from pathlib import Path

import pytest
from sqlalchemy import select

from capture import clock as app_clock
from capture import links
from capture.db import db
from capture.leads import lifecycle
from capture.models import Delivery, Enrollment, Event, Lead
from capture.numbers import metrics, sequence_steps
from tests.conftest import form_tokens
from tests.factories import add_lead, sequence_folder, tick, write_step

BASE = "http://127.0.0.1:5000"
SCANNER = "Mozilla/5.0 (compatible; Microsoft Office/16.0; Safe Links)"


@pytest.fixture
def app(make_app, smtp, tmp_path):
    """Sends through the test SMTP server; sequences and broadcasts in tmp folders."""
    (tmp_path / "sequences").mkdir()
    (tmp_path / "broadcasts").mkdir()
    return make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port,
                    SEQUENCES_DIR=str(tmp_path / "sequences"),
                    BROADCASTS_DIR=str(tmp_path / "broadcasts"),
                    POSTAL_ADDRESS="1 Main St, Springfield")


@pytest.fixture
def ann(app, smtp, clock):
    """Ann, in the sequences `course` (the page's) and `news`, each of which has sent
    her its first step; the second steps are due a day later."""
    for name, first in (("course", "Hi"), ("news", "News one")):
        write_step(sequence_folder(app, name), "01-first.md", first, "Hello.", delay=0)
        write_step(sequence_folder(app, name), "02-second.md", f"{first} again", "More.",
                   delay="1d")
    lead_id = add_lead(app)
    with app.app_context():
        now = app_clock.utcnow()
        db.session.add(Enrollment(lead_id=lead_id, sequence="news", started_at=now,
                                  state="active", next_due_at=now))
        db.session.commit()
    tick(app)
    clock.advance(minutes=5)
    assert sorted(str(m["Subject"]) for m in smtp.messages) == ["Hi", "News one"]
    return lead_id


def unsubscribe_path(message) -> str:
    return re.search(rf"<{BASE}(/u/\S+)>", message["List-Unsubscribe"]).group(1)


def email(smtp, subject: str):
    [message] = [m for m in smtp.messages if str(m["Subject"]) == subject]
    return message


def state(app, lead_id):
    """The lead's subscription and each sequence's (state, stop reason)."""
    with app.app_context():
        lead = db.session.get(Lead, lead_id)
        enrollments = db.session.execute(
            select(Enrollment.sequence, Enrollment.state, Enrollment.stop_reason)
            .where(Enrollment.lead_id == lead_id)).all()
        return lead.subscription, {sequence: (s, why) for sequence, s, why in enrollments}


def events(app, lead_id, *kinds):
    with app.app_context():
        return db.session.execute(
            select(Event.kind, Event.delivery_id, Event.data)
            .where(Event.lead_id == lead_id, Event.kind.in_(kinds)).order_by(Event.id)).all()


def buttons(page: str) -> list[tuple[str, str]]:
    """(choice, label) of each button of the page, in order."""
    return re.findall(r'<button type="submit" name="choice" value="(\w+)"[^>]*>([^<]+)</button>',
                      page)


def leave(client, path):
    """Press "Only stop …" on the page, as a browser would (with the page's token)."""
    fields = form_tokens(client.get(path).get_data(as_text=True))
    return client.post(path, data={**fields, "choice": "sequence"})


# --- the page -------------------------------------------------------------------------


def test_a_sequence_email_offers_everything_first_and_this_sequence_second(app, smtp, ann):
    response = app.test_client().get(unsubscribe_path(email(smtp, "Hi")))
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "private, no-store"
    page = response.get_data(as_text=True)
    assert buttons(page) == [("everything", "Unsubscribe from everything"),
                             ("sequence", "Only stop the “course” emails")]
    assert 'class="button"' in page and 'class="button secondary"' in page
    assert page.count("<form") == 1 and 'name="csrf_token"' in page
    assert "Stop all emails from this list to <strong>ann@example.com</strong>." in page


def test_a_broadcast_email_offers_only_unsubscribing_from_everything(app, smtp, ann):
    Path(app.config["BROADCASTS_DIR"], "sale.md").write_text(
        "---\nsubject: The sale\n---\nHello.\n", encoding="utf-8")
    assert app.test_cli_runner().invoke(args=["broadcasts", "send", "sale"]).exit_code == 0
    tick(app)
    page = app.test_client().get(unsubscribe_path(email(smtp, "The sale"))).get_data(
        as_text=True)
    assert buttons(page) == [("everything", "Unsubscribe from everything")]


def test_a_link_naming_no_email_offers_only_unsubscribing_from_everything(app, ann):
    with app.test_request_context():
        path = links.unsubscribe_url("ref-ann").removeprefix(BASE)
    page = app.test_client().get(path).get_data(as_text=True)
    assert buttons(page) == [("everything", "Unsubscribe from everything")]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_opening_the_page_changes_nothing(app, smtp, ann, method):
    before = state(app, ann)
    response = app.test_client().open(unsubscribe_path(email(smtp, "Hi")), method=method,
                                      headers={"User-Agent": SCANNER})
    assert response.status_code == 200
    assert state(app, ann) == before == (
        "subscribed", {"course": ("active", ""), "news": ("active", "")})
    assert events(app, ann, "leave", "unsubscribe") == []


# --- leaving one sequence -------------------------------------------------------------


def test_leaving_a_sequence_stops_only_it_and_every_other_email_still_comes(
        app, smtp, clock, ann):
    client = app.test_client()
    hi = email(smtp, "Hi")
    response = leave(client, unsubscribe_path(hi))
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "You've left the “course” emails" in page
    assert buttons(page) == [("everything", "Unsubscribe from everything")]
    assert state(app, ann) == ("subscribed", {"course": ("stopped", "left by the lead"),
                                              "news": ("active", "")})
    with app.app_context():
        hi_id = db.session.scalar(select(Delivery.id).where(Delivery.subject == "Hi"))
    assert events(app, ann, "leave", "unsubscribe") == [
        ("leave", hi_id, {"sequence": "course", "source": "page"})]

    clock.advance(days=1, minutes=1)
    tick(app)
    Path(app.config["BROADCASTS_DIR"], "sale.md").write_text(
        "---\nsubject: The sale\n---\nHello.\n", encoding="utf-8")
    assert app.test_cli_runner().invoke(args=["broadcasts", "send", "sale"]).exit_code == 0
    tick(app)
    assert sorted(str(m["Subject"]) for m in smtp.messages) == [
        "Hi", "News one", "News one again", "The sale"]


def test_leaving_is_no_unsubscribe_in_the_numbers(app, smtp, ann):
    leave(app.test_client(), unsubscribe_path(email(smtp, "Hi")))
    with app.app_context():
        rows = {(row.sequence, row.step): row for row in sequence_steps.steps()}
        assert rows[("course", "first")].unsubscribed == 0
        assert metrics.report().total.unsubscribes == 0


def test_leaving_twice_records_it_once_and_the_page_then_says_so(app, smtp, ann):
    client = app.test_client()
    path = unsubscribe_path(email(smtp, "Hi"))
    leave(client, path)
    again = leave(client, path)
    assert again.status_code == 200
    page = again.get_data(as_text=True)
    assert "You have already left the “course” emails." in page
    assert buttons(page) == [("everything", "Unsubscribe from everything")]
    assert len(events(app, ann, "leave")) == 1


def test_leaving_without_the_pages_token_changes_nothing_and_asks_again(app, smtp, ann):
    client = app.test_client(use_cookies=False)
    response = client.post(unsubscribe_path(email(smtp, "Hi")), data={"choice": "sequence"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "Please choose again." in page
    assert ("sequence", "Only stop the “course” emails") in buttons(page)
    assert state(app, ann)[1]["course"] == ("active", "")
    assert events(app, ann, "leave", "unsubscribe") == []


def test_leaving_after_unsubscribing_changes_nothing(app, smtp, ann):
    client = app.test_client()
    path = unsubscribe_path(email(smtp, "Hi"))
    fields = form_tokens(client.get(path).get_data(as_text=True))
    client.post(path, data={**fields, "choice": "everything"})
    response = client.post(path, data={**fields, "choice": "sequence"})
    assert response.status_code == 200
    assert "You're already unsubscribed" in response.get_data(as_text=True)
    assert state(app, ann)[1]["course"] == ("stopped", "unsubscribed")
    assert events(app, ann, "leave") == []


# --- unsubscribing from everything ----------------------------------------------------


def test_the_default_button_unsubscribes_from_everything(app, smtp, ann):
    client = app.test_client()
    path = unsubscribe_path(email(smtp, "Hi"))
    fields = form_tokens(client.get(path).get_data(as_text=True))
    response = client.post(path, data={**fields, "choice": "everything"})
    assert response.status_code == 200
    assert "You're unsubscribed" in response.get_data(as_text=True)
    assert state(app, ann) == ("unsubscribed", {"course": ("stopped", "unsubscribed"),
                                                "news": ("stopped", "unsubscribed")})
    [(_, _, data)] = events(app, ann, "unsubscribe")
    assert data == {"source": "page"}


@pytest.mark.parametrize("extra", [{}, {"choice": "sequence"}])
def test_one_click_post_unsubscribes_from_everything(app, smtp, ann, extra):
    client = app.test_client(use_cookies=False)
    for _ in range(2):
        response = client.post(unsubscribe_path(email(smtp, "Hi")),
                               data={"List-Unsubscribe": "One-Click", **extra})
        assert response.status_code == 200
    assert state(app, ann) == ("unsubscribed", {"course": ("stopped", "unsubscribed"),
                                                "news": ("stopped", "unsubscribed")})
    assert [data for _, _, data in events(app, ann, "unsubscribe", "leave")] == [
        {"source": "one-click"}]


def test_an_unsubscribed_lead_is_told_so_without_a_button(app, smtp, ann):
    with app.app_context():
        lifecycle.unsubscribe(db.session.get(Lead, ann), source="owner")
    page = app.test_client().get(unsubscribe_path(email(smtp, "Hi"))).get_data(as_text=True)
    assert "You're already unsubscribed" in page
    assert "<button" not in page


@pytest.mark.parametrize("choice", ["sequence", "everything"])
def test_a_forged_token_is_404_whatever_the_choice(app, smtp, ann, choice):
    path = unsubscribe_path(email(smtp, "Hi"))
    client = app.test_client()
    for bad in (path[:-2], path + "A", "/u/preview"):
        assert client.get(bad).status_code == 404
        assert client.post(bad, data={"choice": choice}).status_code == 404
    assert state(app, ann)[0] == "subscribed"
    assert events(app, ann, "leave", "unsubscribe") == []


# --- the owner's view -------------------------------------------------------------------


def test_the_lead_page_shows_the_sequence_left_and_why(app, smtp, ann, owner):
    leave(app.test_client(), unsubscribe_path(email(smtp, "Hi")))
    page = owner.get(f"/admin/leads/{ann}").get_data(as_text=True)
    assert re.search(r"Left the sequence <strong>course</strong>\s*"
                     r'<span class="muted">\(from the email “Hi”\)</span>', page), page
    assert "<td>left by the lead</td>" in page


def test_an_email_waiting_for_its_retry_is_not_sent_after_the_lead_left(smtp_app, smtp, clock):
    from tests.factories import subjects, three_steps

    three_steps(smtp_app)
    lead_id = add_lead(smtp_app)
    smtp.data_replies.append("451 try again later")
    tick(smtp_app)
    with smtp_app.app_context():
        delivery = db.session.scalar(select(Delivery))
        assert delivery.status == "retry"
        lifecycle.leave_sequence(db.session.get(Lead, lead_id), delivery.id)
    clock.advance(hours=2)
    tick(smtp_app)
    assert subjects(smtp) == []
    with smtp_app.app_context():
        delivery = db.session.scalar(select(Delivery))
        assert (delivery.status, delivery.error) == ("failed", "not sent: left by the lead")
