"""Segments compiled to SQL: each key (and a combination) against leads made for it,
members vs. audience (subscribed, not suppressed). Runs on PostgreSQL too when
CAPTURE_TEST_DATABASE_URL is set."""

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import delete, select

from capture.db import db
from capture.models import (
    Broadcast,
    Delivery,
    Enrollment,
    Event,
    Lead,
    LeadTag,
    Optin,
    Page,
    Suppression,
    Upgrade,
)
from capture.segments import query
from capture.segments.language import parse

NOW = datetime(2026, 3, 2, 10, 0)


def _lead(name, page, **values):
    values.setdefault("review", "approved")
    values.setdefault("subscription", "subscribed")
    values.setdefault("created_at", NOW - timedelta(days=10))
    lead = Lead(email=f"{name}@example.com", name=name.title(), public_ref=f"ref-{name}",
                page_id=page.id if page else None, **values)
    db.session.add(lead)
    db.session.flush()
    return lead


def _event(lead, kind, *, delivery=None, machine=False, days_ago=1, page=None):
    db.session.add(Event(lead_id=lead.id, kind=kind, delivery_id=delivery.id if delivery
                         else None, machine=machine, page_id=page.id if page else None,
                         created_at=NOW - timedelta(days=days_ago), data={}))


def _delivery(lead, sequence="", step="", broadcast=None):
    delivery = Delivery(lead_id=lead.id, sequence=sequence, step=step or broadcast.name,
                        filename="x.md", status="sent", sent_at=NOW - timedelta(days=2),
                        broadcast_id=broadcast.id if broadcast else None)
    db.session.add(delivery)
    db.session.flush()
    return delivery


@pytest.fixture
def world(app, clock):
    """Leads made for each key: ann, bob, cat, dan, eve, fay, gus."""
    with app.app_context():
        webinar = Page(slug="webinar", title="Webinar", fields=[], rules={})
        ebook = Page(slug="ebook", title="Ebook", fields=[], rules={})
        db.session.add_all([webinar, ebook])
        db.session.flush()
        ann = _lead("ann", webinar, utm_source="twitter", utm_medium="social",
                    utm_campaign="spring", country="DE",
                    fields={"plan": "pro", "newsletter": True})
        bob = _lead("bob", webinar, utm_source="google", ref="partner1",
                    fields={"plan": "free", "newsletter": False},
                    created_at=NOW - timedelta(days=40))
        cat = _lead("cat", ebook, utm_source="twitter", review="pending",
                    fields={"plan": "true"}, country="FR")
        dan = _lead("dan", ebook, subscription="unsubscribed", utm_source="")
        eve = _lead("eve", ebook, created_at=NOW - timedelta(days=1))
        _lead("fay", None, review="rejected")  # found by the keys of the tests below
        gus = _lead("gus", webinar)
        db.session.add(Suppression(email="gus@example.com", reason="bounce"))
        # eve (first on the ebook page) opted in on the webinar page two hours ago: a
        # later opt-in; then again on it (a duplicate of that opt-in).
        db.session.add(Optin(lead_id=eve.id, page_id=webinar.id, first=False,
                             created_at=NOW - timedelta(hours=2), consent_text="Yes.",
                             consent_at=NOW - timedelta(hours=2), review="approved"))
        _event(eve, "duplicate", page=webinar)
        for lead, tags in ((ann, ["vip", "buyer"]), (bob, ["vip"]), (cat, ["buyer"]),
                           (gus, ["vip", "buyer"])):
            db.session.add_all(LeadTag(lead_id=lead.id, tag=t, cause="test") for t in tags)
        db.session.add(Upgrade(lead_id=bob.id, txn="t1", amount=Decimal("9"),
                               currency="USD"))
        launch = Broadcast(name="launch", subject="Launch", body="Hi", segment={},
                           file_hash="0" * 64, state="sent")
        db.session.add(launch)
        db.session.flush()
        # ann: human open + click of the course/tips step yesterday.
        tips = _delivery(ann, "course", "tips")
        _event(ann, "open", delivery=tips)
        _event(ann, "click", delivery=tips)
        # bob: a human click on the launch broadcast 45 days ago; opens by a machine only.
        news = _delivery(bob, broadcast=launch)
        _event(bob, "click", delivery=news, days_ago=45)
        _event(bob, "open", delivery=news, machine=True)
        # cat: only a machine click.
        _event(cat, "click", delivery=_delivery(cat, "course", "tips"), machine=True)
        db.session.add_all([
            Enrollment(lead_id=ann.id, sequence="course", state="active"),
            Enrollment(lead_id=bob.id, sequence="course", state="waiting", last_step="offer"),
            Enrollment(lead_id=cat.id, sequence="course", state="stopped", last_step="tips"),
            Enrollment(lead_id=dan.id, sequence="course", state="waiting"),
            Enrollment(lead_id=eve.id, sequence="other", state="sending"),
        ])
        db.session.commit()
    return app


