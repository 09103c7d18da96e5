"""The sending engine against a real SMTP server: timing, headers, never twice."""

import re
import threading

import pytest
from sqlalchemy import func, select

from capture.leads import lifecycle as leads
from capture.mail import engine, membership
from capture.db import db
from capture.models import Delivery, Enrollment, Event, Lead, Page, Suppression
from tests.conftest import send_confirmations
from tests.factories import (
    add_lead,
    deliveries,
    sequence_folder,
    subjects,
    three_steps,
    tick,
    write_step,
)


def test_first_step_goes_at_once_and_the_next_only_after_its_delay(smtp_app, smtp, clock):
    three_steps(smtp_app)
    add_lead(smtp_app)
    assert tick(smtp_app).sent == 1
    assert subjects(smtp) == ["Welcome, Ann"]

    clock.advance(days=1, hours=23)
    assert tick(smtp_app).sent == 0
    clock.advance(hours=1)
    assert tick(smtp_app).sent == 1
    assert subjects(smtp) == ["Welcome, Ann", "Three tips"]
    clock.advance(days=3)
    tick(smtp_app)
    clock.advance(days=30)
    tick(smtp_app)
    assert subjects(smtp) == ["Welcome, Ann", "Three tips", "An offer"]


def test_confirmed_lead_of_a_page_is_enrolled_and_mailed(smtp_app, smtp, clock):
    from tests.conftest import confirm, create_page, optin

    three_steps(smtp_app)
    create_page(smtp_app, slug="guide", sequence="course")
    client = smtp_app.test_client()
    assert optin(client, "guide", email="bo@example.com", name="Bo").status_code == 303
    confirmation = smtp.to("bo@example.com")[0]
    link = re.search(r"http://127\.0\.0\.1:5000(/confirm/\S+)",
                     confirmation.get_body(("plain",)).get_content()).group(1)
    assert confirm(client, link).status_code == 200
    tick(smtp_app)
    assert [str(m["Subject"]) for m in smtp.to("bo@example.com")][-1] == "Welcome, Bo"


def test_unconfirmed_or_unapproved_leads_are_not_enrolled(smtp_app, smtp, clock):
    three_steps(smtp_app)
    with smtp_app.app_context():
        page = Page(slug="p", title="P", fields=[], rules={}, sequence="course")
        db.session.add(page)
        db.session.flush()
        for email, review, subscription in [("u@example.com", "approved", "unconfirmed"),
                                            ("r@example.com", "rejected", "subscribed"),
                                            ("m@example.com", "pending", "subscribed")]:
            lead = Lead(email=email, public_ref=email, page_id=page.id, review=review,
                        subscription=subscription)
            db.session.add(lead)
            db.session.flush()
            assert membership.enroll(lead) == 0
        db.session.commit()
    tick(smtp_app)
    assert smtp.messages == []


def test_message_has_both_parts_footer_and_list_headers(smtp_app, smtp, clock):
    three_steps(smtp_app)
    add_lead(smtp_app)
    tick(smtp_app)
    message = smtp.messages[0]
    assert message["To"].addresses[0].addr_spec == "ann@example.com"
    assert message["To"].addresses[0].display_name == "Ann Lee"
    assert message["From"] == "Capture <no-reply@localhost>"
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert re.search(r"Hi Ann, here is your guide \(http://127\.0\.0\.1:5000/c/\S+\)\.",
                     text)
    assert re.search(r'href="http://127\.0\.0\.1:5000/c/[^"]+"', html)
    assert "https://example.com/guide" not in text + html  # stored server-side only
    assert "Your guide inside" in html  # the preheader
    assert 'style="margin:0 0 16px' in html  # CSS inlined on the Markdown's tags
    unsubscribe = re.match(r"<(http://127\.0\.0\.1:5000/u/\S+)>",
                           message["List-Unsubscribe"].strip())
    assert unsubscribe
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert unsubscribe.group(1) in text and unsubscribe.group(1) in html
    assert "1 Main St, Springfield" in text and "1 Main St, Springfield" in html
    assert message["List-Id"] == "course <course.127.0.0.1>"
    with smtp_app.app_context():
        delivery = db.session.scalar(select(Delivery))
        assert message["Message-ID"] == f"<capture.{delivery.id}.ref-ann@localhost>"
        assert delivery.message_id == message["Message-ID"]


