"""Broadcasts against a real SMTP server: files and their problems, the commands, and
the sending (exactly once to the subscribed, unsuppressed members; priority and the
shared rate cap; a crash between claim and send; cancel; frozen content)."""

from pathlib import Path

import pytest
from sqlalchemy import func, select

from capture.db import db
from capture.leads import lifecycle
from capture.mail import broadcast_sending
from capture.numbers import broadcasts as broadcast_numbers
from capture.models import Broadcast, Delivery, Event, Lead, LeadTag, Page, Suppression
from tests.factories import add_lead, sequence_folder, subjects, tick, write_step

OFFER = """---
subject: "Spring sale, {{ lead.first_name }}"
preheader: Two days only
segment:
  tags:
    any: [buyer]
---
Hi {{ lead.first_name }}, the [sale](https://shop.example.com/sale) is on.
"""


@pytest.fixture
def app(make_app, smtp, tmp_path):
    """Sends through the test SMTP server; sequences and broadcasts in tmp folders."""
    (tmp_path / "sequences").mkdir()
    (tmp_path / "broadcasts").mkdir()
    return make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port,
                    SEQUENCES_DIR=str(tmp_path / "sequences"),
                    BROADCASTS_DIR=str(tmp_path / "broadcasts"),
                    POSTAL_ADDRESS="1 Main St, Springfield")


def write_broadcast(app, name: str, text: str) -> Path:
    path = Path(app.config["BROADCASTS_DIR"]) / f"{name}.md"
    path.write_text(text, encoding="utf-8")
    return path


def lead(app, email, *, tags=(), subscription="subscribed", review="approved") -> int:
    """A lead with tags, on its own page, in no sequence."""
    with app.app_context():
        page = db.session.scalar(select(Page).where(Page.slug == "list"))
        if page is None:
            page = Page(slug="list", title="The List", fields=[], rules={})
            db.session.add(page)
            db.session.flush()
        row = Lead(email=email, name=email.split("@")[0].title(), public_ref=f"r-{email}",
                   page_id=page.id, review=review, subscription=subscription)
        db.session.add(row)
        db.session.flush()
        for tag in tags:
            db.session.add(LeadTag(lead_id=row.id, tag=tag, cause="test"))
        db.session.commit()
        return row.id


def send(app, name, *args):
    result = app.test_cli_runner().invoke(args=["broadcasts", "send", name, *args])
    return result


def broadcast_state(app, name):
    with app.app_context():
        return db.session.scalar(select(Broadcast.state).where(Broadcast.name == name))


def statuses(app, name):
    with app.app_context():
        return sorted(db.session.execute(
            select(Lead.email, Delivery.status).join(Lead, Lead.id == Delivery.lead_id)
            .join(Broadcast, Broadcast.id == Delivery.broadcast_id)
            .where(Broadcast.name == name)).all())


# --- files and check -----------------------------------------------------------------------

BAD_FILES = [
    ("---\npreheader: x\n---\nBody\n", "bad.md:1: subject is missing"),
    ("---\nsubject: Hi\nsegment:\n  colour: red\n---\nBody\n",
     "bad.md:4: segment.colour: unknown key"),
    ("---\nsubject: Hi\nsend_at: next tuesday\n---\nBody\n",
     "bad.md:3: send_at 'next tuesday': use an ISO time"),
    ("---\nsubject: Hi\nsend_at: 2020-01-01T09:00:00+00:00\n---\nBody\n",
     "bad.md:3: send_at 2020-01-01 09:00 UTC is in the past"),
    ("---\nsubject: Hi\n---\nHello {{ lead.nme }\n", "bad.md:4: template error"),
    ("---\nsubject: Hi\nname: other\n---\nBody\n", "bad.md:3: name 'other' does not match"),
    ("---\nsubject: [A]\n---\nBody\n", "bad.md:2: subject: a subject test has 2 to 4"),
    ("---\nsubject: Hi\ntest: {share: 20, wait_hours: 4}\n---\nBody\n",
     "bad.md:3: test: a test picks the best of several subjects"),
    ("---\nsubject: Hi\n---\nHello.\n\n[Join](https://example.com \"tag:Not Ok\")\n",
     "bad.md:6: link tag:"),
    ("---\nsubject: Hi\nsend_window: 9-5\n---\nBody\n",
     'bad.md:3: send_window: expected "HH:MM-HH:MM"'),
    ("---\nsubject: Hi\ntimezone: Mars/Olympus\n---\nBody\n",
     "bad.md:3: timezone: unknown zone"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_FILES)
def test_check_and_send_say_file_line_and_send_nothing(app, smtp, text, expected):
    write_broadcast(app, "bad", text)
    lead(app, "ann@example.com")
    checked = app.test_cli_runner().invoke(args=["broadcasts", "check"])
    assert checked.exit_code == 1
    assert expected in checked.output, checked.output
    sent = send(app, "bad")
    assert sent.exit_code == 1
    assert expected in sent.output and "nothing sent" in sent.output
    assert broadcast_state(app, "bad") is None
    tick(app)
    assert smtp.messages == []


def test_a_file_name_outside_the_alphabet_is_a_problem(app):
    write_broadcast(app, "Spring Sale", "---\nsubject: Hi\n---\nBody\n")
    result = app.test_cli_runner().invoke(args=["broadcasts", "check"])
    assert result.exit_code == 1
    assert "Spring Sale.md:1: the file name must be lowercase" in result.output


def test_check_passes_a_good_file_and_notes_one_edited_after_send(app, clock):
    path = write_broadcast(app, "offer", OFFER)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["broadcasts", "check"]).output.endswith(
        "1 broadcast file(s), no problems.\n")
    assert send(app, "offer").exit_code == 0
    path.write_text(OFFER.replace("sale", "SALE"), encoding="utf-8")
    result = runner.invoke(args=["broadcasts", "check"])
    assert result.exit_code == 0
    assert "offer.md:1: differs from what was frozen at `send`" in result.output