def _names(stmt) -> set[str]:
    ids = stmt.subquery()
    emails = db.session.scalars(select(Lead.email).where(Lead.id.in_(select(ids.c.id))))
    return {e.split("@")[0] for e in emails}


def members(app, mapping) -> set[str]:
    """The members, the same whether each key's ids are read whole or probed per lead."""
    with app.app_context():
        found = _names(query.member_ids(parse(mapping)))
        assert _names(query.member_ids(parse(mapping), per_lead=True)) == found
        return found


def audience(app, mapping) -> set[str]:
    with app.app_context():
        found = _names(query.audience_ids(parse(mapping)))
        assert _names(query.audience_ids(parse(mapping), per_lead=True)) == found
        assert query.count_audience(parse(mapping)) == len(found)
        members = query.count_members(parse(mapping))
        assert query.count_both(parse(mapping)) == (members, len(found))
        return found


EVERYONE = {"ann", "bob", "cat", "dan", "eve", "fay", "gus"}

CASES = [
    ({}, EVERYONE),
    ({"pages": ["webinar"]}, {"ann", "bob", "gus", "eve"}),
    ({"pages": "ebook"}, {"cat", "dan", "eve"}),
    ({"sources": ["twitter"]}, {"ann", "cat"}),
    ({"sources": ["(none)"]}, {"dan", "eve", "fay", "gus"}),
    ({"sources": ["google", "(none)"]}, {"bob", "dan", "eve", "fay", "gus"}),
    ({"mediums": "social"}, {"ann"}),
    ({"campaigns": ["spring"]}, {"ann"}),
    ({"refs": ["partner1"]}, {"bob"}),
    ({"review": ["pending", "rejected"]}, {"cat", "fay"}),
    ({"tags": {"any": ["vip"]}}, {"ann", "bob", "gus"}),
    ({"tags": ["buyer"]}, {"ann", "cat", "gus"}),
    ({"tags": {"all": ["vip", "buyer"]}}, {"ann", "gus"}),
    ({"tags": {"none": ["vip"]}}, {"cat", "dan", "eve", "fay"}),
    ({"tags": {"any": ["buyer"], "none": ["vip"]}}, {"cat"}),
    ({"fields": {"plan": "pro"}}, {"ann"}),
    ({"fields": {"plan": ["pro", "free"]}}, {"ann", "bob"}),
    ({"fields": {"plan": "(none)"}}, {"dan", "eve", "fay", "gus"}),
    ({"fields": {"newsletter": True}}, {"ann"}),
    ({"fields": {"newsletter": False}}, {"bob"}),
    ({"fields": {"country": "de"}}, {"ann"}),
    ({"fields": {"country": ["DE", "FR"], "plan": "pro"}}, {"ann"}),
    ({"upgraded": True}, {"bob"}),
    ({"upgraded": False}, EVERYONE - {"bob"}),
    ({"opened": True}, {"ann"}),
    ({"opened": False}, EVERYONE - {"ann"}),
    ({"clicked": True}, {"ann", "bob"}),
    ({"clicked": {"within_days": 30}}, {"ann"}),
    ({"clicked": {"step": "course/tips"}}, {"ann"}),
    ({"clicked": {"step": "course/02-tips.md"}}, {"ann"}),
    ({"clicked": {"broadcast": "launch"}}, {"bob"}),
    ({"clicked": {"broadcast": "launch", "within_days": 30}}, set()),
    ({"opened": {"broadcast": "launch"}}, set()),
    ({"joined_after": "2026-02-15"}, {"ann", "cat", "dan", "eve", "fay", "gus"}),
    ({"joined_before": "2026-02-15T00:00:00+00:00"}, {"bob"}),
    ({"joined_after": "2026-02-28T10:00:00+01:00"}, {"eve"}),
    # Joined is when the person opted in first, not a later opt-in's time.
    ({"pages": "webinar", "joined_after": "2026-03-02"}, set()),
    ({"pages": "webinar", "joined_after": "2026-03-01"}, {"eve"}),
    ({"in_sequence": "course"}, {"ann"}),
    ({"in_sequence": ["course", "other"]}, {"ann", "eve"}),
    ({"finished_sequence": "course"}, {"bob"}),
    ({"pages": ["webinar"], "sources": ["twitter", "google"], "tags": {"any": ["vip"]},
      "clicked": {"within_days": 30}}, {"ann"}),
]