def test_sequence_yml_sets_sender_reply_to_and_mailto_unsubscribe(make_app, smtp, tmp_path,
                                                                  clock):
    app = make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port,
                   SEQUENCES_DIR=str(tmp_path / "seq"), UNSUBSCRIBE_MAILTO="unsub@example.com")
    folder = three_steps(app)
    (folder / "sequence.yml").write_text(
        'from: "Sam at Shop <sam@shop.example>"\nreply_to: help@shop.example\n')
    add_lead(app)
    tick(app)
    message = smtp.messages[0]
    assert message["From"] == "Sam at Shop <sam@shop.example>"
    assert message["Reply-To"] == "help@shop.example"
    assert "<mailto:unsub@example.com?subject=unsubscribe>" in message["List-Unsubscribe"]


def test_editing_renumbering_and_adding_steps_never_resends(smtp_app, smtp, clock):
    folder = three_steps(smtp_app)
    add_lead(smtp_app)
    tick(smtp_app)
    clock.advance(days=2)
    tick(smtp_app)
    assert subjects(smtp) == ["Welcome, Ann", "Three tips"]

    (folder / "01-welcome.md").rename(folder / "10-welcome.md")
    (folder / "02-tips.md").rename(folder / "20-tips.md")
    (folder / "03-offer.md").rename(folder / "30-offer.md")
    write_step(folder, "10-welcome.md", "Welcome (edited)", "New text.", delay=0)
    write_step(folder, "15-extra.md", "Inserted before", "Too late for Ann.", delay=0)
    for _ in range(3):
        clock.advance(days=3)
        tick(smtp_app)
    assert subjects(smtp) == ["Welcome, Ann", "Three tips", "An offer"]


def test_step_added_at_the_end_reaches_leads_who_finished(smtp_app, smtp, clock):
    folder = three_steps(smtp_app)
    add_lead(smtp_app)
    for _ in range(4):
        tick(smtp_app)
        clock.advance(days=3)
    assert len(smtp.messages) == 3
    write_step(folder, "04-bonus.md", "A bonus", "More.", delay="1d")
    tick(smtp_app)
    assert subjects(smtp)[-1] == "A bonus"
    clock.advance(days=10)
    tick(smtp_app)
    assert len(smtp.messages) == 4


def test_crash_between_claim_and_send_leaves_unknown_and_never_resends(
    smtp_app, smtp, clock, monkeypatch
):
    three_steps(smtp_app)
    lead_id = add_lead(smtp_app)

    class Crash(BaseException):
        """The process dies: nothing after the SMTP hand-over runs."""

    from capture.mail import backends as mail

    def die(self, message, then=None):
        raise Crash()

    monkeypatch.setattr(mail.SmtpBackend, "send", die)
    try:
        tick(smtp_app)
    except Crash:
        pass
    monkeypatch.undo()
    from capture import clock as clock_module

    monkeypatch.setattr(clock_module, "utcnow", lambda: clock.now)
    assert deliveries(smtp_app, lead_id) == [("welcome", "sending")]

    clock.advance(minutes=11)
    assert tick(smtp_app).unknown == 1
    for _ in range(3):
        clock.advance(days=3)
        tick(smtp_app)
    # The unknown step is never resent; the lead goes on with the steps after it.
    assert deliveries(smtp_app, lead_id) == [
        ("welcome", "unknown"), ("tips", "sent"), ("offer", "sent")]
    assert subjects(smtp) == ["Three tips", "An offer"]


def test_temporary_smtp_failure_is_retried_then_delivered_once(smtp_app, smtp, clock):
    three_steps(smtp_app)
    lead_id = add_lead(smtp_app)
    smtp.data_replies = ["451 4.3.0 try again later"]
    assert tick(smtp_app).retried == 1
    assert deliveries(smtp_app, lead_id) == [("welcome", "retry")]
    assert tick(smtp_app).sent == 0  # back-off: not yet
    clock.advance(minutes=5)
    assert tick(smtp_app).sent == 1
    assert subjects(smtp) == ["Welcome, Ann"]
    assert deliveries(smtp_app, lead_id) == [("welcome", "sent")]
    clock.advance(days=2)
    tick(smtp_app)
    assert subjects(smtp) == ["Welcome, Ann", "Three tips"]


