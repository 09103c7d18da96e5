"""Link tags: [text](url "tag:NAME") in a step; the title is consumed, the link
stores the tag, a person's click adds it, a scanner's does not; `check` names a bad
tag as file:line."""

import re

from sqlalchemy import select

from capture.db import db
from capture.leads.tags import tags_of
from capture.mail.sequences import load_sequence
from capture.models import LeadTag, Link
from tests.conftest import HUMAN
from tests.factories import add_lead, sequence_folder, tick, write_step

BASE = "http://127.0.0.1:5000"
BODY = ('Hi.\n\nRead [the guide](https://example.com/guide "tag:guide-reader") or '
        '[the plain one](https://example.com/guide) and '
        '[the offer](https://example.com/offer "Our offer").\n')


def _send(smtp_app, smtp, clock):
    write_step(sequence_folder(smtp_app), "01-hi.md", "Hi", BODY, delay=0)
    lead_id = add_lead(smtp_app)
    tick(smtp_app)
    message = smtp.messages[0]
    clock.advance(minutes=10)  # later than any scanner's reflex
    return lead_id, message.get_body(("html",)).get_content(), \
        message.get_body(("plain",)).get_content()


def test_the_tag_title_is_consumed_and_the_link_stores_the_tag(smtp_app, smtp, clock):
    _, html, text = _send(smtp_app, smtp, clock)
    assert "tag:" not in html and "data-tag" not in html and "tag:" not in text
    assert 'title="Our offer"' in html
    with smtp_app.app_context():
        links = {(link.url, link.tag) for link in db.session.scalars(select(Link))}
    # The same URL tagged and untagged: two links, so only the tagged one tags.
    assert links == {("https://example.com/guide", "guide-reader"),
                     ("https://example.com/guide", None),
                     ("https://example.com/offer", None)}


def _href(html, label):
    return re.search(rf'href="{BASE}(/c/[^"]+)"[^>]*>{label}<', html).group(1)


def test_a_human_click_on_a_tagged_link_adds_the_tag_once(smtp_app, smtp, clock):
    lead_id, html, _ = _send(smtp_app, smtp, clock)
    client = smtp_app.test_client()
    for _ in range(2):
        response = client.get(_href(html, "the guide"), headers={"User-Agent": HUMAN})
        assert response.status_code == 302
    with smtp_app.app_context():
        assert tags_of([lead_id])[lead_id] == ["guide-reader"]
        [row] = db.session.scalars(select(LeadTag))
        assert row.cause == "link"


def test_a_scanner_click_or_an_untagged_link_adds_no_tag(smtp_app, smtp, clock):
    lead_id, html, _ = _send(smtp_app, smtp, clock)
    client = smtp_app.test_client()
    scanner = "Mozilla/5.0 (compatible; Barracuda)"
    client.get(_href(html, "the guide"), headers={"User-Agent": scanner})
    client.get(_href(html, "the plain one"), headers={"User-Agent": HUMAN})
    with smtp_app.app_context():
        assert tags_of([lead_id])[lead_id] == []


def test_check_reports_a_bad_link_tag_as_file_and_line(smtp_app):
    folder = sequence_folder(smtp_app)
    write_step(folder, "01-hi.md", "Hi", 'Line one.\n\n[x](https://example.com "tag:Not OK")\n',
               delay=0)
    problems = [str(p) for p in load_sequence(folder).all_problems()]
    assert len(problems) == 1, problems
    assert re.fullmatch(r".*01-hi\.md:7: link tag: tag 'Not OK' may hold only .*", problems[0])


def test_a_step_with_a_bad_link_tag_is_held_not_sent(smtp_app, smtp):
    write_step(sequence_folder(smtp_app), "01-hi.md", "Hi",
               '[x](https://example.com "tag:Not OK")\n', delay=0)
    add_lead(smtp_app)
    tick(smtp_app)
    assert smtp.messages == []
