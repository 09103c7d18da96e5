"""Step conditions (`when:`) and `stop_on: [tag:NAME]`: a step sent when its segment
holds for the lead and skipped (with a `skip` event) when not, checked with file:line,
planned as the scheduler does it, shown in words; a stop tag stops the sequence when
the lead gets it and when a step is due."""

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from capture.db import db
from capture.leads import tags
from capture.mail import condition_checks
from capture.models import Delivery, Enrollment, Event, LeadTag, Page
from capture.segments import language, words
from tests.factories import add_event, add_lead, deliveries, sequence_folder, subjects, tick


def step_file(folder, filename: str, subject: str, front: str = "", body: str = "Hello.") -> None:
    """A step file with `front` as extra front matter lines (a `when:` block …)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / filename).write_text(f"---\nsubject: {subject}\n{front}---\n{body}\n",
                                   encoding="utf-8")


def vip_course(app, when: str = "when:\n  tags: [vip]\n"):
    """Welcome at once; `vip` a day later, only when `when` holds; the offer 2 days after."""
    folder = sequence_folder(app)
    step_file(folder, "01-welcome.md", "Welcome", "delay: 0\n")
    step_file(folder, "02-vip.md", "For VIPs", f"delay: 1d\n{when}")
    step_file(folder, "03-offer.md", "An offer", "delay: 2d\n")
    return folder


def recipients(smtp) -> list[str]:
    """The address each message went to, in order."""
    return [re.search(r"<(.+)>", str(m["To"])).group(1) for m in smtp.messages]


def tag(app, lead_id: int, *names: str) -> None:
    with app.app_context():
        tags.add_tags([lead_id], names, "test")
        db.session.commit()


def enrollment_of(app, lead_id: int) -> Enrollment:
    with app.app_context():
        enrollment = db.session.scalar(select(Enrollment).where(Enrollment.lead_id == lead_id))
        db.session.expunge(enrollment)
        return enrollment


def skips(app, lead_id: int) -> list[dict]:
    with app.app_context():
        return [event.data for event in db.session.scalars(
            select(Event).where(Event.lead_id == lead_id, Event.kind == "skip"))]


def test_a_step_whose_condition_holds_is_sent(smtp_app, smtp, clock):
    vip_course(smtp_app)
    lead_id = add_lead(smtp_app)
    tick(smtp_app)
    tag(smtp_app, lead_id, "vip")
    clock.advance(days=1)
    assert tick(smtp_app).sent == 1
    assert subjects(smtp) == ["Welcome", "For VIPs"]
    assert skips(smtp_app, lead_id) == []


def test_a_step_whose_condition_fails_is_skipped_and_the_next_counts_from_the_skip(
        smtp_app, smtp, clock):
    vip_course(smtp_app)
    lead_id = add_lead(smtp_app)
    tick(smtp_app)
    clock.advance(days=1)
    summary = tick(smtp_app)
    assert (summary.sent, summary.skipped) == (0, 1)
    assert "skipped 1" in summary.line()
    assert skips(smtp_app, lead_id) == [
        {"sequence": "course", "step": "vip", "reason": "when: not matched (tagged vip)"}]
    assert deliveries(smtp_app, lead_id) == [("welcome", "sent")]
    enrollment = enrollment_of(smtp_app, lead_id)
    assert (enrollment.state, enrollment.last_step) == ("active", "vip")
    assert enrollment.next_due_at == clock.now + timedelta(days=2)
    clock.advance(days=2, minutes=-1)
    assert tick(smtp_app).sent == 0
    clock.advance(minutes=1)
    tick(smtp_app)
    assert subjects(smtp) == ["Welcome", "An offer"]


def test_a_skipped_step_lets_a_next_step_due_at_once_go_in_the_same_tick(smtp_app, smtp, clock):
    folder = sequence_folder(smtp_app)
    step_file(folder, "01-vip.md", "For VIPs", "delay: 0\nwhen:\n  tags: {any: [vip]}\n")
    step_file(folder, "02-welcome.md", "Welcome", "delay: 0\n")
    step_file(folder, "03-later.md", "Later", "delay: 1d\nwhen:\n  upgraded: true\n")
    lead_id = add_lead(smtp_app)
    summary = tick(smtp_app)
    assert (summary.sent, summary.skipped) == (1, 1)
    assert subjects(smtp) == ["Welcome"]
    clock.advance(days=1)
    tick(smtp_app)
    assert [data["step"] for data in skips(smtp_app, lead_id)] == ["vip", "later"]
    assert enrollment_of(smtp_app, lead_id).state == "waiting"


def test_conditions_on_fields_and_clicks_pick_each_lead(smtp_app, smtp, clock):
    folder = sequence_folder(smtp_app)
    step_file(folder, "01-pro.md", "For pro", "delay: 0\nwhen:\n  fields: {plan: pro}\n")
    step_file(folder, "02-clickers.md", "For clickers",
              "delay: 1h\nwhen:\n  clicked: {within_days: 7}\n  tags:\n    none: [churned]\n")
    pro = add_lead(smtp_app, email="pro@example.com", fields={"plan": "pro"})
    free = add_lead(smtp_app, email="free@example.com", fields={"plan": "free"})
    churned = add_lead(smtp_app, email="gone@example.com", fields={"plan": "pro"})
    tag(smtp_app, churned, "churned")
    tick(smtp_app)
    assert sorted(recipients(smtp)) == ["gone@example.com", "pro@example.com"]
    for lead_id in (pro, churned):
        add_event(smtp_app, lead_id, "click", clock.now, url="https://example.com")
    add_event(smtp_app, free, "click", clock.now, machine=True, url="https://example.com")
    clock.advance(hours=1)
    tick(smtp_app)
    assert recipients(smtp)[2:] == ["pro@example.com"]
    assert [d["step"] for d in skips(smtp_app, free)] == ["pro", "clickers"]
    assert [d["step"] for d in skips(smtp_app, churned)] == ["clickers"]


def check(app):
    return app.test_cli_runner().invoke(args=["sequences", "check"])


def test_a_bad_condition_fails_check_at_its_line_and_holds_the_step(smtp_app, smtp, clock):
    vip_course(smtp_app, when="when:\n  tagz: [vip]\n  clicked: {within_days: lots}\n")
    lead_id = add_lead(smtp_app)
    result = check(smtp_app)
    assert result.exit_code == 1
    assert "course/02-vip.md:5: when.tagz: unknown key (did you mean tags?)" in result.stdout
    assert ("course/02-vip.md:6: when.clicked.within_days: 'lots': write a whole number"
            in result.stdout)
    tick(smtp_app)
    clock.advance(days=3)
    summary = tick(smtp_app)
    assert summary.held == 1 and summary.skipped == 0
    assert subjects(smtp) == ["Welcome"]
    assert enrollment_of(smtp_app, lead_id).state == "waiting"


@pytest.mark.parametrize("when, message", [
    ("when:\n  pages: [webinar]\n", "when.pages: no page 'webinar'"),
    ("when:\n  in_sequence: [cource]\n", "when: no sequence folder 'cource'"),
    ("when:\n  opened: {broadcast: launch}\n", "when: no broadcast 'launch'"),
], ids=["page", "sequence", "broadcast"])
def test_a_condition_naming_what_does_not_exist_fails_check_and_holds(
        smtp_app, smtp, clock, when, message):
    vip_course(smtp_app, when=when)
    lead_id = add_lead(smtp_app)
    result = check(smtp_app)
    assert result.exit_code == 1
    assert f"course/02-vip.md:4: {message}" in result.stdout
    tick(smtp_app)
    clock.advance(days=3)
    summary = tick(smtp_app)
    assert (summary.held, summary.skipped) == (1, 0)
    assert subjects(smtp) == ["Welcome"]
    enrollment = enrollment_of(smtp_app, lead_id)
    # Looked at again later: the page or the tag may appear without a file changing.
    assert enrollment.state == "active" and enrollment.next_due_at > clock.now


def test_a_tag_nothing_gives_fails_check_but_the_step_still_goes_as_skipped(smtp_app, smtp,
                                                                            clock):
    vip_course(smtp_app, when="when:\n  tags: {any: [vip], none: [from-page]}\n")
    lead_id = add_lead(smtp_app)
    result = check(smtp_app)
    assert result.exit_code == 1, result.stdout
    assert reported_tags(result) == [
        "course/02-vip.md:4: when.tags: no page, link or lead gives the tag 'vip'",
        "course/02-vip.md:4: when.tags: no page, link or lead gives the tag 'from-page'"]
    with smtp_app.app_context():
        db.session.scalar(select(Page)).tags = ["from-page"]
        db.session.commit()
    assert [n.split("'")[1] for n in reported_tags(check(smtp_app))] == ["vip"]
    tag(smtp_app, add_lead(smtp_app, email="bo@example.com"), "vip")
    assert reported_tags(check(smtp_app)) == []
    assert check(smtp_app).exit_code == 0
    tick(smtp_app)
    clock.advance(days=1)
    assert tick(smtp_app).skipped == 1
    assert [d["step"] for d in skips(smtp_app, lead_id)] == ["vip"]


def reported_tags(result) -> list[str]:
    return [line for line in result.stdout.splitlines() if "when.tags: " in line]


def stop_on_vip(app) -> None:
    folder = vip_course(app, when="")
    (folder / "sequence.yml").write_text("stop_on: [upgrade, \"tag:vip\"]\n")


def test_stop_on_tag_stops_the_sequence_when_the_lead_gets_the_tag(smtp_app, smtp, clock):
    stop_on_vip(smtp_app)
    lead_id = add_lead(smtp_app)
    other = add_lead(smtp_app, email="bo@example.com")
    tick(smtp_app)
    tag(smtp_app, lead_id, "vip")
    tag(smtp_app, other, "buyer")
    enrollment = enrollment_of(smtp_app, lead_id)
    assert (enrollment.state, enrollment.stop_reason) == ("stopped", "tag:vip")
    assert enrollment_of(smtp_app, other).state == "active"
    clock.advance(days=5)
    tick(smtp_app)
    assert recipients(smtp).count("ann@example.com") == 1


def test_stop_on_tag_is_checked_when_a_step_is_due(smtp_app, smtp, clock):
    stop_on_vip(smtp_app)
    lead_id = add_lead(smtp_app)
    tick(smtp_app)
    with smtp_app.app_context():  # a tag written behind add_tags' back
        db.session.add(LeadTag(lead_id=lead_id, tag="vip", cause="test"))
        db.session.commit()
    clock.advance(days=1)
    assert tick(smtp_app).stopped == 1
    enrollment = enrollment_of(smtp_app, lead_id)
    assert (enrollment.state, enrollment.stop_reason) == ("stopped", "tag:vip")
    assert subjects(smtp) == ["Welcome"]


def test_stop_on_tag_must_be_a_tag_name(smtp_app):
    folder = vip_course(smtp_app, when="")
    (folder / "sequence.yml").write_text("from: a@b.example\nstop_on: [\"tag:VIP\"]\n")
    result = check(smtp_app)
    assert result.exit_code == 1
    assert ("course/sequence.yml:2: stop_on: 'tag:VIP': tag 'VIP' must be lowercase: 'vip'"
            in result.stdout)


def test_plan_shows_a_skip_as_the_scheduler_will_do_it(smtp_app, smtp, clock):
    vip_course(smtp_app)
    add_lead(smtp_app)
    vip = add_lead(smtp_app, email="vip@example.com")
    tag(smtp_app, vip, "vip")
    tick(smtp_app)
    result = smtp_app.test_cli_runner().invoke(args=["sequences", "plan", "--days", "5"])
    lines = [re.sub(r"\s+", " ", line) for line in result.stdout.splitlines()]
    assert "2026-03-03 10:00 ann@example.com course vip (skipped: when: not matched now)" in lines
    assert "2026-03-05 10:00 ann@example.com course offer" in lines
    assert "2026-03-03 10:00 vip@example.com course vip" in lines
    assert "2026-03-05 10:00 vip@example.com course offer" in lines
    clock.advance(days=1)
    tick(smtp_app)
    clock.advance(days=2)
    tick(smtp_app)
    assert list(zip(recipients(smtp), subjects(smtp)))[2:] == [
        ("vip@example.com", "For VIPs"), ("ann@example.com", "An offer"),
        ("vip@example.com", "An offer")]


def test_a_when_is_described_in_words():
    segment = language.parse({"tags": {"any": ["vip", "buyer"], "none": ["churned"]},
                              "clicked": {"within_days": 7}, "fields": {"plan": "pro"}})
    assert words.describe(segment) == (
        "tagged vip or buyer, not tagged churned, whose plan is pro and who clicked an "
        "email in the last 7 days")
    assert words.describe(language.parse({})) == "(any lead)"


@pytest.fixture
def app(make_app, tmp_path):
    """The dashboard's app, with its own sequences folder."""
    (tmp_path / "sequences").mkdir()
    return make_app(SEQUENCES_DIR=str(tmp_path / "sequences"))


