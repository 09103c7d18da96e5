"""Tags on leads: add_tags / remove_tags in sets, idempotent, with timeline events."""

import pytest
from sqlalchemy import func, select

from capture.db import db
from capture.leads import tags
from capture.models import Event, LeadTag
from tests.factories import add_lead


def _events(kind):
    return [(e.lead_id, e.data["tag"], e.data["cause"]) for e in db.session.scalars(
        select(Event).where(Event.kind == kind).order_by(Event.id))]


def test_add_tags_adds_each_missing_tag_once_with_an_event(app):
    ann = add_lead(app, "ann@example.com")
    bob = add_lead(app, "bob@example.com")
    with app.app_context():
        assert tags.add_tags([ann, bob], ["vip", "buyer"], "dashboard") == 4
        assert tags.add_tags([ann, bob, ann], ["vip"], "api") == 0  # nothing new
        db.session.commit()
        assert tags.tags_of([ann, bob, 999]) == {ann: ["buyer", "vip"],
                                                 bob: ["buyer", "vip"], 999: []}
        assert len(_events("tag")) == 4
        assert {row.cause for row in db.session.scalars(select(LeadTag))} == {"dashboard"}


def test_remove_tags_removes_only_present_tags_and_logs_untag(app):
    ann = add_lead(app, "ann@example.com")
    bob = add_lead(app, "bob@example.com")
    with app.app_context():
        tags.add_tags([ann], ["vip"], "dashboard")
        assert tags.remove_tags([ann, bob], ["vip", "other"], "api") == 1
        assert tags.remove_tags([ann, bob], ["vip"], "api") == 0
        db.session.commit()
        assert tags.tags_of([ann]) == {ann: []}
        assert _events("untag") == [(ann, "vip", "api")]


def test_a_bad_name_is_refused_before_anything_changes(app):
    ann = add_lead(app, "ann@example.com")
    with app.app_context():
        with pytest.raises(tags.TagError, match="lowercase"):
            tags.add_tags([ann], ["ok", "VIP"], "api")
        assert db.session.scalar(select(func.count()).select_from(LeadTag)) == 0


def test_bulk_of_ten_thousand_leads_is_a_few_statements(app):
    ann = add_lead(app, "ann@example.com")
    with app.app_context():
        from sqlalchemy import event

        from capture.models import Lead
        db.session.execute(Lead.__table__.insert(), [
            {"email": f"l{n}@example.com", "public_ref": f"r{n}", "name": "",
             "review": "approved", "subscription": "subscribed", "fields": {}}
            for n in range(10_000)])
        ids = list(db.session.scalars(select(Lead.id)))
        statements = []
        engine = db.session.connection().engine
        listener = lambda *args: statements.append(1)  # noqa: E731
        event.listen(engine, "before_cursor_execute", listener)
        try:
            assert tags.add_tags(ids, ["bulk"], "dashboard") == len(ids)
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        # A select, an insert in batches and the events per chunk: never one per lead.
        assert len(statements) <= 8 * (len(ids) // tags.CHUNK + 1)
        assert tags.tags_of([ann])[ann] == ["bulk"]
