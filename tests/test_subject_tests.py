"""Subject tests against a real SMTP server with the clock under the test's control: a
step's subjects drawn per email and counted per subject; a broadcast's test that sends
its share, waits, picks the winner by people's clicks or revenue and sends it to the
rest, exactly once per lead, across restarts and several schedulers; the checks."""

import json
import re
from datetime import timedelta
from pathlib import Path

import jsonschema_rs
import pytest
from sqlalchemy import func, select, update

from capture import scheduler
from capture.access import api_tokens
from capture.api import OPENAPI_FILE
from capture.db import db
from capture.mail import broadcast_sending, broadcast_tests
from capture.models import Broadcast, Delivery, Lead, LeadTag, Page, RollupUnsent
from capture.numbers import metrics, rollups, subject_winners
from capture.numbers.broadcasts import SubjectNumbers, broadcast_subjects
from tests.conftest import HUMAN, owner_client
from tests.factories import add_lead, add_upgrade, sequence_folder, tick

SALE = """---
subject:
  - "Spring sale, {{{{ lead.first_name }}}}"
  - "Last days of the sale"
test: {{share: 20, wait_hours: 4, pick_by: {pick_by}}}
---
Hi, the [sale](https://shop.example.com/sale) is on.
"""
FIRST, SECOND = "Spring sale, ", "Last days of the sale"


@pytest.fixture
def settings(smtp, tmp_path):
    """Sends through the test SMTP server; sequences and broadcasts in tmp folders."""
    (tmp_path / "sequences").mkdir()
    (tmp_path / "broadcasts").mkdir()
    return {"MAIL_BACKEND": "smtp", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": smtp.port,
            "SEQUENCES_DIR": str(tmp_path / "sequences"),
            "BROADCASTS_DIR": str(tmp_path / "broadcasts"),
            "POSTAL_ADDRESS": "1 Main St, Springfield"}


@pytest.fixture
def app(make_app, settings):
    return make_app(**settings)


def write_broadcast(app, name: str, text: str) -> Path:
    path = Path(app.config["BROADCASTS_DIR"]) / f"{name}.md"
    path.write_text(text, encoding="utf-8")
    return path


def list_leads(app, count: int) -> list[int]:
    """`count` subscribed leads tagged `buyer`, on a page with no sequence."""
    with app.app_context():
        page = Page(slug="list", title="The List", fields=[], rules={})
        db.session.add(page)
        db.session.flush()
        ids = []
        for number in range(count):
            lead = Lead(email=f"lead{number:02}@example.com", name=f"Lead{number:02} Doe",
                        public_ref=f"r-{number}", page_id=page.id, review="approved",
                        subscription="subscribed")
            db.session.add(lead)
            db.session.flush()
            db.session.add(LeadTag(lead_id=lead.id, tag="buyer", cause="test"))
            ids.append(lead.id)
        db.session.commit()
        return ids


def run_scheduler(app) -> None:
    """One run of the scheduler's tick job, as `flask scheduler` makes it."""
    scheduler.run_tick(app)


def broadcast(app, name="sale") -> Broadcast:
    with app.app_context():
        row = db.session.scalar(select(Broadcast).where(Broadcast.name == name))
        db.session.expunge(row)
        return row


def recipients(smtp) -> list[str]:
    return [m["To"].addresses[0].addr_spec for m in smtp.messages]


def stored(app) -> dict[str, tuple[str, int | None, str]]:
    """Each lead's broadcast delivery: (status, subject index, subject as sent)."""
    with app.app_context():
        return {email: (status, index, subject) for email, status, index, subject in
                db.session.execute(select(Lead.email, Delivery.status, Delivery.subject_index,
                                          Delivery.subject)
                                   .join(Lead, Lead.id == Delivery.lead_id))}


def click(app, message) -> None:
    """A person clicks the first tracked link of `message` in a browser."""
    html = message.get_body(("html",)).get_content()
    base = re.escape(app.config["BASE_URL"])
    path = re.search(rf'href="{base}(/c/[^"]+)"', html).group(1)
    response = app.test_client().get(path, headers={"User-Agent": HUMAN})
    assert response.status_code == 302


# --- a step's subject test ---------------------------------------------------------------

STEP = """---
subject:
  - "Welcome, {{ lead.first_name }}"
  - "Your guide is here"
delay: 0
---
Here is [your guide](https://example.com/guide).
"""


