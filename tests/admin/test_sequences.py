"""The Sequences area: folders, steps, problems with file:line, per-step numbers equal
to sequence_steps.steps(), the sandboxed preview and the test email to the owner."""

import html
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from capture.numbers import sequence_steps
from capture.db import db
from capture.models import Delivery, Enrollment, Event, Lead, Link, Page
from tests.admin.conftest import owner_of
from tests.conftest import OWNER_EMAIL, Outbox, csrf_of
from tests.factories import add_lead, three_steps, tick, write_step


@pytest.fixture
def seq_app(make_app, tmp_path):
    """An app with its own (empty) sequences folder and the outbox backend."""
    folder = tmp_path / "sequences"
    folder.mkdir()
    return make_app(SEQUENCES_DIR=str(folder), MAIL_BACKEND="outbox")


def row_of(page: str, step: str) -> str:
    match = re.search(rf'<tr[^>]*data-step="{step}".*?</tr>', page, re.S)
    assert match, step
    return match.group(0)


def cell(row: str, metric: str) -> str:
    match = re.search(rf'data-metric="{metric}">(.*?)</td>', row, re.S)
    return re.sub(r"<[^>]+>", " ", match.group(1)).split()


def rate(value) -> str:
    """A rate as the dashboard shows it: one decimal, "-" when undefined."""
    return "-" if value is None else f"{value * 100:.1f}%"


