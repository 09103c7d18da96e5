"""Sequence triggers: `start_on` (optin, tag, click, upgrade) and `reenter` in
sequence.yml, a lead in several sequences at once, and what `check`, `plan` and the
dashboard say about them."""

import re
from decimal import Decimal

from sqlalchemy import select

from capture.db import db
from capture.leads import tags
from capture.leads.upgrades import record_upgrade
from capture.mail import membership
from capture.models import Delivery, Enrollment, Event, Lead, Page, Suppression
from tests.conftest import HUMAN, confirm, create_page, optin, owner_client
from tests.factories import add_lead, sequence_folder, subjects, tick, write_step

BASE = "http://127.0.0.1:5000"


def sequence(app, name, settings="", steps=(("01-hello.md", "Hello", "0"),)):
    """A sequence folder with `settings` as its sequence.yml and one email per step
    (subject "<name>: <subject>")."""
    folder = sequence_folder(app, name)
    for filename, subject, delay in steps:
        write_step(folder, filename, f"{name}: {subject}", f"This is {name}.", delay=delay)
    if settings:
        (folder / "sequence.yml").write_text(settings, encoding="utf-8")
    return folder


def cli(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def enroll_events(app, lead_id):
    with app.app_context():
        return [(e.data["sequence"], e.data.get("trigger"), e.data.get("entry"))
                for e in db.session.scalars(select(Event).where(
                    Event.lead_id == lead_id, Event.kind == "enroll").order_by(Event.id))]


def give_tag(app, lead_id, name, cause="dashboard"):
    with app.app_context():
        tags.add_tags([lead_id], [name], cause)
        db.session.commit()


def test_an_optin_trigger_starts_the_sequence_beside_the_pages_own(smtp_app, smtp, clock):
    sequence(smtp_app, "course")
    sequence(smtp_app, "launch-extra", "start_on:\n  - optin: [launch]\n")
    create_page(smtp_app, slug="launch", double_opt_in=False, sequence="course")
    response = optin(smtp_app.test_client(), "launch", email="ann@example.com")
    assert response.status_code == 303
    tick(smtp_app)
    assert sorted(subjects(smtp)) == ["course: Hello", "launch-extra: Hello"]
    with smtp_app.app_context():
        lead_id = db.session.scalar(select(Lead.id))
    assert sorted(enroll_events(smtp_app, lead_id)) == [
        ("course", "optin:launch", None), ("launch-extra", "optin:launch", None)]


def test_a_confirmed_double_optin_starts_its_optin_trigger_then(smtp_app, smtp, clock):
    sequence(smtp_app, "extra", "start_on: [{optin: [offer]}]\n")
    create_page(smtp_app, slug="offer")  # double opt-in, no sequence of its own
    optin(smtp_app.test_client(), "offer", email="ann@example.com")
    tick(smtp_app)
    assert "extra: Hello" not in subjects(smtp)  # not before the lead confirms
    link = re.search(r"(/confirm/[^\s\"]+)", smtp.messages[0].get_body(("plain",))
                     .get_content()).group(1)
    assert confirm(smtp_app.test_client(), link).status_code == 200
    tick(smtp_app)
    assert subjects(smtp).count("extra: Hello") == 1


def test_a_tag_trigger_starts_the_sequence_whatever_gives_the_tag(smtp_app, smtp, clock):
    sequence(smtp_app, "vip", "start_on:\n  - tag: vip\n")
    lead_id = add_lead(smtp_app, sequence=None)
    tick(smtp_app)
    assert subjects(smtp) == []
    give_tag(smtp_app, lead_id, "vip", "api")
    tick(smtp_app)
    assert subjects(smtp) == ["vip: Hello"]
    assert enroll_events(smtp_app, lead_id) == [("vip", "tag:vip", None)]


def test_a_page_tag_starts_a_tag_sequence_at_optin(smtp_app, smtp, clock):
    sequence(smtp_app, "vip", "start_on: [{tag: webinar}]\n")
    create_page(smtp_app, slug="webinar", double_opt_in=False, tags=["webinar"])
    optin(smtp_app.test_client(), "webinar", email="ann@example.com")
    tick(smtp_app)
    assert subjects(smtp) == ["vip: Hello"]


def test_a_human_click_on_a_matching_link_starts_the_click_sequence(smtp_app, smtp, clock):
    folder = sequence_folder(smtp_app, "course")
    write_step(folder, "01-hi.md", "Hi", "See [pricing](https://shop.example/pricing?x=1) "
               "or [the blog](https://shop.example/blog).", delay=0)
    sequence(smtp_app, "pricing-followup", 'start_on:\n  - click: "/pricing"\n')
    lead_id = add_lead(smtp_app)
    tick(smtp_app)
    html = smtp.messages[0].get_body(("html",)).get_content()
    clock.advance(minutes=10)
    client = smtp_app.test_client()
    blog = re.search(rf'href="{BASE}(/c/[^"]+)"[^>]*>the blog<', html).group(1)
    pricing = re.search(rf'href="{BASE}(/c/[^"]+)"[^>]*>pricing<', html).group(1)
    client.get(blog, headers={"User-Agent": HUMAN})
    client.get(pricing, headers={"User-Agent": "Mozilla/5.0 (compatible; Barracuda)"})
    tick(smtp_app)
    assert subjects(smtp) == ["Hi"]  # the blog does not match; a scanner is no person
    client.get(pricing, headers={"User-Agent": HUMAN})
    tick(smtp_app)
    assert subjects(smtp) == ["Hi", "pricing-followup: Hello"]
    assert enroll_events(smtp_app, lead_id)[-1] == ("pricing-followup", "click:/pricing", None)


def test_an_upgrade_starts_the_upgrade_sequence(smtp_app, smtp, clock):
    sequence(smtp_app, "buyers", "start_on: [{upgrade: true}]\n")
    lead_id = add_lead(smtp_app, sequence=None)
    with smtp_app.app_context():
        record_upgrade(db.session.get(Lead, lead_id), Decimal("19"), "USD", "t1", "api")
        record_upgrade(db.session.get(Lead, lead_id), Decimal("19"), "USD", "t1", "api")
    tick(smtp_app)
    assert subjects(smtp) == ["buyers: Hello"]
    assert enroll_events(smtp_app, lead_id) == [("buyers", "upgrade", None)]


def test_only_subscribed_approved_unsuppressed_leads_are_started(smtp_app, smtp, clock):
    sequence(smtp_app, "vip", "start_on: [{tag: vip}]\n")
    unsubscribed = add_lead(smtp_app, "un@example.com", sequence=None)
    pending = add_lead(smtp_app, "pe@example.com")
    suppressed = add_lead(smtp_app, "su@example.com")
    with smtp_app.app_context():
        db.session.get(Lead, unsubscribed).subscription = "unsubscribed"
        db.session.get(Lead, pending).review = "pending"
        db.session.add(Suppression(email="su@example.com", reason="deleted"))
        db.session.flush()
        tags.add_tags([unsubscribed, pending, suppressed], ["vip"], "import")
        db.session.commit()
    tick(smtp_app)
    assert subjects(smtp) == []


def _finish(app, lead_id, tag="vip"):
    give_tag(app, lead_id, tag)
    tick(app)
    with app.app_context():
        tags.remove_tags([lead_id], [tag], "dashboard")
        db.session.commit()
    give_tag(app, lead_id, tag)
    tick(app)


def test_a_lead_does_not_start_a_sequence_again_by_default(smtp_app, smtp, clock):
    sequence(smtp_app, "vip", "start_on: [{tag: vip}]\n")
    lead_id = add_lead(smtp_app, sequence=None)
    _finish(smtp_app, lead_id)
    assert subjects(smtp) == ["vip: Hello"]
    assert len(enroll_events(smtp_app, lead_id)) == 1


def test_reenter_starts_a_finished_sequence_over_from_the_first_step(smtp_app, smtp, clock):
    sequence(smtp_app, "vip", "start_on: [{tag: vip}]\nreenter: true\n",
             steps=[("01-one.md", "One", "0"), ("02-two.md", "Two", "1d")])
    lead_id = add_lead(smtp_app, sequence=None)
    give_tag(smtp_app, lead_id, "vip")
    tick(smtp_app)
    # Not finished yet: a trigger while the lead is in it changes nothing.
    with smtp_app.app_context():
        tags.remove_tags([lead_id], ["vip"], "dashboard")
        db.session.commit()
    give_tag(smtp_app, lead_id, "vip")
    clock.advance(days=1)
    tick(smtp_app)
    assert subjects(smtp) == ["vip: One", "vip: Two"]
    _finish(smtp_app, lead_id)
    clock.advance(days=1)
    tick(smtp_app)
    assert subjects(smtp) == ["vip: One", "vip: Two", "vip: One", "vip: Two"]
    assert enroll_events(smtp_app, lead_id) == [("vip", "tag:vip", None),
                                                ("vip", "tag:vip", 2)]
    with smtp_app.app_context():
        entries = sorted(db.session.execute(select(Delivery.step, Delivery.entry)).all())
        [enrollment] = db.session.scalars(select(Enrollment))
    assert entries == [("one", 1), ("one", 2), ("two", 1), ("two", 2)]
    assert (enrollment.entry, enrollment.state) == (2, "waiting")


def test_two_sequences_at_once_progress_on_their_own_and_never_double_send(
        smtp_app, smtp, clock):
    three = [("01-a.md", "A", "0"), ("02-b.md", "B", "1d"), ("03-c.md", "C", "2d")]
    sequence(smtp_app, "course", steps=three)
    sequence(smtp_app, "vip", "start_on: [{tag: vip}]\n",
             steps=[("01-x.md", "X", "0"), ("02-y.md", "Y", "1d")])
    ann = add_lead(smtp_app)
    bo = add_lead(smtp_app, "bo@example.com", "Bo")
    clock.advance(hours=12)
    give_tag(smtp_app, ann, "vip")
    for _ in range(16):
        tick(smtp_app)
        tick(smtp_app)
        clock.advance(hours=6)
    with smtp_app.app_context():
        sent = sorted(db.session.execute(
            select(Delivery.lead_id, Delivery.sequence, Delivery.step)).all())
        positions = dict(db.session.execute(
            select(Enrollment.sequence, Enrollment.last_step)
            .where(Enrollment.lead_id == ann)).all())
    assert sent == sorted([(ann, "course", s) for s in "abc"] + [(ann, "vip", "x"),
                          (ann, "vip", "y")] + [(bo, "course", s) for s in "abc"])
    assert len(smtp.messages) == 8
    assert positions == {"course": "c", "vip": "y"}


def test_racing_ticks_send_each_step_of_both_sequences_once(smtp_app, smtp, clock):
    import threading

    sequence(smtp_app, "course")
    sequence(smtp_app, "vip", "start_on: [{tag: vip}]\n")
    leads = [add_lead(smtp_app, f"l{n}@example.com", f"L{n}") for n in range(6)]
    with smtp_app.app_context():
        tags.add_tags(leads, ["vip"], "import")
        db.session.commit()
    threads = [threading.Thread(target=tick, args=(smtp_app,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tick(smtp_app)
    assert sorted(subjects(smtp)) == ["course: Hello"] * 6 + ["vip: Hello"] * 6


BAD = """from: a@example.com
start_on:
  - optin: [nowhere]
  - tag: VIP
  - click: ""
  - upgrade: false
  - bought: true
  - tag: vip
reenter: maybe
"""


def test_check_names_each_bad_trigger_at_its_line(smtp_app):
    sequence(smtp_app, "vip", BAD)
    result = cli(smtp_app, "sequences", "check")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert "vip/sequence.yml:3: start_on: optin: no page 'nowhere'" in lines
    assert "vip/sequence.yml:4: start_on: tag: tag 'VIP' must be lowercase: 'vip'" in lines
    assert any(line.startswith("vip/sequence.yml:5: start_on: click: expected") for line in lines)
    assert "vip/sequence.yml:6: start_on: upgrade: the only value is true" in lines
    assert any(line.startswith("vip/sequence.yml:7: start_on: unknown trigger 'bought'")
               for line in lines)
    assert any(line.startswith("vip/sequence.yml:8: start_on: tag: no page, link or lead")
               for line in lines)
    assert "vip/sequence.yml:9: reenter: 'maybe' is not true or false" in lines


def test_an_upgrade_trigger_with_stop_on_upgrade_is_a_problem(smtp_app):
    sequence(smtp_app, "buyers", "stop_on: [upgrade]\nstart_on:\n  - upgrade: true\n")
    result = cli(smtp_app, "sequences", "check")
    assert result.exit_code == 1
    assert ("buyers/sequence.yml:3: start_on: upgrade: the sequence also has stop_on: upgrade"
            in result.output.splitlines())


def test_a_trigger_naming_an_unknown_page_holds_the_sequence(smtp_app, smtp, clock):
    sequence(smtp_app, "vip", "start_on:\n  - optin: [nowhere]\n  - tag: vip\n")
    lead_id = add_lead(smtp_app, sequence=None)
    give_tag(smtp_app, lead_id, "vip")
    tick(smtp_app)
    assert subjects(smtp) == []
    assert enroll_events(smtp_app, lead_id) == []
    # Once the page exists, the sequence's triggers fire again.
    create_page(smtp_app, slug="nowhere")
    with smtp_app.app_context():
        tags.remove_tags([lead_id], ["vip"], "dashboard")
        db.session.commit()
    give_tag(smtp_app, lead_id, "vip")
    tick(smtp_app)
    assert subjects(smtp) == ["vip: Hello"]


def _loop(app):
    folder = sequence_folder(app, "alpha")
    write_step(folder, "01-a.md", "A", '[go](https://example.com/b "tag:beta-fan")', delay=0)
    (folder / "sequence.yml").write_text("start_on:\n  - tag: alpha-fan\n", encoding="utf-8")
    folder = sequence_folder(app, "beta")
    write_step(folder, "01-b.md", "B", '[go](https://example.com/a "tag:alpha-fan")', delay=0)
    (folder / "sequence.yml").write_text("reenter: true\nstart_on:\n  - tag: beta-fan\n",
                                         encoding="utf-8")


def test_check_refuses_a_tag_loop_between_sequences(smtp_app, smtp, clock):
    _loop(smtp_app)
    result = cli(smtp_app, "sequences", "check")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert ("alpha/sequence.yml:2: start_on: tag loop: alpha tags beta-fan → starts beta"
            " → tags alpha-fan → starts alpha") in lines
    assert ("beta/sequence.yml:3: start_on: tag loop: beta tags alpha-fan → starts alpha"
            " → tags beta-fan → starts beta") in lines
    lead_id = add_lead(smtp_app, sequence=None)
    give_tag(smtp_app, lead_id, "alpha-fan")
    tick(smtp_app)
    assert subjects(smtp) == []


def test_a_sequence_that_tags_itself_is_a_loop(smtp_app):
    folder = sequence_folder(smtp_app, "alpha")
    write_step(folder, "01-a.md", "A", '[go](https://example.com/b "tag:again")', delay=0)
    (folder / "sequence.yml").write_text("start_on: [{tag: again}]\n", encoding="utf-8")
    result = cli(smtp_app, "sequences", "check")
    assert "alpha/sequence.yml:1: start_on: tag loop: alpha tags again → starts alpha" \
        in result.output.splitlines()


def test_good_triggers_pass_check(smtp_app):
    create_page(smtp_app, slug="launch", tags=["vip"])
    sequence(smtp_app, "vip", "start_on:\n  - optin: [launch]\n  - tag: vip\n"
             '  - click: "/pricing"\n  - upgrade: true\nreenter: true\n')
    result = cli(smtp_app, "sequences", "check")
    assert result.exit_code == 0, result.output


def test_plan_shows_the_triggers_and_every_enrolment_of_a_lead(smtp_app, smtp, clock):
    sequence(smtp_app, "course", steps=[("01-a.md", "A", "0"), ("02-b.md", "B", "1d")])
    sequence(smtp_app, "vip", "start_on: [{tag: vip}]\nreenter: true\n")
    ann = add_lead(smtp_app)
    tick(smtp_app)
    give_tag(smtp_app, ann, "vip")
    result = cli(smtp_app, "sequences", "plan", "--lead", "ann@example.com")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == ("vip: Starts when a lead gets the tag vip; a lead may start again "
                        "after finishing.")
    assert "ann@example.com in course (time 1): waiting, had a" not in lines
    assert "ann@example.com in course (time 1): active, had a, next at 2026-03-03 10:00" \
        in lines
    assert "ann@example.com in vip (time 1): active, no email yet, next at 2026-03-02 10:00" \
        in lines
    rows = [line.split() for line in lines if line.startswith("2026-")]
    assert [(row[3], row[4]) for row in rows] == [("vip", "hello"), ("course", "b")]


def test_the_dashboard_says_the_triggers_in_words(smtp_app):
    create_page(smtp_app, slug="launch")
    sequence(smtp_app, "vip", "start_on:\n  - optin: [launch]\n  - tag: vip\n"
             "  - upgrade: true\nreenter: true\n")
    sequence(smtp_app, "held", "start_on: [{optin: [gone]}]\n")
    html = owner_client(smtp_app).get("/admin/sequences").get_data(as_text=True)
    assert ("Starts when a lead opts in on launch, gets the tag vip or buys an upgrade; "
            "a lead may start again after finishing.") in html
    assert "triggers held" in html and "no page &#39;gone&#39;" in html


def test_enroll_is_idempotent_for_a_lead_in_several_sequences(smtp_app, clock):
    sequence(smtp_app, "course")
    sequence(smtp_app, "extra", "start_on: [{optin: [course-page]}]\n")
    lead_id = add_lead(smtp_app)
    with smtp_app.app_context():
        page = db.session.scalar(select(Page))
        assert sorted(db.session.scalars(select(Enrollment.sequence))) == ["course", "extra"]
        assert membership.enroll(db.session.get(Lead, lead_id), page) == 0
        db.session.commit()
    assert len(enroll_events(smtp_app, lead_id)) == 2


def test_a_lead_who_left_a_sequence_is_not_started_on_it_again(smtp_app, smtp, clock):
    from capture.leads import lifecycle

    sequence(smtp_app, "vip", "start_on: [{tag: vip}]\nreenter: true\n",
             steps=[("01-one.md", "One", "0"), ("02-two.md", "Two", "1d")])
    lead_id = add_lead(smtp_app, sequence=None)
    give_tag(smtp_app, lead_id, "vip")
    tick(smtp_app)
    with smtp_app.app_context():
        delivery_id = db.session.scalar(select(Delivery.id))
        assert lifecycle.leave_sequence(db.session.get(Lead, lead_id), delivery_id)
        tags.remove_tags([lead_id], ["vip"], "dashboard")
        db.session.commit()
    give_tag(smtp_app, lead_id, "vip")
    clock.advance(days=2)
    tick(smtp_app)
    assert subjects(smtp) == ["vip: One"]
    assert len(enroll_events(smtp_app, lead_id)) == 1