def test_smtp_down_is_retried_with_back_off_until_it_is_back(make_app, clock, tmp_path, smtp):
    from tests.conftest import _free_port

    app = make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=_free_port(),
                   SEQUENCES_DIR=str(tmp_path / "seq"))
    three_steps(app)
    lead_id = add_lead(app)
    assert tick(app).retried == 1
    with app.app_context():
        delivery = db.session.scalar(select(Delivery))
        assert "connection" in delivery.error.lower()
    app.config["SMTP_PORT"] = smtp.port
    clock.advance(minutes=5)
    tick(app)
    assert deliveries(app, lead_id) == [("welcome", "sent")]
    assert len(smtp.messages) == 1


def test_retries_stop_after_retry_hours_and_the_delivery_fails(smtp_app, smtp, clock):
    three_steps(smtp_app)
    lead_id = add_lead(smtp_app)
    smtp.data_replies = ["451 busy"] * 100
    for _ in range(40):
        tick(smtp_app)
        clock.advance(hours=1)
    assert deliveries(smtp_app, lead_id)[0] == ("welcome", "failed")


def test_permanent_recipient_failure_bounces_and_suppresses_the_lead(smtp_app, smtp, clock):
    three_steps(smtp_app)
    lead_id = add_lead(smtp_app, email="gone@example.com")
    smtp.refuse.add("gone@example.com")
    summary = tick(smtp_app)
    assert summary.bounced == 1
    with smtp_app.app_context():
        lead = db.session.get(Lead, lead_id)
        assert lead.subscription == "bounced"
        assert db.session.scalar(select(Suppression.email)) == "gone@example.com"
        kinds = db.session.scalars(select(Event.kind).where(Event.lead_id == lead_id)).all()
        assert "bounce" in kinds
        assert db.session.scalar(select(Enrollment.state)) == "stopped"
    assert deliveries(smtp_app, lead_id) == [("welcome", "failed")]
    clock.advance(days=10)
    tick(smtp_app)
    assert smtp.messages == []


def test_permanent_message_failure_fails_the_delivery_and_moves_on(smtp_app, smtp, clock):
    three_steps(smtp_app)
    lead_id = add_lead(smtp_app)
    smtp.data_replies = ["554 5.6.0 message rejected"]
    assert tick(smtp_app).failed == 1
    clock.advance(days=2)
    tick(smtp_app)
    assert deliveries(smtp_app, lead_id) == [("welcome", "failed"), ("tips", "sent")]


def test_two_ticks_at_once_send_each_delivery_once(smtp_app, smtp, clock):
    three_steps(smtp_app)
    for number in range(30):
        add_lead(smtp_app, email=f"lead{number}@example.com", name=f"Lead {number}")
    barrier = threading.Barrier(2)
    errors = []

    def run():
        try:
            barrier.wait()
            tick(smtp_app)
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    tick(smtp_app)
    recipients = [m["To"].addresses[0].addr_spec for m in smtp.messages]
    assert len(recipients) == 30
    assert len(set(recipients)) == 30


def test_more_leads_than_one_chunk_each_get_their_step_once(smtp_app, smtp, clock):
    three_steps(smtp_app)
    count = engine.CHUNK + 20
    ids = [add_lead(smtp_app, email=f"many{n}@example.com", name=f"Many {n}")
           for n in range(count)]
    with smtp_app.app_context():  # one in the middle of the first chunk unsubscribed
        db.session.get(Lead, ids[10]).subscription = "unsubscribed"
        db.session.commit()
    summary = tick(smtp_app)
    assert (summary.sent, summary.stopped) == (count - 1, 1)
    recipients = sorted(m["To"].addresses[0].addr_spec for m in smtp.messages)
    assert recipients == sorted(f"many{n}@example.com" for n in range(count) if n != 10)
    with smtp_app.app_context():
        states = db.session.execute(select(Enrollment.state, Enrollment.last_step)).all()
        assert sorted(set(states)) == [("active", "welcome"), ("stopped", None)]
        sends = db.session.scalar(select(func.count()).select_from(Event)
                                  .where(Event.kind == "send"))
        assert sends == count - 1