# --- commands --------------------------------------------------------------------------------

def test_count_prints_the_audience_on_the_last_line(app):
    write_broadcast(app, "offer", OFFER)
    lead(app, "ann@example.com", tags=["buyer"])
    lead(app, "bo@example.com", tags=["buyer"], subscription="unsubscribed")
    lead(app, "cy@example.com")
    result = app.test_cli_runner().invoke(args=["broadcasts", "count", "offer"])
    assert result.exit_code == 0
    assert result.output.splitlines()[-1] == "1"


def test_preview_renders_for_a_sample_or_a_real_lead(app):
    write_broadcast(app, "offer", OFFER)
    lead(app, "ann@example.com", tags=["buyer"])
    runner = app.test_cli_runner()
    assert "Subject: Spring sale, Jane" in runner.invoke(
        args=["broadcasts", "preview", "offer"]).output
    result = runner.invoke(args=["broadcasts", "preview", "offer", "--lead", "ann@example.com"])
    assert "Subject: Spring sale, Ann" in result.output
    assert "Preheader: Two days only" in result.output


def test_test_sends_one_copy_that_is_not_counted(app, smtp):
    write_broadcast(app, "offer", OFFER)
    result = app.test_cli_runner().invoke(
        args=["broadcasts", "test", "offer", "owner@example.com"])
    assert result.exit_code == 0, result.output
    assert subjects(smtp) == ["[Test] Spring sale, Jane"]
    assert broadcast_state(app, "offer") is None
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Delivery)) == 0


def test_list_shows_drafts_and_sent_broadcasts_with_numbers(app, smtp, clock):
    write_broadcast(app, "offer", OFFER)
    write_broadcast(app, "later", "---\nsubject: Later\n---\nSoon.\n")
    lead(app, "ann@example.com", tags=["buyer"])
    send(app, "offer")
    tick(app)
    lines = app.test_cli_runner().invoke(args=["broadcasts", "list"]).output.splitlines()
    offer = next(line for line in lines if line.startswith("offer"))
    later = next(line for line in lines if line.startswith("later"))
    assert offer.split()[:4] == ["offer", "sent", "1", "1"]
    assert later.split()[:3] == ["later", "draft", "1"]


# --- sending ---------------------------------------------------------------------------------

def test_a_broadcast_reaches_exactly_its_subscribed_unsuppressed_members_once(app, smtp, clock):
    write_broadcast(app, "offer", OFFER)
    lead(app, "ann@example.com", tags=["buyer"])
    lead(app, "bo@example.com", tags=["buyer"], subscription="unsubscribed")
    lead(app, "cy@example.com", tags=["buyer"], subscription="unconfirmed")
    lead(app, "di@example.com", tags=["buyer"])
    lead(app, "ed@example.com")  # not in the segment
    lead(app, "fay@example.com", tags=["buyer"], review="pending")
    with app.app_context():
        db.session.add(Suppression(email="di@example.com", reason="test"))
        db.session.commit()
    assert send(app, "offer").exit_code == 0
    assert broadcast_state(app, "offer") == "scheduled"
    tick(app)
    tick(app)
    assert sorted(str(m["To"]) for m in smtp.messages) == [
        "Ann <ann@example.com>", "Fay <fay@example.com>"]
    assert broadcast_state(app, "offer") == "sent"
    message = smtp.to("ann@example.com")[0]
    assert str(message["Subject"]) == "Spring sale, Ann"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "/u/" in message["List-Unsubscribe"]
    html = message.get_body(("html",)).get_content()
    assert "/o/" in html and "/c/" in html and "shop.example.com" not in html
    assert "1 Main St, Springfield" in message.get_body(("plain",)).get_content()
    with app.app_context():
        event = db.session.scalar(select(Event).where(Event.kind == "send"))
        assert event.data["broadcast"] == "offer"
    # A second send changes nothing and says so; nobody gets it twice.
    again = send(app, "offer")
    assert again.exit_code == 0 and "nothing changed" in again.output
    tick(app)
    assert len(smtp.messages) == 2


