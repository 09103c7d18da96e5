"""A person's click with CAPTURE_OPTIN_PROCESSING=queued (the default outside the
tests): the request logs the click, queues what it sets off and redirects; the
intake's processor gives the link's tag and starts the click-triggered sequences,
dated when the person clicked."""

import re

from sqlalchemy import select

from capture.db import db
from capture.leads import erasure, intake
from capture.models import Event, Intake, Lead, LeadTag
from tests.conftest import HUMAN, banners, count, owner_client
from tests.factories import add_lead, sequence_folder, subjects, tick, write_step

BASE = "http://127.0.0.1:5000"


def _mail_with_links(app, smtp, clock):
    """A lead, a sent email with a tagged link to the pricing page, and a sequence
    that a click on it starts; returns the lead and the link's path."""
    write_step(sequence_folder(app, "course"), "01-hi.md", "Hi",
               'See [pricing](https://shop.example/pricing "tag:pricing-reader").', delay=0)
    followup = sequence_folder(app, "pricing-followup")
    write_step(followup, "01-hello.md", "Pricing", "About pricing.", delay="0")
    (followup / "sequence.yml").write_text('start_on:\n  - click: "/pricing"\n')
    lead_id = add_lead(app)
    tick(app)
    html = smtp.messages[0].get_body(("html",)).get_content()
    clock.advance(minutes=10)  # later than any scanner's reflex
    app.config["OPTIN_PROCESSING"] = "queued"
    return lead_id, re.search(rf'href="{BASE}(/c/[^"]+)"[^>]*>pricing<', html).group(1)


def _process(app) -> intake.Folded:
    with app.app_context():
        return intake.process()


def test_a_person_is_redirected_at_once_and_the_click_waits_as_one_row(smtp_app, smtp,
                                                                        clock):
    lead_id, path = _mail_with_links(smtp_app, smtp, clock)
    response = smtp_app.test_client().get(path, headers={"User-Agent": HUMAN})
    assert (response.status_code, response.headers["Location"]) == (
        302, "https://shop.example/pricing")
    with smtp_app.app_context():
        [row] = db.session.scalars(select(Intake))
        assert (row.kind, row.payload) == ("click", {
            "lead_id": lead_id, "url": "https://shop.example/pricing", "tag": "pricing-reader"})
        assert db.session.scalar(select(Event.kind).where(Event.kind == "click")) == "click"
    assert count(smtp_app, LeadTag) == 0


def test_the_processor_tags_and_starts_the_click_sequence_dated_at_the_click(
        smtp_app, smtp, clock):
    lead_id, path = _mail_with_links(smtp_app, smtp, clock)
    clicked_at = clock.now
    smtp_app.test_client().get(path, headers={"User-Agent": HUMAN})
    clock.advance(minutes=3)
    folded = _process(smtp_app)
    assert (folded.stored, folded.clicks, folded.line()) == (
        1, 1, "intake: 0 sign-ups stored, 1 clicks followed")
    with smtp_app.app_context():
        [tag] = db.session.scalars(select(LeadTag))
        assert (tag.lead_id, tag.tag, tag.cause, tag.created_at) == (
            lead_id, "pricing-reader", "link", clicked_at)
        enrolled = db.session.scalar(select(Event).where(Event.kind == "enroll",
                                                         Event.lead_id == lead_id)
                                     .order_by(Event.id.desc()))
        assert (enrolled.data["sequence"], enrolled.created_at) == (
            "pricing-followup", clicked_at)
    assert count(smtp_app, Intake) == 0
    tick(smtp_app)
    assert subjects(smtp) == ["Hi", "Pricing"]


def test_a_scanners_click_queues_nothing(smtp_app, smtp, clock):
    _, path = _mail_with_links(smtp_app, smtp, clock)
    scanner = {"User-Agent": "Mozilla/5.0 (compatible; Barracuda)"}
    assert smtp_app.test_client().get(path, headers=scanner).status_code == 302
    assert count(smtp_app, Intake) == 0


def test_erasing_a_person_drops_their_queued_click(smtp_app, smtp, clock):
    lead_id, path = _mail_with_links(smtp_app, smtp, clock)
    smtp_app.test_client().get(path, headers={"User-Agent": HUMAN})
    with smtp_app.app_context():
        erasure.erase(db.session.get(Lead, lead_id))
    assert count(smtp_app, Intake) == 0
    assert _process(smtp_app).clicks == 0
    assert count(smtp_app, LeadTag) == 0
    tick(smtp_app)
    assert subjects(smtp) == ["Hi"]


def test_a_click_queued_as_the_person_was_erased_is_neither_tagged_nor_started(
        smtp_app, smtp, clock):
    lead_id, _ = _mail_with_links(smtp_app, smtp, clock)
    with smtp_app.app_context():
        erasure.erase(db.session.get(Lead, lead_id))
        # The click's request read the lead before the erasure committed.
        db.session.add(Intake(kind="click", page_id=0, payload={
            "lead_id": lead_id, "url": "https://shop.example/pricing", "tag": "pricing-reader"}))
        db.session.commit()
    assert _process(smtp_app).clicks == 1
    assert count(smtp_app, LeadTag) == 0 and count(smtp_app, Intake) == 0
    tick(smtp_app)
    assert subjects(smtp) == ["Hi"]


def test_the_overview_counts_waiting_clicks_apart_from_sign_ups(smtp_app, smtp, clock):
    _, path = _mail_with_links(smtp_app, smtp, clock)
    smtp_app.test_client().get(path, headers={"User-Agent": HUMAN})
    clock.advance(minutes=5)
    shown = banners(owner_client(smtp_app).get("/admin/").get_data(as_text=True))
    assert shown["signups_waiting"].startswith("1 click waits to be stored")