def test_each_email_of_a_chunk_is_its_own_leads_and_delivery(smtp_app, smtp, clock):
    three_steps(smtp_app)
    ids = [add_lead(smtp_app, email=f"own{n}@example.com", name=f"Own{n} Lee")
           for n in range(engine.CHUNK + 5)]
    assert tick(smtp_app).sent == len(ids)
    with smtp_app.app_context():
        rows = {row.id: row for row in db.session.execute(
            select(Delivery.id, Lead.email, Lead.public_ref, Delivery.subject)
            .join(Lead, Lead.id == Delivery.lead_id))}
    for message in smtp.messages:
        delivery_id = int(re.match(r"<capture\.(\d+)\.", message["Message-ID"]).group(1))
        row = rows[delivery_id]
        address = message["To"].addresses[0].addr_spec
        assert address == row.email and row.public_ref in message["Message-ID"]
        assert str(message["Subject"]) == row.subject == f"Welcome, {address[:-12].title()}"


def test_a_step_with_a_delivery_already_is_not_sent_again_and_the_chunk_goes_on(
    smtp_app, smtp, clock
):
    three_steps(smtp_app)
    first = add_lead(smtp_app, email="had@example.com")
    add_lead(smtp_app, email="new@example.com")
    with smtp_app.app_context():
        enrollment = db.session.scalar(select(Enrollment).where(Enrollment.lead_id == first))
        db.session.add(Delivery(lead_id=first, enrollment_id=enrollment.id, sequence="course",
                                step="welcome", filename="01-welcome.md", status="sent",
                                sent_at=clock.now))
        db.session.commit()
    assert tick(smtp_app).sent == 1
    assert [m["To"].addresses[0].addr_spec for m in smtp.messages] == ["new@example.com"]
    with smtp_app.app_context():
        enrollment = db.session.scalar(select(Enrollment).where(Enrollment.lead_id == first))
        assert (enrollment.state, enrollment.last_step) == ("active", "welcome")
    assert deliveries(smtp_app, first) == [("welcome", "sent")]


def test_one_email_refused_for_now_in_a_chunk_is_retried_and_the_others_go(
    smtp_app, smtp, clock
):
    three_steps(smtp_app)
    for number in range(5):
        add_lead(smtp_app, email=f"part{number}@example.com")
    smtp.data_replies = [None, None, "451 4.3.2 try again later"]
    summary = tick(smtp_app)
    assert (summary.sent, summary.retried) == (4, 1)
    assert sorted(deliveries(smtp_app)) == [("welcome", "retry")] + [("welcome", "sent")] * 4
    clock.advance(minutes=5)
    assert tick(smtp_app).sent == 1
    recipients = [m["To"].addresses[0].addr_spec for m in smtp.messages]
    assert sorted(recipients) == [f"part{n}@example.com" for n in range(5)]


@pytest.fixture
def capped_app(make_app, smtp, tmp_path, clock):
    """Five leads due for their first step, and a rate cap of 3 emails a minute."""
    app = make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port,
                   SEQUENCES_DIR=str(tmp_path / "seq"), SEND_RATE_PER_MINUTE=3)
    three_steps(app)
    for number in range(5):
        add_lead(app, email=f"l{number}@example.com")
    return app


def test_rate_cap_limits_messages_per_minute(capped_app, clock):
    app = capped_app
    assert tick(app).sent == 3
    assert tick(app).sent == 0
    clock.advance(seconds=61)
    assert tick(app).sent == 2


def test_confirmation_emails_count_against_the_rate_cap(capped_app, smtp, clock):
    app = capped_app
    with app.app_context():
        page = db.session.scalar(select(Page).where(Page.slug == "course-page"))
        for number in range(2):
            lead = Lead(email=f"new{number}@example.com", page_id=page.id,
                        public_ref=f"new-{number}", subscription="unconfirmed",
                        **leads.queued_confirmation(clock.now))
            db.session.add(lead)
            db.session.commit()
    assert send_confirmations(app) == 2
    assert tick(app).sent == 1
    assert len(smtp.messages) == 3
    clock.advance(seconds=61)
    assert tick(app).sent == 3