def test_recipients_are_taken_when_sending_starts_not_at_send(app, smtp, clock):
    write_broadcast(app, "offer", OFFER)
    lead(app, "ann@example.com", tags=["buyer"])
    assert send(app, "offer", "--at", "2026-03-02T12:00:00+00:00").exit_code == 0
    lead(app, "bo@example.com", tags=["buyer"])
    tick(app)
    assert smtp.messages == []
    clock.advance(hours=2)
    tick(app)
    assert len(smtp.messages) == 2
    lead(app, "cy@example.com", tags=["buyer"])  # joined after the start
    tick(app)
    assert len(smtp.messages) == 2


def test_a_lead_who_unsubscribes_after_the_take_is_skipped(app, smtp, clock):
    write_broadcast(app, "offer", OFFER)
    ann = lead(app, "ann@example.com", tags=["buyer"])
    send(app, "offer")
    with app.app_context():
        broadcast_sending.start_due(clock.now)
        row = db.session.scalar(select(Broadcast))
        broadcast_sending.take_chunk(row.id, clock.now)
        lifecycle.unsubscribe(db.session.get(Lead, ann), "test")
        db.session.commit()
    tick(app)
    assert smtp.messages == []
    assert statuses(app, "offer") == [("ann@example.com", "skipped")]
    assert broadcast_state(app, "offer") == "sent"
    with app.app_context():
        numbers = broadcast_numbers.numbers_of(db.session.scalar(select(Broadcast.id)))
    assert (numbers.recipients, numbers.delivered) == (0, 0)


def test_an_empty_segment_says_so_and_finishes(app, smtp, clock):
    write_broadcast(app, "offer", OFFER)
    lead(app, "ed@example.com")
    runner = app.test_cli_runner()
    assert runner.invoke(args=["broadcasts", "count", "offer"]).output.splitlines()[-1] == "0"
    assert send(app, "offer").exit_code == 0
    tick(app)
    assert broadcast_state(app, "offer") == "sent"
    assert smtp.messages == []
    line = next(x for x in runner.invoke(args=["broadcasts", "list"]).output.splitlines()
                if x.startswith("offer"))
    assert line.split()[:3] == ["offer", "sent", "0"]


def test_content_is_frozen_at_send(app, smtp, clock):
    path = write_broadcast(app, "offer", OFFER)
    lead(app, "ann@example.com", tags=["buyer"])
    send(app, "offer", "--at", "2026-03-02T11:00:00+00:00")
    path.write_text(OFFER.replace("Spring sale", "Winter sale"), encoding="utf-8")
    clock.advance(hours=2)
    tick(app)
    assert subjects(smtp) == ["Spring sale, Ann"]


def test_a_broadcast_waits_for_its_send_window_like_a_sequence(app, smtp, clock):
    # 10:00 UTC is 11:00 in Berlin: before the window, so the recipients are taken and
    # the email waits; at 14:00 Berlin time it goes.
    write_broadcast(app, "offer", OFFER.replace(
        "preheader:", 'send_window: "14:00-18:00"\ntimezone: Europe/Berlin\npreheader:'))
    lead(app, "ann@example.com", tags=["buyer"])
    assert send(app, "offer").exit_code == 0
    tick(app)
    assert smtp.messages == []
    assert statuses(app, "offer") == [("ann@example.com", "queued")]
    clock.advance(hours=2, minutes=59)
    tick(app)
    assert smtp.messages == []
    clock.advance(minutes=1)
    tick(app)
    assert subjects(smtp) == ["Spring sale, Ann"]