def test_dashboard_shows_conditions_stop_tags_and_skips_in_words(app, owner, clock):
    stop_on_vip(app)
    step_file(sequence_folder(app), "02-vip.md", "For VIPs",
              "delay: 1d\nwhen:\n  clicked: true\n  pages: [course-page]\n")
    lead_id = add_lead(app)
    tick(app)
    clock.advance(days=1)
    tick(app)
    page = owner.get("/admin/sequences").get_data(as_text=True)
    assert ("Only to leads who opted in on course-page and who clicked an email when it is "
            "due; skipped for the others") in page
    assert "buys an upgrade, gets the tag <span class=\"tag\">vip</span>" in page
    assert "Worth a look" not in page
    step_page = owner.get("/admin/sequences/course/vip").get_data(as_text=True)
    assert "only to leads who opted in on course-page and who clicked an email" in step_page
    timeline = owner.get(f"/admin/leads/{lead_id}").get_data(as_text=True)
    assert re.search(r"Skipped <span class=\"muted\">\(course · vip\)</span>: when: not matched",
                     timeline)


def test_one_query_says_which_leads_of_a_chunk_a_when_holds_for(smtp_app, clock):
    vip_course(smtp_app)
    ids = [add_lead(smtp_app, email=f"l{n}@example.com") for n in range(5)]
    tag(smtp_app, ids[1], "vip")
    tag(smtp_app, ids[3], "vip")
    with smtp_app.app_context():
        from capture.mail.library import Library

        step = Library.current().get("course").step("vip")
        statements = []
        from sqlalchemy import event

        listen = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", listen)
        try:
            assert condition_checks.matching(step, ids) == {ids[1], ids[3]}
        finally:
            event.remove(db.engine, "before_cursor_execute", listen)
        assert len(statements) == 1
        assert db.session.scalar(select(Delivery.id)) is None


