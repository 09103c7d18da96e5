"""The dashboard's tags: a lead's Tags panel (add, remove, CSRF) and the leads table's
bulk add/remove for the ticked leads or every lead the filters match."""

from sqlalchemy import select

from capture.db import db
from capture.leads.tags import add_tags, tags_of
from capture.models import LeadTag
from tests.admin.test_leads import add_lead
from tests.conftest import csrf_of


def _tags(app, *lead_ids):
    with app.app_context():
        return tags_of(lead_ids)


def test_the_panel_lists_tags_with_cause_and_time_and_adds_and_removes(owner, app):
    lead_id = add_lead(app, "ann@example.com")
    with app.app_context():
        add_tags([lead_id], ["webinar"], "page:offer")
        db.session.commit()
    html = owner.get(f"/admin/leads/{lead_id}").get_data(as_text=True)
    assert 'id="tags"' in html and "webinar" in html and "page:offer" in html
    token = csrf_of(owner, f"/admin/leads/{lead_id}")
    response = owner.post(f"/admin/leads/{lead_id}/tags",
                          data={"csrf_token": token, "tags": "vip, buyer"})
    assert response.status_code == 302
    assert _tags(app, lead_id)[lead_id] == ["buyer", "vip", "webinar"]
    owner.post(f"/admin/leads/{lead_id}/tags/remove", data={"csrf_token": token, "tag": "webinar"})
    assert _tags(app, lead_id)[lead_id] == ["buyer", "vip"]
    with app.app_context():
        assert {row.cause for row in db.session.scalars(select(LeadTag))} == {"dashboard"}


def test_a_bad_name_is_one_line_and_changes_nothing(owner, app):
    lead_id = add_lead(app, "ann@example.com")
    token = csrf_of(owner, f"/admin/leads/{lead_id}")
    response = owner.post(f"/admin/leads/{lead_id}/tags",
                          data={"csrf_token": token, "tags": "ok VIP"}, follow_redirects=True)
    assert "Nothing added: tag &#39;VIP&#39; must be lowercase" in response.get_data(as_text=True)
    assert _tags(app, lead_id)[lead_id] == []


def test_tag_forms_without_csrf_token_are_refused(owner, app):
    lead_id = add_lead(app, "ann@example.com")
    assert owner.post(f"/admin/leads/{lead_id}/tags", data={"tags": "vip"}).status_code == 400
    assert owner.post("/admin/leads/tags", data={"lead": [str(lead_id)], "bulk_tags": "vip",
                                                 "tag_action": "add"}).status_code == 400
    assert _tags(app, lead_id)[lead_id] == []


def test_bulk_tags_the_ticked_leads_then_removes(owner, app):
    ann = add_lead(app, "ann@example.com")
    bob = add_lead(app, "bob@example.com")
    cat = add_lead(app, "cat@example.com")
    html = owner.get("/admin/leads").get_data(as_text=True)
    assert 'name="bulk_tags"' in html
    token = csrf_of(owner, "/admin/leads")
    response = owner.post("/admin/leads/tags", data={
        "csrf_token": token, "lead": [str(ann), str(bob)], "bulk_tags": "vip",
        "tag_action": "add", "back": "/admin/leads"}, follow_redirects=True)
    assert "Added vip: 2 tags given to 2 leads." in response.get_data(as_text=True)
    assert _tags(app, ann, bob, cat) == {ann: ["vip"], bob: ["vip"], cat: []}
    owner.post("/admin/leads/tags", data={"csrf_token": token, "lead": [str(ann)],
                                          "bulk_tags": "vip", "tag_action": "remove"})
    assert _tags(app, ann, bob, cat) == {ann: [], bob: ["vip"], cat: []}


def test_bulk_all_matching_uses_the_table_filters_not_the_ticks(owner, app):
    ann = add_lead(app, "ann@example.com", review="pending")
    bob = add_lead(app, "bob@example.com", review="approved")
    cat = add_lead(app, "cat@example.com", review="pending")
    token = csrf_of(owner, "/admin/leads")
    response = owner.post("/admin/leads/tags", data={
        "csrf_token": token, "scope": "all", "bulk_tags": "to-check", "tag_action": "add",
        "back": "/admin/leads?review=pending"}, follow_redirects=True)
    assert response.status_code == 200
    assert _tags(app, ann, bob, cat) == {ann: ["to-check"], bob: [], cat: ["to-check"]}


def test_the_timeline_says_tagged_and_untagged_with_the_cause(owner, app):
    lead_id = add_lead(app, "ann@example.com")
    with app.app_context():
        add_tags([lead_id], ["vip"], "api")
        db.session.commit()
    token = csrf_of(owner, f"/admin/leads/{lead_id}")
    owner.post(f"/admin/leads/{lead_id}/tags/remove", data={"csrf_token": token, "tag": "vip"})
    html = owner.get(f"/admin/leads/{lead_id}").get_data(as_text=True)
    assert 'Tagged <span class="tag">vip</span> <span class="muted">(api)</span>' in html
    assert 'Untagged <span class="tag">vip</span> <span class="muted">(dashboard)</span>' in html


# --- the page editor's tags ----------------------------------------------------------

def test_page_editor_saves_tags_and_shows_them_again(owner, app):
    import html

    from tests.admin.conftest import form_data, get_page, page_id

    token = csrf_of(owner, "/admin/pages/new")
    response = owner.post("/admin/pages/new", data=form_data(token, tags="webinar, spring-26"))
    assert response.status_code == 302
    assert get_page(app, "guide").tags == ["webinar", "spring-26"]
    editor = owner.get(f"/admin/pages/{page_id(app, 'guide')}/edit").get_data(as_text=True)
    assert 'value="webinar, spring-26"' in editor
    response = owner.post("/admin/pages/new", data=form_data(token, slug="other", tags="Webinar"))
    assert response.status_code == 422
    assert "tag 'Webinar' must be lowercase" in html.unescape(response.get_data(as_text=True))