def test_a_step_gives_each_lead_one_of_its_subjects_and_stores_which(make_app, settings,
                                                                     smtp, clock):
    app = make_app(**settings)
    folder = sequence_folder(app)
    folder.mkdir()
    (folder / "01-welcome.md").write_text(STEP, encoding="utf-8")
    for number in range(40):
        add_lead(app, email=f"ann{number}@example.com", name=f"Ann{number} Lee")
    tick(app)
    assert len(smtp.messages) == 40
    sent = {m["To"].addresses[0].addr_spec: str(m["Subject"]) for m in smtp.messages}
    with app.app_context():
        rows = db.session.execute(select(Lead.email, Delivery.subject_index, Delivery.subject)
                                  .join(Lead, Lead.id == Delivery.lead_id)).all()
    assert {index for _, index, _ in rows} == {0, 1}  # 40 draws: both, but for 2 in 2^40
    for email, index, subject in rows:
        first_name = email.split("@")[0].title()
        expected = f"Welcome, {first_name}" if index == 0 else "Your guide is here"
        assert sent[email] == subject == expected


def test_numbers_per_subject_of_a_step_in_the_report_and_the_dashboard(make_app, settings,
                                                                       smtp, clock):
    app = make_app(**settings)
    folder = sequence_folder(app)
    folder.mkdir()
    (folder / "01-welcome.md").write_text(STEP, encoding="utf-8")
    for number in range(12):
        add_lead(app, email=f"ann{number}@example.com", name=f"Ann{number} Lee")
    tick(app)
    clock.advance(minutes=5)
    guide = [m for m in smtp.messages if str(m["Subject"]) == "Your guide is here"]
    for message in guide[:2]:
        click(app, message)
    result = app.test_cli_runner().invoke(args=["report", "--by", "step"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    step = next(line for line in lines if line.startswith("course"))
    assert step.split()[2] == "12" and step.split()[5] == "2"
    second = next(line for line in lines if "subject 2" in line).split("subject 2")[1]
    assert second.split()[0] == str(len(guide)) and second.split()[3] == "2"
    assert second.rstrip().endswith("Your guide is here")
    first = next(line for line in lines if "subject 1" in line).split("subject 1")[1]
    assert first.split()[0] == str(12 - len(guide)) and first.split()[3] == "0"
    page = owner_client(app).get("/admin/sequences/course/welcome").get_data(as_text=True)
    assert 'data-subject="1"' in page and "Your guide is here" in page
    assert re.search(r'data-subject="1".*?data-metric="clicked">2 ', page, re.S)


# --- a broadcast's test: share, wait, winner, the rest -----------------------------------

def test_a_broadcast_test_sends_the_share_waits_and_sends_the_winner_to_the_rest(
        app, smtp, clock):
    write_broadcast(app, "sale", SALE.format(pick_by="clicks"))
    list_leads(app, 20)
    assert app.test_cli_runner().invoke(args=["broadcasts", "send", "sale"]).exit_code == 0
    run_scheduler(app)
    # The share: 20 % of 20 leads, two with each subject.
    share = list(smtp.messages)
    assert len(share) == 4
    subjects = sorted(str(m["Subject"]).startswith(FIRST) for m in share)
    assert subjects == [False, False, True, True]
    row = broadcast(app)
    assert (row.state, row.test_phase) == ("sending", "waiting")
    assert row.test_until == clock.now + timedelta(hours=4)
    for email, (status, index, subject) in stored(app).items():
        if email in recipients(smtp):
            assert status == "sent" and subject.startswith((FIRST, SECOND)[index])
        else:
            assert (status, index) == ("held", None)
    listed = app.test_cli_runner().invoke(args=["broadcasts", "list"]).output
    assert "sending (waiting)" in listed
    # People click the second subject's email; nothing more goes before the wait is over.
    clock.advance(minutes=5)
    second = [m for m in share if str(m["Subject"]) == SECOND]
    click(app, second[0])
    for _ in range(3):
        clock.advance(hours=1)
        run_scheduler(app)
    assert len(smtp.messages) == 4
    clock.advance(hours=1)  # 14:05, past test_until (14:00)
    run_scheduler(app)
    # The winner went to the 16 others, and nobody had two.
    assert len(smtp.messages) == 20
    assert sorted(set(recipients(smtp))) == sorted(recipients(smtp))
    assert all(str(m["Subject"]) == SECOND for m in smtp.messages[4:])
    row = broadcast(app)
    assert (row.state, row.test_phase, row.winner) == ("sent", "picked", 1)
    assert row.test_result["pick_by"] == "clicks" and not row.test_result["no_data"]
    assert {status for status, _, _ in stored(app).values()} == {"sent"}
    page = owner_client(app).get("/admin/broadcasts/sale").get_data(as_text=True)
    assert "Subject 2 won on clicks: 50.0 % vs 0.0 % (+50.0 points) over 4 delivered" in page
    with app.app_context():
        numbers = broadcast_subjects([db.session.get(Broadcast, row.id)])[row.id]
    assert [(n.delivered, n.clicks, n.winner) for n in numbers] == [(2, 0, False),
                                                                   (18, 1, True)]


def test_a_restart_and_a_second_scheduler_between_phases_change_nothing(
        make_app, settings, smtp, clock):
    app = make_app(**settings)
    write_broadcast(app, "sale", SALE.format(pick_by="clicks"))
    list_leads(app, 10)
    app.test_cli_runner().invoke(args=["broadcasts", "send", "sale"])
    run_scheduler(app)
    assert len(smtp.messages) == 2
    # A new process (the same database, nothing in memory) takes over.
    restarted = make_app(**settings)
    run_scheduler(restarted)
    assert len(smtp.messages) == 2
    clock.advance(hours=4)
    # Two schedulers pick at once: one releases, the other finds it done.
    with restarted.app_context():
        [due] = broadcast_tests.waiting_due(clock.now)
        result = subject_winners.decide(broadcast_subjects([due])[due.id], "clicks")
        assert broadcast_tests.release(due.id, result["winner"], result) == 8
        assert broadcast_tests.release(due.id, result["winner"], result) is None
        assert subject_winners.pick_due(clock.now) == 0
    run_scheduler(app)
    run_scheduler(restarted)
    assert len(smtp.messages) == 10
    assert len(set(recipients(smtp))) == 10
    row = broadcast(app)
    assert (row.state, row.winner) == ("sent", 0)
    # No click in the test: the first subject went, and the page says so.
    assert row.test_result["no_data"]
    page = owner_client(app).get("/admin/broadcasts/sale").get_data(as_text=True)
    assert "No click in the test (2 delivered): subject 1, the first, went to the rest." in page


def test_the_winner_by_revenue_is_the_subject_whose_clicks_earned_most(app, smtp, clock):
    write_broadcast(app, "sale", SALE.format(pick_by="revenue"))
    ids = list_leads(app, 10)
    app.test_cli_runner().invoke(args=["broadcasts", "send", "sale"])
    run_scheduler(app)
    share = list(smtp.messages)
    assert len(share) == 2
    first = next(m for m in share if str(m["Subject"]).startswith(FIRST))
    second = next(m for m in share if str(m["Subject"]) == SECOND)
    clock.advance(minutes=5)
    click(app, first)
    click(app, second)  # a click without a purchase earns nothing
    buyer = ids[int(first["To"].addresses[0].addr_spec[4:6])]
    add_upgrade(app, buyer, "49.00", clock.now + timedelta(minutes=1))
    clock.advance(hours=4)
    run_scheduler(app)
    row = broadcast(app)
    assert row.winner == 0
    assert [s["revenue"] for s in row.test_result["subjects"]] == ["49.00", "0.00"]
    rest = [str(m["Subject"]) for m in smtp.messages[2:]]
    assert len(rest) == 8 and all(subject.startswith(FIRST) for subject in rest)


def test_cancel_while_waiting_sends_nothing_more(app, smtp, clock):
    write_broadcast(app, "sale", SALE.format(pick_by="clicks"))
    list_leads(app, 10)
    app.test_cli_runner().invoke(args=["broadcasts", "send", "sale"])
    run_scheduler(app)
    result = app.test_cli_runner().invoke(args=["broadcasts", "cancel", "sale"])
    assert "8 email(s) not sent, 2 already sent" in result.output
    clock.advance(hours=5)
    run_scheduler(app)
    assert len(smtp.messages) == 2
    assert broadcast(app).test_phase == "waiting"


def test_held_recipients_count_in_the_report_only_once_sent(app, smtp, clock):
    write_broadcast(app, "sale", SALE.format(pick_by="clicks"))
    list_leads(app, 10)
    app.test_cli_runner().invoke(args=["broadcasts", "send", "sale"])
    run_scheduler(app)  # folds the rollups too

    def delivered() -> tuple[int, int]:
        with app.app_context():
            with db.engine.connect() as connection:
                rollups.refresh(connection)
            from_rollups = metrics.report().total.delivered
            from_rows = metrics._from_tables(None, None, None, None)[None].delivered
            return from_rollups, from_rows

    assert delivered() == (2, 2)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(RollupUnsent)) == 8
    clock.advance(hours=4)
    run_scheduler(app)
    assert delivered() == (10, 10)


def test_the_api_and_list_show_subjects_and_the_test(app, smtp, clock):
    write_broadcast(app, "sale", SALE.format(pick_by="clicks"))
    list_leads(app, 10)
    app.test_cli_runner().invoke(args=["broadcasts", "send", "sale"])
    run_scheduler(app)
    clock.advance(hours=4)
    run_scheduler(app)
    with app.app_context():
        token = api_tokens.create("test").token
    answer = app.test_client().get("/api/v1/broadcasts/sale",
                                   headers={"Authorization": f"Bearer {token}"}).get_json()
    assert [s["subject"] for s in answer["subjects"]] == [
        "Spring sale, {{ lead.first_name }}", SECOND]
    assert [s["delivered"] for s in answer["subjects"]] == [9, 1]
    assert [s["winner"] for s in answer["subjects"]] == [True, False]
    assert answer["test"]["phase"] == "picked" and answer["test"]["winner"] == 0
    assert answer["test"]["summary"].startswith("No click in the test")
    document = json.loads(OPENAPI_FILE.read_text(encoding="utf-8"))
    jsonschema_rs.validate({"$ref": "#/components/schemas/Broadcast",
                            "components": document["components"]}, answer)
    report = app.test_cli_runner().invoke(args=["report", "--by", "broadcast"]).output
    assert re.search(r"^\s+subject 1 \(won\)", report, re.M), report


# --- the checks ------------------------------------------------------------------------------

BROADCAST_PROBLEMS = [
    ("subject: [Only one]\n", "bad.md:2: subject: a subject test has 2 to 4 subjects, "
                              "this list has 1"),
    ("subject: [A, B, C, D, E]\n", "bad.md:2: subject: a subject test has 2 to 4"),
    ("subject:\n  - A\n  - ''\n", "bad.md:4: subject 2 is empty"),
    ("subject:\n  - A\n  - A\n", "bad.md:4: subject 2 is the same as subject 1"),
    ("subject:\n  - A\n  - 'Hi {{ lead.nme }}'\n", "bad.md:4: unknown variable 'lead.nme'"),
    ("subject: A\ntest: {share: 20, wait_hours: 4}\n",
     "bad.md:3: test: a test picks the best of several subjects"),
    ("subject: [A, B]\ntest:\n  share: 60\n  wait_hours: 4\n",
     "bad.md:4: test.share: a whole percent of the recipients from 1 to 50, got 60"),
    ("subject: [A, B]\ntest:\n  share: 20\n  wait_hours: 0\n",
     "bad.md:5: test.wait_hours: hours to wait after the share is sent, more than 0"),
    ("subject: [A, B]\ntest: {share: 20, wait_hours: 4, pick_by: opens}\n",
     "bad.md:3: test.pick_by: clicks or revenue, got 'opens'"),
    ("subject: [A, B]\ntest: {share: 20, wait_hours: 4, winner: 1}\n",
     "bad.md:3: test.winner: unknown key"),
    ("subject: [A, B]\ntest: 20\n", "bad.md:3: test: expected share, wait_hours and pick_by"),
]


@pytest.mark.parametrize(("front", "expected"), BROADCAST_PROBLEMS)
def test_broadcasts_check_reports_each_problem_of_a_test_at_its_line(app, smtp, front,
                                                                     expected):
    write_broadcast(app, "bad", f"---\n{front}---\nBody\n")
    checked = app.test_cli_runner().invoke(args=["broadcasts", "check"])
    assert checked.exit_code == 1
    assert expected in checked.output, checked.output
    assert app.test_cli_runner().invoke(args=["broadcasts", "send", "bad"]).exit_code == 1


def test_sequences_check_reports_a_bad_subject_list_and_holds_the_step(app, smtp, clock):
    folder = sequence_folder(app)
    folder.mkdir()
    (folder / "01-welcome.md").write_text("---\nsubject:\n  - Hi\n  - '{{ nope }}'\n---\nB\n",
                                          encoding="utf-8")
    checked = app.test_cli_runner().invoke(args=["sequences", "check"])
    assert checked.exit_code == 1
    assert "course/01-welcome.md:4: unknown variable 'nope'" in checked.output
    add_lead(app)
    tick(app)
    assert smtp.messages == []


def test_a_good_subject_test_passes_both_checks(app):
    write_broadcast(app, "sale", SALE.format(pick_by="revenue"))
    folder = sequence_folder(app)
    folder.mkdir()
    (folder / "01-welcome.md").write_text(STEP, encoding="utf-8")
    runner = app.test_cli_runner()
    assert runner.invoke(args=["broadcasts", "check"]).exit_code == 0
    assert runner.invoke(args=["sequences", "check"]).exit_code == 0


def test_preview_prints_each_subject_and_the_test_email_uses_the_first(app, smtp):
    write_broadcast(app, "sale", SALE.format(pick_by="clicks"))
    folder = sequence_folder(app)
    folder.mkdir()
    (folder / "01-welcome.md").write_text(STEP, encoding="utf-8")
    runner = app.test_cli_runner()
    step = runner.invoke(args=["sequences", "preview", "course", "welcome"]).output
    assert "Subject: Welcome, Jane\nSubject 2: Your guide is here\n" in step
    sale = runner.invoke(args=["broadcasts", "preview", "sale"]).output
    assert f"Subject: Spring sale, Jane\nSubject 2: {SECOND}\n" in sale
    assert runner.invoke(args=["broadcasts", "test", "sale", "me@example.com"]).exit_code == 0
    assert [str(m["Subject"]) for m in smtp.messages] == ["[Test] Spring sale, Jane"]


# --- the winner's rule -----------------------------------------------------------------------

def numbers(*rows) -> list[SubjectNumbers]:
    return [SubjectNumbers(index, f"S{index}", delivered=delivered, clicks=clicks)
            for index, (delivered, clicks) in enumerate(rows)]


def test_the_winner_is_the_best_rate_a_tie_goes_to_the_lower_subject():
    with_rate = subject_winners.decide(numbers((100, 4), (98, 6), (100, 5)), "clicks")
    assert (with_rate["winner"], with_rate["runner_up"]) == (1, 2)
    assert broadcast_tests.outcome(with_rate) == (
        "Subject 2 won on clicks: 6.1 % vs 5.0 % (+1.1 points) over 298 delivered.")
    tie = subject_winners.decide(numbers((100, 5), (100, 5)), "clicks")
    assert (tie["winner"], tie["no_data"]) == (0, False)
    assert broadcast_tests.outcome(tie).startswith("Subject 1 and subject 2 tied on clicks")
    nothing = subject_winners.decide(numbers((0, 0), (0, 0)), "clicks")
    assert (nothing["winner"], nothing["no_data"]) == (0, True)
    assert broadcast_tests.outcome(nothing).startswith("No email delivered in the test")


def test_the_share_is_rounded_half_up():
    assert [broadcast_tests.in_share(n, 20) for n in (1, 2, 3, 5, 10, 12)] == [
        0, 0, 1, 1, 2, 2]
    assert broadcast_tests.in_share(1, 50) == 1


def test_taking_again_draws_the_same_share(app, clock):
    write_broadcast(app, "sale", SALE.format(pick_by="clicks"))
    list_leads(app, 30)
    app.test_cli_runner().invoke(args=["broadcasts", "send", "sale"])

    def take() -> dict[int, int | None]:
        with app.app_context():
            broadcast_sending.start_due(clock.now)
            broadcast_id = db.session.scalar(select(Broadcast.id))
            while broadcast_sending.take_chunk(broadcast_id, clock.now) is not None:
                pass
            return dict(db.session.execute(
                select(Delivery.lead_id, Delivery.subject_index)
                .where(Delivery.status == "queued")).all())

    first = take()
    assert len(first) == 6 and sorted(first.values()) == [0, 0, 0, 1, 1, 1]
    with app.app_context():
        db.session.execute(update(Delivery).values(status="queued"))
        db.session.query(Delivery).delete()
        db.session.execute(update(Broadcast).values(taken_through=0, taken_at=None,
                                                    recipients=0))
        db.session.commit()
    assert take() == first