def test_sequence_steps_go_before_broadcasts_in_the_shared_rate_cap(make_app, smtp, tmp_path,
                                                                    clock):
    (tmp_path / "broadcasts").mkdir()
    app = make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port,
                   SEQUENCES_DIR=str(tmp_path / "sequences"),
                   BROADCASTS_DIR=str(tmp_path / "broadcasts"), SEND_RATE_PER_MINUTE=3)
    write_step(sequence_folder(app), "01-hi.md", "Step one", "Hello.", delay=0)
    write_broadcast(app, "news", "---\nsubject: News\n---\nNews.\n")
    for name in ("a", "b", "c", "d"):
        lead(app, f"{name}@example.com")
    send(app, "news")
    add_lead(app, "s1@example.com")
    add_lead(app, "s2@example.com")
    tick(app)
    assert subjects(smtp) == ["Step one", "Step one", "News"]
    tick(app)  # the same minute: the cap is reached
    assert len(smtp.messages) == 3
    for _ in range(4):
        clock.advance(minutes=1)
        tick(app)
    assert subjects(smtp).count("News") == 6
    assert broadcast_state(app, "news") == "sent"


def test_a_crash_between_claim_and_send_never_sends_twice(app, smtp, clock, monkeypatch):
    write_broadcast(app, "offer", OFFER)
    lead(app, "ann@example.com", tags=["buyer"])
    lead(app, "bo@example.com", tags=["buyer"])
    send(app, "offer")

    class Crash(BaseException):
        pass

    from capture.mail import backends

    original = backends.SmtpBackend.send
    calls = []

    def crash(self, message, then=None):
        calls.append(message.recipient)
        if len(calls) == 2:
            raise Crash()
        return original(self, message, then)

    monkeypatch.setattr(backends.SmtpBackend, "send", crash)
    with pytest.raises(Crash):
        tick(app)
    monkeypatch.setattr(backends.SmtpBackend, "send", original)
    with app.app_context():
        db.session.rollback()
    assert len(smtp.messages) == 1
    clock.advance(minutes=30)  # past SENDING_TIMEOUT_MINUTES: the reaper looks
    tick(app)
    tick(app)
    assert len(smtp.messages) == 1
    assert sorted(status for _, status in statuses(app, "offer")) == ["sent", "unknown"]
    assert broadcast_state(app, "offer") == "sent"


def test_cancel_stops_what_is_not_sent_and_after_the_end_changes_nothing(make_app, smtp,
                                                                         tmp_path, clock):
    (tmp_path / "broadcasts").mkdir()
    app = make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port,
                   BROADCASTS_DIR=str(tmp_path / "broadcasts"), SEND_RATE_PER_MINUTE=2)
    write_broadcast(app, "news", "---\nsubject: News\n---\nNews.\n")
    for name in ("a", "b", "c", "d", "e"):
        lead(app, f"{name}@example.com")
    send(app, "news")
    tick(app)
    assert len(smtp.messages) == 2
    runner = app.test_cli_runner()
    result = runner.invoke(args=["broadcasts", "cancel", "news"])
    assert "news cancelled: 3 email(s) not sent, 2 already sent" in result.output
    clock.advance(minutes=5)
    tick(app)
    assert len(smtp.messages) == 2
    assert broadcast_state(app, "news") == "cancelled"
    again = runner.invoke(args=["broadcasts", "cancel", "news"])
    assert "already cancelled: nothing changed" in again.output
    assert send(app, "news").exit_code == 1

    write_broadcast(app, "done", "---\nsubject: Done\n---\nDone.\n")
    send(app, "done")
    for _ in range(4):
        clock.advance(minutes=1)
        tick(app)
    assert broadcast_state(app, "done") == "sent"
    result = runner.invoke(args=["broadcasts", "cancel", "done"])
    assert "done is already sent: nothing changed" in result.output


def test_cancel_before_the_start_sends_nothing(app, smtp, clock):
    write_broadcast(app, "offer", OFFER)
    lead(app, "ann@example.com", tags=["buyer"])
    send(app, "offer", "--at", "2026-03-03T09:00:00+01:00")
    assert "offer cancelled: 0 email(s) not sent" in app.test_cli_runner().invoke(
        args=["broadcasts", "cancel", "offer"]).output
    clock.advance(days=2)
    tick(app)
    assert smtp.messages == []


def test_send_again_while_scheduled_moves_the_time(app, smtp, clock):
    write_broadcast(app, "offer", OFFER)
    lead(app, "ann@example.com", tags=["buyer"])
    send(app, "offer", "--at", "2026-03-05T09:00:00+00:00")
    result = send(app, "offer")
    assert "moved to 2026-03-02 10:00 UTC" in result.output
    tick(app)
    assert len(smtp.messages) == 1