def count_rows(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


# --- access -----------------------------------------------------------------------------

def test_pages_render_for_the_owner_and_redirect_anonymous_visitors(app, owner, client):
    assert owner.get("/admin/sequences").status_code == 200
    assert owner.get("/admin/sequences/welcome/welcome").status_code == 200
    for path in ("/admin/sequences", "/admin/sequences/welcome/welcome"):
        response = client.get(path)
        assert response.status_code == 302
        assert "/admin/login" in response.headers["Location"]
    # A POST with the log-in page's valid token is still sent to log in.
    token = csrf_of(client, "/admin/login")
    response = client.post("/admin/sequences/welcome/welcome/test", data={"csrf_token": token})
    assert response.status_code == 302
    assert "/admin/login" in response.headers["Location"]


def test_sending_a_test_without_a_csrf_token_is_refused(app, owner, outbox):
    assert owner.post("/admin/sequences/welcome/welcome/test").status_code == 400
    assert outbox.messages() == []


def test_unknown_sequence_or_step_is_404(app, owner):
    for path in ("/admin/sequences/nope/welcome", "/admin/sequences/welcome/nope",
                 "/admin/sequences/../welcome", "/admin/sequences/..%2fwelcome/welcome",
                 "/admin/sequences/.hidden/welcome"):
        assert owner.get(path).status_code == 404, path


# --- the list ---------------------------------------------------------------------------

def test_the_demo_sequence_shows_its_settings_and_steps_with_timing(app, owner):
    page = owner.get("/admin/sequences").get_data(as_text=True)
    assert 'data-sequence="welcome"' in page
    assert "Capture Demo &lt;no-reply@localhost&gt;" in page
    assert "any time" in page and "UTC" in page  # no send window: the demo works at night
    assert "buys an upgrade" in page and "unsubscribes" in page
    assert "Right after the lead is enrolled" in row_of(page, "welcome")
    assert "1 day after the previous email" in row_of(page, "fields")
    assert "2 days after the previous email, at 10:00 (UTC)" in row_of(page, "offer")
    assert page.index('data-step="welcome"') < page.index('data-step="fields"') < page.index(
        'data-step="offer"')


def test_empty_folder_explains_how_to_make_a_sequence(seq_app):
    owner = owner_of(seq_app)
    page = owner.get("/admin/sequences").get_data(as_text=True)
    assert "No sequences yet" in page
    assert "01-welcome.md" in page and "sequences check" in page


def test_problems_are_shown_with_file_and_line(seq_app):
    folder = Path(seq_app.config["SEQUENCES_DIR"]) / "broken"
    write_step(folder, "01-first.md", "First", "One.", delay=0)
    (folder / "02-second.md").write_text("---\nsubject: Second\ndelay: soon\n---\nBody\n")
    (folder / "sequence.yml").write_text("timezone: Mars/Olympus\n")
    owner = owner_of(seq_app)
    page = owner.get("/admin/sequences").get_data(as_text=True)
    assert "2 problems in your sequence files" in page
    assert "broken/02-second.md:3: delay &#39;soon&#39;: use 0, 30m, 2h, 3d or 1w" in page
    assert "broken/sequence.yml:1: timezone: unknown zone" in page
    assert "held: fix the file" in row_of(page, "second")
    step = owner.get("/admin/sequences/broken/second").get_data(as_text=True)
    assert "broken/02-second.md:3:" in step
    assert "Send a test" not in step


def test_per_step_numbers_equal_the_metrics_module(make_app, smtp, tmp_path, clock):
    app = make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port,
                   SEQUENCES_DIR=str(tmp_path / "seq"))
    three_steps(app)
    leads = [add_lead(app, email=f"l{n}@example.com", name=f"L{n}") for n in range(4)]
    tick(app)
    clock.advance(days=2)
    tick(app)
    with app.app_context():
        sent = {(d.lead_id, d.step): d.id for d in db.session.scalars(select(Delivery))}
        welcome = [sent[(lead, "welcome")] for lead in leads]
        lead_of = {v: k for k, v in sent.items()}
        for delivery_id, kind, machine in [
            (welcome[0], "open", False), (welcome[0], "open", False), (welcome[1], "open", False),
            (welcome[2], "open", True), (welcome[0], "click", False),
            (welcome[3], "unsubscribe", False), (sent[(leads[0], "tips")], "open", False),
            (welcome[1], "bounce", False), (welcome[2], "complaint", False),
        ]:
            lead = db.session.get(Lead, lead_of[delivery_id][0])
            db.session.add(Event(lead_id=lead.id, kind=kind, delivery_id=delivery_id,
                                 machine=machine, data={}))
        db.session.commit()
        expected = {row.step: row for row in sequence_steps.steps() if row.sequence == "course"}
    assert expected["welcome"].sent == 4 and expected["welcome"].opened == 2
    page = owner_of(app).get("/admin/sequences").get_data(as_text=True)
    for step in ("welcome", "tips", "offer"):
        row = row_of(page, step)
        numbers = expected.get(step, sequence_steps.StepNumbers("course", step))
        assert cell(row, "sent") == [str(numbers.sent)]
        assert cell(row, "opened") == [str(numbers.opened), rate(numbers.open_rate)]
        assert cell(row, "clicked") == [str(numbers.clicked), rate(numbers.click_rate)]
        assert cell(row, "unsubscribed") == [str(numbers.unsubscribed)]
        assert cell(row, "bounced") == [str(numbers.bounces), rate(numbers.bounce_rate)]
        assert cell(row, "complained") == [str(numbers.complaints),
                                           rate(numbers.complaint_rate)]
    assert cell(row_of(page, "welcome"), "opened") == ["2", "50.0%"]
    assert cell(row_of(page, "welcome"), "bounced") == ["1", "25.0%"]
    assert cell(row_of(page, "welcome"), "complained") == ["1", "25.0%"]
    assert cell(row_of(page, "offer"), "opened") == ["0", "-"]


def test_a_step_shows_the_upgrades_and_revenue_credited_to_it(make_app, tmp_path):
    from datetime import datetime, timedelta

    from tests.factories import add_delivery, add_event, add_upgrade

    app = make_app(SEQUENCES_DIR=str(tmp_path / "seq"))
    three_steps(app)
    ann = add_lead(app)
    offer = add_delivery(app, ann, sequence="course", step="offer")
    clicked = datetime.now() - timedelta(days=1)
    add_event(app, ann, "click", clicked, delivery_id=offer)
    add_upgrade(app, ann, "1249.50", clicked + timedelta(hours=1))
    page = owner_of(app).get("/admin/sequences").get_data(as_text=True)
    assert cell(row_of(page, "offer"), "upgrades") == ["1"]
    assert cell(row_of(page, "offer"), "revenue") == ["1,249.50"]
    assert cell(row_of(page, "welcome"), "revenue") == ["0.00"]
    assert "in the 7 days before it" in page


