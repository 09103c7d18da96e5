"""Where tags come from: a page's `tags` at opt-in (also a repeat opt-in), a human
click on a tagged link, the CSV import."""

from sqlalchemy import select

from capture.db import db
from capture.leads.tags import tags_of
from capture.models import Event, LeadTag, Page
from capture.pages.definition import page_templates_dir, validate_page
from tests.conftest import create_page, lead_of, sign_up


def _tag_causes(app, lead_id):
    with app.app_context():
        return {(row.tag, row.cause) for row in db.session.scalars(
            select(LeadTag).where(LeadTag.lead_id == lead_id))}


def test_page_tags_are_validated_one_line_each(app):
    with app.app_context():
        _, problems = validate_page(
            {"slug": "x", "title": "X", "tags": ["ok", "Bad", "a b", "ok"]},
            sequences_dir=app.config["SEQUENCES_DIR"], templates_dir=page_templates_dir())
        assert problems == ["tags: tag 'Bad' must be lowercase: 'bad'",
                            "tags: tag 'a b' may hold only lowercase letters, digits, _ and -"]
        _, problems = validate_page({"slug": "x", "title": "X", "tags": "vip"},
                                    sequences_dir=app.config["SEQUENCES_DIR"],
                                    templates_dir=page_templates_dir())
        assert problems and problems[0].startswith("tags: must be a list")


def test_optin_on_a_tagged_page_tags_the_lead_and_a_repeat_adds_new_page_tags(app, client):
    create_page(app, tags=["webinar", "spring"])
    lead = sign_up(app, client)
    assert _tag_causes(app, lead.id) == {("webinar", "page:offer"), ("spring", "page:offer")}
    with app.app_context():
        page = db.session.scalar(select(Page).where(Page.slug == "offer"))
        page.tags = ["webinar", "returning"]
        db.session.commit()
    sign_up(app, client)  # the duplicate: the new tag is added, the others stay once
    with app.app_context():
        assert tags_of([lead.id])[lead.id] == ["returning", "spring", "webinar"]
        kinds = [(e.kind, e.data.get("tag")) for e in db.session.scalars(
            select(Event).where(Event.lead_id == lead.id, Event.kind == "tag"))]
        assert sorted(kinds) == [("tag", "returning"), ("tag", "spring"), ("tag", "webinar")]


def test_optin_on_an_untagged_page_adds_no_tag(app, client):
    create_page(app)
    lead = sign_up(app, client)
    assert _tag_causes(app, lead.id) == set()


# --- the CSV import's `tags` column -------------------------------------------------

def test_import_tags_column_tags_new_and_merged_leads_and_rejects_a_bad_name(app, tmp_path):
    from tests.factories import run_import, write

    create_page(app)
    path = write(tmp_path, "email,name,consent,tags\n"
                 "ann@example.com,Ann,yes,vip; webinar\n"
                 "bob@example.com,Bob,yes,VIP\n"
                 "cat@example.com,Cat,yes,\n"
                 "ANN@example.com,,yes,buyer;vip\n")
    report = run_import(app, path)
    assert [(r.line, r.detail) for r in report.rejections] == [
        (3, "tags: tag 'VIP' must be lowercase: 'vip'")]
    ann, cat = lead_of(app, "ann@example.com"), lead_of(app, "cat@example.com")
    assert lead_of(app, "bob@example.com") is None
    with app.app_context():
        assert tags_of([ann.id, cat.id]) == {ann.id: ["buyer", "vip", "webinar"], cat.id: []}
    assert _tag_causes(app, ann.id) == {("buyer", "import"), ("vip", "import"),
                                        ("webinar", "import")}


def test_an_embedded_form_on_a_tagged_page_tags_the_lead(app):
    from tests.test_embed import embeddable_page, post

    embeddable_page(app, tags=["from-blog"])
    response = post(app.test_client(), email="ann@example.com", name="Ann")
    assert response.status_code == 200
    lead = lead_of(app, "ann@example.com")
    assert _tag_causes(app, lead.id) == {("from-blog", "page:offer")}