def test_send_at_in_the_past_or_unreadable_is_refused(app):
    write_broadcast(app, "offer", OFFER)
    assert "in the past" in send(app, "offer", "--at", "2020-01-01T00:00:00+00:00").output
    assert "use an ISO time" in send(app, "offer", "--at", "tomorrow").output
    assert "use an ISO time" in send(app, "offer", "--at", "2026-03-05T09:00").output
    assert broadcast_state(app, "offer") is None


def test_two_takes_at_once_give_each_lead_one_delivery(app, clock):
    write_broadcast(app, "offer", OFFER)
    for number in range(30):
        lead(app, f"l{number}@example.com", tags=["buyer"])
    send(app, "offer")
    with app.app_context():
        app.config["BROADCAST_TAKE_ROWS"] = 7
        broadcast_sending.start_due(clock.now)
        broadcast_id = db.session.scalar(select(Broadcast.id))
        # A second process that already took a chunk the first one takes again.
        broadcast_sending.take_chunk(broadcast_id, clock.now)
        db.session.execute(Broadcast.__table__.update().values(taken_through=0))
        db.session.commit()
        while broadcast_sending.take_chunk(broadcast_id, clock.now) is not None:
            pass
        assert db.session.scalar(select(func.count()).select_from(Delivery)) == 30
        assert db.session.scalar(select(Broadcast.taken_at)) is not None


def test_the_engine_tick_leaves_sequence_sending_as_it_was(app, smtp, clock):
    write_step(sequence_folder(app), "01-hi.md", "Step one", "Hello.", delay=0)
    add_lead(app)
    assert tick(app).sent == 1
    assert subjects(smtp) == ["Step one"]


def test_a_temporary_smtp_failure_is_retried_and_sent_once(app, smtp, clock):
    write_broadcast(app, "offer", OFFER)
    lead(app, "ann@example.com", tags=["buyer"])
    send(app, "offer")
    smtp.data_replies.append("451 try again later")
    tick(app)
    assert statuses(app, "offer") == [("ann@example.com", "retry")]
    assert broadcast_state(app, "offer") == "sending"
    clock.advance(minutes=3)
    tick(app)
    assert subjects(smtp) == ["Spring sale, Ann"]
    assert statuses(app, "offer") == [("ann@example.com", "sent")]
    assert broadcast_state(app, "offer") == "sent"


def test_a_retry_after_the_send_window_shut_waits_for_it_to_open_again(app, smtp, clock):
    # 16:58 UTC is 17:58 in Berlin: the first try fails two minutes before the window
    # shuts, the retry falls after it and waits for 14:00 Berlin time the next day.
    write_broadcast(app, "offer", OFFER.replace(
        "preheader:", 'send_window: "14:00-18:00"\ntimezone: Europe/Berlin\npreheader:'))
    lead(app, "ann@example.com", tags=["buyer"])
    clock.advance(hours=6, minutes=58)
    send(app, "offer")
    smtp.data_replies.append("451 try again later")
    tick(app)
    clock.advance(minutes=5)
    tick(app)
    assert smtp.messages == []
    with app.app_context():
        assert str(db.session.scalar(select(Delivery.retry_at))) == "2026-03-03 13:00:00"
    clock.advance(hours=20, minutes=2)  # 13:00 UTC the next day
    tick(app)
    assert subjects(smtp) == ["Spring sale, Ann"]
    assert broadcast_state(app, "offer") == "sent"


def test_the_owner_resends_an_unknown_broadcast_email_and_the_lead_page_names_it(
        app, smtp, clock):
    from capture.mail import actions
    from tests.conftest import owner_client

    write_broadcast(app, "offer", OFFER)
    ann = lead(app, "ann@example.com", tags=["buyer"])
    send(app, "offer")
    tick(app)
    with app.app_context():
        delivery = db.session.scalar(select(Delivery))
        delivery.status = "unknown"
        db.session.commit()
        actions.resend(delivery)
    tick(app)
    assert subjects(smtp) == ["Spring sale, Ann", "Spring sale, Ann"]
    page = owner_client(app).get(f"/admin/leads/{ann}").get_data(as_text=True)
    assert "(broadcast offer)" in page
    assert '<td colspan="2">broadcast offer</td>' in page


def test_a_link_tag_in_a_broadcast_is_stored_with_its_link(app, smtp, clock):
    from capture.models import Link

    write_broadcast(app, "offer", "---\nsubject: Hi\n---\n"
                                  "[Join](https://example.com/vip \"tag:vip\")\n")
    lead(app, "ann@example.com")
    send(app, "offer")
    tick(app)
    html = smtp.messages[0].get_body(("html",)).get_content()
    assert "tag:vip" not in html
    with app.app_context():
        assert db.session.scalar(select(Link.tag).where(Link.url == "https://example.com/vip")) \
            == "vip"