def test_dashboard_shows_a_tag_nothing_gives_as_worth_a_look_not_a_held_step(app, owner):
    vip_course(app)
    page = owner.get("/admin/sequences").get_data(as_text=True)
    assert "Worth a look" in page
    assert "course/02-vip.md:4: when.tags: no page, link or lead gives the tag &#39;vip&#39;" in page
    assert "problems in your sequence files" not in page
    assert "held: fix the file" not in page


def test_dashboard_marks_a_step_whose_when_names_no_page_as_held(app, owner):
    vip_course(app, when="when:\n  pages: [webnar]\n")
    page = owner.get("/admin/sequences").get_data(as_text=True)
    assert "course/02-vip.md:4: when.pages: no page &#39;webnar&#39;" in page
    assert "held: fix the file" in page


def test_a_skip_on_a_second_time_through_names_its_entry(smtp_app, smtp, clock):
    folder = sequence_folder(smtp_app, "again")
    (folder / "sequence.yml").parent.mkdir(parents=True, exist_ok=True)
    (folder / "sequence.yml").write_text("start_on:\n  - tag: go\nreenter: true\n")
    step_file(folder, "01-vip.md", "For VIPs", "delay: 0\nwhen:\n  tags: [vip]\n")
    lead_id = add_lead(smtp_app, sequence=None)
    for _ in range(2):
        with smtp_app.app_context():
            tags.remove_tags([lead_id], ["go"], "dashboard")
            tags.add_tags([lead_id], ["go"], "dashboard")
            db.session.commit()
        tick(smtp_app)
        clock.advance(minutes=5)
    assert [event.get("entry") for event in skips(smtp_app, lead_id)] == [None, 2]
    assert subjects(smtp) == []