def test_unsubscribed_lead_gets_no_further_step(smtp_app, smtp, clock):
    three_steps(smtp_app)
    lead_id = add_lead(smtp_app)
    tick(smtp_app)
    link = re.match(r"<http://127\.0\.0\.1:5000(/u/\S+)>",
                    smtp.messages[0]["List-Unsubscribe"].strip())
    response = smtp_app.test_client().post(link.group(1),
                                           data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    for _ in range(3):
        clock.advance(days=3)
        tick(smtp_app)
    assert subjects(smtp) == ["Welcome, Ann"]
    with smtp_app.app_context():
        assert db.session.get(Lead, lead_id).subscription == "unsubscribed"


def test_upgrade_stops_a_sequence_with_stop_on_upgrade(smtp_app, smtp, clock):
    folder = three_steps(smtp_app)
    (folder / "sequence.yml").write_text("stop_on: [upgrade]\n")
    lead_id = add_lead(smtp_app)
    tick(smtp_app)
    with smtp_app.app_context():
        from decimal import Decimal

        from capture.leads import upgrades as engagement

        engagement.record_upgrade(db.session.get(Lead, lead_id), Decimal("49.00"), "USD",
                                  "txn-1", source="test")
    clock.advance(days=5)
    tick(smtp_app)
    assert subjects(smtp) == ["Welcome, Ann"]
    with smtp_app.app_context():
        enrollment = db.session.scalar(select(Enrollment))
        assert (enrollment.state, enrollment.stop_reason) == ("stopped", "upgrade")


def test_lead_data_with_template_syntax_and_crlf_is_sent_literally(smtp_app, smtp, clock):
    folder = sequence_folder(smtp_app)
    write_step(folder, "01-hi.md", "Hello {{ lead.name }}",
               "Dear {{ lead.name }}, your email is {{ lead.email }}.", delay=0)
    add_lead(smtp_app, email="x@example.com",
             name="{{ config }} {% print 7*7 %}\r\nBcc: victim@example.com")
    tick(smtp_app)
    message = smtp.messages[0]
    assert message["Bcc"] is None
    assert "\n" not in message["Subject"] and "\r" not in message["Subject"]
    # The name as written, cut to its first 40 characters' whole words.
    assert message["Subject"] == "Hello {{ config }} {% print 7*7 %} Bcc:"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Dear {{ config }} {% print 7*7 %}" in text
    assert "{{ config }} {% print 7*7 %} Bcc:" in html and "victim" not in html
    assert "SECRET" not in text and "49" not in text
    assert [a.addr_spec for a in message["To"].addresses] == ["x@example.com"]


def test_a_step_reads_the_leads_own_fields_as_literal_text(smtp_app, smtp, clock):
    folder = sequence_folder(smtp_app)
    write_step(folder, "01-hi.md", "Your {{ lead.fields.plan }} plan",
               "Plan: {{ lead.fields.plan }}. Team: {{ lead.fields.team }}. "
               "News: {{ lead.fields.news }}. Size: {{ lead.fields.size or 'unknown' }}.",
               delay=0)
    add_lead(smtp_app, email="f@example.com", country="DE",
             fields={"plan": "<b>Pro</b> {{ config }}", "team": ["a", "b"], "news": True})
    tick(smtp_app)
    message = smtp.messages[0]
    assert message["Subject"] == "Your <b>Pro</b> {{ config }} plan"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Plan: <b>Pro</b> {{ config }}. Team: a, b. News: yes. Size: unknown." in text
    assert "<b>Pro</b>" not in html and "&lt;b&gt;Pro&lt;/b&gt;" in html


def test_encoded_word_in_a_name_is_not_decoded_into_a_header(smtp_app, smtp, clock):
    folder = sequence_folder(smtp_app)
    write_step(folder, "01-hi.md", "Hello {{ lead.first_name }}", "Hi.", delay=0)
    add_lead(smtp_app, email="y@example.com",
             name="=?utf-8?q?Boss=0D=0ABcc:_victim@example.com?=")
    tick(smtp_app)
    message = smtp.messages[0]
    assert message["Bcc"] is None
    assert "victim" not in message["To"].addresses[0].addr_spec
    assert "Bcc:" not in str(message["To"]).replace("Bcc:_", "")


def test_markdown_in_lead_values_is_not_turned_into_links(smtp_app, smtp, clock):
    folder = sequence_folder(smtp_app)
    write_step(folder, "01-hi.md", "Hi", "Hello {{ lead.name }}!", delay=0)
    add_lead(smtp_app, email="z@example.com",
             name="[click me](https://evil.example) <script>alert(1)</script>")
    tick(smtp_app)
    html = smtp.messages[0].get_body(("html",)).get_content()
    assert "https://evil.example" not in re.findall(r'href="([^"]+)"', html)
    assert "<script>" not in html
    assert "[click me](https://evil.example)" in html
    text = smtp.messages[0].get_body(("plain",)).get_content()
    # Literal, and cut to whole words within rendering.NAME_IN_EMAIL_MAX characters.
    assert "Hello [click me](https://evil.example)!" in text


def test_broken_step_is_held_and_other_sequences_go_on(smtp_app, smtp, clock):
    three_steps(smtp_app, "good")
    broken = sequence_folder(smtp_app, "broken")
    write_step(broken, "01-first.md", "First", "One.", delay=0)
    (broken / "02-second.md").write_text("---\nsubject: [unclosed\n---\nBody\n")
    add_lead(smtp_app, email="good@example.com", sequence="good")
    with smtp_app.app_context():
        page = Page(slug="broken-page", title="B", fields=[], rules={}, sequence="broken")
        db.session.add(page)
        db.session.flush()
        lead = Lead(email="held@example.com", public_ref="held", page_id=page.id,
                    review="approved", subscription="subscribed")
        db.session.add(lead)
        db.session.flush()
        membership.enroll(lead)
        db.session.commit()
    tick(smtp_app)
    clock.advance(days=2)
    assert tick(smtp_app).held == 1
    assert [str(m["Subject"]) for m in smtp.to("held@example.com")] == ["First"]
    (broken / "02-second.md").write_text("---\nsubject: Second\n---\nBody\n")
    clock.advance(minutes=10)
    tick(smtp_app)
    assert [str(m["Subject"]) for m in smtp.to("held@example.com")] == ["First", "Second"]
    assert subjects(smtp).count("Welcome, Good") == 0
    assert len(smtp.to("good@example.com")) == 2


def test_lead_without_a_sequence_gets_nothing(smtp_app, smtp, clock):
    with smtp_app.app_context():
        page = Page(slug="none", title="No sequence", fields=[], rules={}, sequence=None)
        db.session.add(page)
        db.session.flush()
        lead = Lead(email="n@example.com", public_ref="n", page_id=page.id,
                    review="approved", subscription="subscribed")
        db.session.add(lead)
        db.session.flush()
        assert membership.enroll(lead) == 0
        db.session.commit()
    assert tick(smtp_app).sent == 0
    assert smtp.messages == []


def test_email_keeps_line_breaks_and_its_text_part_is_clean_text(make_app, smtp, tmp_path,
                                                                 clock):
    import shutil

    from config import ROOT

    app = make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port,
                   SEQUENCES_DIR=str(tmp_path / "seq"))
    shutil.copytree(ROOT / "sequences" / "welcome", tmp_path / "seq" / "course")
    write_step(tmp_path / "seq" / "course", "02-fields.md", "Fields",
               "## The form\n\n1. **Email** — always.\n2. *First name*, `maybe`.\n\n"
               "- [The guide](https://example.com/guide)\n- <https://example.com/faq>\n",
               delay=0)
    add_lead(app, name="Bo Lee")
    tick(app)
    tick(app)
    welcome, fields = smtp.messages
    html = welcome.get_body(("html",)).get_content()
    text = welcome.get_body(("plain",)).get_content().replace("\r\n", "\n")
    # "Talk soon,⏎The Capture team" stays two lines in both parts.
    assert re.search(r"<p[^>]*>Talk soon,<br />\s*The Capture team</p>", html)
    assert "Talk soon,\nThe Capture team\n" in text
    assert "**" not in text and "](" not in text
    assert "Here is The One-Page Lead Magnet Checklist you asked for:" in text
    # The label, then the link, tracked in both parts.
    link = re.search(r"^Open the checklist \((http://127\.0\.0\.1:5000/c/\S+)\)$", text, re.M)
    assert link, text
    assert f'href="{link.group(1)}"' in html
    assert "https://example.com/checklist" not in text + html
    text = fields.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text.startswith("The form\n\n1. Email — always.\n2. First name, maybe.\n\n"
                           "- The guide (http://127.0.0.1:5000/c/")
    assert re.search(r"^- http://127\.0\.0\.1:5000/c/\S+$", text, re.M)  # a bare link
    assert "example.com" not in text