@pytest.mark.parametrize(("mapping", "expected"), CASES, ids=[str(c[0]) for c in CASES])
def test_each_key_selects_the_leads_made_for_it(world, mapping, expected):
    assert members(world, mapping) == expected
    with world.app_context():
        assert query.count_members(parse(mapping)) == len(expected)


@pytest.mark.parametrize(("mapping", "expected"), CASES, ids=[str(c[0]) for c in CASES])
def test_audience_is_the_subscribed_unsuppressed_members(world, mapping, expected):
    # dan is unsubscribed, gus suppressed.
    assert audience(world, mapping) == expected - {"dan", "gus"}


def test_audience_is_only_subscribed_unsuppressed_members(world):
    # dan is unsubscribed, gus suppressed.
    assert audience(world, {}) == {"ann", "bob", "cat", "eve", "fay"}
    assert audience(world, {"tags": ["vip"]}) == {"ann", "bob"}
    with world.app_context():
        assert query.count_audience(parse({"tags": ["vip"]})) == 2
        assert query.count_audience(parse({"pages": ["ebook"]})) == 2


def test_is_member_answers_for_one_lead(world):
    with world.app_context():
        ann = db.session.scalar(select(Lead.id).where(Lead.email == "ann@example.com"))
        assert query.is_member(parse({"tags": ["vip"]}), ann)
        assert not query.is_member(parse({"upgraded": True}), ann)


def test_pages_match_any_optin_of_the_lead_first_or_later(world):
    with world.app_context():
        eve = db.session.scalar(select(Lead.id).where(Lead.email == "eve@example.com"))
        for slugs in (["ebook"], ["webinar"], ["webinar", "ebook"]):
            assert query.is_member(parse({"pages": slugs}), eve), slugs
        db.session.execute(delete(Optin).where(Optin.lead_id == eve,
                                               Optin.first.is_(False)))
        # A repeat on a page without an opt-in there (recorded before opt-ins had
        # rows) still counts, as it did then.
        assert query.is_member(parse({"pages": ["webinar"]}), eve)
        db.session.execute(delete(Event).where(Event.lead_id == eve,
                                               Event.kind == "duplicate"))
        assert not query.is_member(parse({"pages": ["webinar"]}), eve)


def test_unknown_pages_are_named(world):
    with world.app_context():
        assert query.unknown_pages(parse({"pages": ["webinar", "webnar"]})) == ["webnar"]
        assert query.unknown_pages(parse({})) == []


def test_audience_ids_is_a_select_a_broadcast_can_insert_from(world):
    with world.app_context():
        stmt = query.audience_ids(parse({"tags": ["vip"]}))
        ids = db.session.scalars(stmt.where(Lead.id > 0).order_by(Lead.id).limit(1)).all()
        assert len(ids) == 1


def test_an_erased_person_is_no_member(world):
    from capture.leads import erasure

    with world.app_context():
        ann = db.session.scalar(select(Lead).where(Lead.email == "ann@example.com"))
        erasure.erase(ann)
    assert "ann" not in members(world, {})
    assert members(world, {"review": ["approved"], "pages": ["webinar"]}) == {
        "bob", "eve", "gus"}
    with world.app_context():
        assert query.count_members(parse({})) == 6