# --- the preview ------------------------------------------------------------------------

def test_preview_is_a_sandboxed_frame_with_subject_preheader_and_text(app, owner):
    response = owner.get("/admin/sequences/welcome/welcome")
    page = response.get_data(as_text=True)
    frames = re.findall(r"<iframe[^>]*>", page)
    assert len(frames) == 1
    assert 'sandbox=""' in frames[0] and "allow-" not in frames[0]
    # The frame inherits the page's policy: only our own script files, no inline one.
    assert "script-src 'self';" in response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert "Your checklist is here, Jane" in page  # the sample lead
    assert "The twelve decisions that make a capture page convert." in page
    text = re.search(r'<pre class="text-part"[^>]*>(.*?)</pre>', page, re.S).group(1)
    assert "Hi Jane," in text and "https://example.com/checklist" in text
    srcdoc = html.unescape(re.search(r'srcdoc="([^"]*)"', frames[0]).group(1))
    assert srcdoc.startswith("<!doctype html>") and "Open the checklist" in srcdoc


def test_preview_for_a_lead_escapes_its_data_everywhere(app, owner):
    with app.app_context():
        db.session.add(Lead(email="x@example.com", public_ref="x",
                            name='<script>alert(1)</script>" onload="x'))
        db.session.commit()
    page = owner.get("/admin/sequences/welcome/welcome?lead=x@example.com").get_data(
        as_text=True)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # subject and text part
    frame = re.search(r"<iframe[^>]*>", page).group(0)
    srcdoc = html.unescape(re.search(r'srcdoc="([^"]*)"', frame).group(1))
    assert "<script>" not in srcdoc  # the email's HTML escapes the name itself
    assert "alert(1)" in srcdoc
    missing = owner.get("/admin/sequences/welcome/welcome?lead=nobody@example.com")
    assert "No lead with the email nobody@example.com" in missing.get_data(as_text=True)


# --- the test email ---------------------------------------------------------------------

def test_test_email_goes_to_the_owner_with_test_subject_and_records_nothing(app, owner,
                                                                        outbox):
    token = csrf_of(owner, "/admin/sequences/welcome/welcome")
    response = owner.post("/admin/sequences/welcome/welcome/test",
                          data={"csrf_token": token}, follow_redirects=True)
    assert response.status_code == 200
    assert f"Test email sent to {OWNER_EMAIL}" in response.get_data(as_text=True)
    messages = outbox.messages()
    assert len(messages) == 1
    message = messages[0]
    assert str(message["Subject"]) == "[Test] Your checklist is here, Jane"
    assert [a.addr_spec for a in message["To"].addresses] == [OWNER_EMAIL]
    assert "/c/" not in message.get_body(("html",)).get_content()
    for model in (Delivery, Enrollment, Event, Link, Lead):
        assert count_rows(app, model) == 0


def test_test_email_through_smtp_and_a_failure_is_one_flashed_line(smtp_app, smtp, clock):
    three_steps(smtp_app)
    owner = owner_of(smtp_app)
    token = csrf_of(owner, "/admin/sequences/course/tips")
    response = owner.post("/admin/sequences/course/tips/test", data={"csrf_token": token})
    assert response.status_code == 302
    assert [str(m["Subject"]) for m in smtp.to(OWNER_EMAIL)] == ["[Test] Three tips"]

    smtp.rcpt_reply = "554 5.7.1 Relay access denied"
    page = owner.post("/admin/sequences/course/tips/test", data={"csrf_token": token},
                      follow_redirects=True).get_data(as_text=True)
    assert "The test email was not sent: recipient refused: SMTP 554" in page
    assert len(smtp.messages) == 1
    assert count_rows(smtp_app, Delivery) == 0


def test_test_email_for_a_chosen_lead_uses_its_data_but_goes_to_the_owner(seq_app):
    folder = Path(seq_app.config["SEQUENCES_DIR"]) / "course"
    write_step(folder, "01-hi.md", "Hello {{ lead.first_name }}", "Hi.", delay=0)
    with seq_app.app_context():
        page = Page(slug="p", title="P", fields=[], rules={}, sequence="course")
        db.session.add(page)
        db.session.flush()
        db.session.add(Lead(email="bo@example.com", name="Bo Lee", public_ref="bo",
                            page_id=page.id))
        db.session.commit()
    owner = owner_of(seq_app)
    token = csrf_of(owner, "/admin/sequences/course/hi")
    owner.post("/admin/sequences/course/hi/test",
               data={"csrf_token": token, "lead": "bo@example.com"})
    message = Outbox(Path(seq_app.instance_path) / "outbox").messages()[0]
    assert str(message["Subject"]) == "[Test] Hello Bo"
    assert [a.addr_spec for a in message["To"].addresses] == [OWNER_EMAIL]


# --- what the list and the step page say (issue 15, item 24) ---------------------------

def test_subjects_in_the_list_are_rendered_for_the_sample_lead(app, owner):
    page = owner.get("/admin/sequences").get_data(as_text=True)
    assert "Your checklist is here, Jane" in row_of(page, "welcome")
    assert "Jane, ready for the full playbook?" in row_of(page, "offer")
    assert "{{" not in page.split("<main", 1)[-1].split("No sequences yet")[0]
    assert "Subjects are shown for the sample lead Jane Doe." in page


def test_a_subject_that_cannot_be_rendered_is_shown_as_written_with_the_reason(seq_app):
    folder = Path(seq_app.config["SEQUENCES_DIR"]) / "course"
    write_step(folder, "01-first.md", "Day {{ 1 // 0 }}", "One.", delay=0)
    owner = owner_of(seq_app)
    page = owner.get("/admin/sequences").get_data(as_text=True)
    row = row_of(page, "first")
    assert "Day {{ 1 // 0 }}" in html.unescape(row)
    assert "Subject as written, not rendered: course/01-first.md: integer division" in row


def test_a_step_with_an_unreadable_delay_is_not_described_as_right_after(seq_app):
    folder = Path(seq_app.config["SEQUENCES_DIR"]) / "course"
    write_step(folder, "01-first.md", "First", "One.", delay=0)
    (folder / "02-second.md").write_text(
        '---\nsubject: Second\ndelay: 2 days\nat: "25:00"\n---\nBody\n')
    owner = owner_of(seq_app)
    row = html.unescape(row_of(owner.get("/admin/sequences").get_data(as_text=True), "second"))
    assert "Right after" not in row
    assert 'Delay unreadable: "2 days" (use 0, 30m, 2h, 3d or 1w)' in row
    assert 'time of day unreadable: "25:00"' in row
    step = html.unescape(owner.get("/admin/sequences/course/second").get_data(as_text=True))
    assert 'Delay unreadable: "2 days"' in step and "Right after" not in step


def test_a_step_that_failed_to_render_shows_the_error_not_rendered_for(seq_app):
    folder = Path(seq_app.config["SEQUENCES_DIR"]) / "course"
    write_step(folder, "01-first.md", "First", "Day {{ 1 // 0 }}.", delay=0)
    (folder / "02-second.md").write_text("---\nsubject: Second\ndelay: soon\n---\nBody\n")
    write_step(folder, "03-third.md", "Third", "Three.", delay=0)
    owner = owner_of(seq_app)
    failed = owner.get("/admin/sequences/course/first").get_data(as_text=True)
    assert "This email cannot be rendered:" in failed
    assert "integer division" in failed
    assert "Rendered for" not in failed
    broken = owner.get("/admin/sequences/course/second").get_data(as_text=True)
    assert "This email is held until its file is fixed" in broken
    assert "Rendered for" not in broken
    fine = owner.get("/admin/sequences/course/third").get_data(as_text=True)
    assert "Rendered for <strong>Jane Doe</strong>" in fine
