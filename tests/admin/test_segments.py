"""Dashboard segments: the list with live counts, create/edit with the language's errors
as `line N: key: message` (nothing saved on error), delete, and the leads table's
`?segment=` and `?tag=` filters."""

import re
import secrets
from html import unescape

from sqlalchemy import select

from capture.db import db
from capture.models import Lead, LeadTag, Page, SavedSegment, Suppression
from tests.conftest import csrf_of


def _lead(app, email, page="webinar", tags=(), **values):
    with app.app_context():
        page_row = db.session.scalar(select(Page).where(Page.slug == page))
        if page_row is None:
            page_row = Page(slug=page, title=page.title(), fields=[], rules={})
            db.session.add(page_row)
            db.session.flush()
        values.setdefault("subscription", "subscribed")
        lead = Lead(email=email, public_ref=secrets.token_hex(8), page_id=page_row.id,
                    review="approved", **values)
        db.session.add(lead)
        db.session.flush()
        db.session.add_all(LeadTag(lead_id=lead.id, tag=t, cause="test") for t in tags)
        db.session.commit()
        return lead.id


def _saved(app, name, definition) -> int:
    with app.app_context():
        row = SavedSegment(name=name, definition=definition)
        db.session.add(row)
        db.session.commit()
        return row.id


def table_emails(client, query="") -> list[str]:
    response = client.get(f"/admin/leads{query}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    return sorted(unescape(e) for e in
                  re.findall(r'<td class="email"><a href="/admin/leads/\d+">([^<]*)</a>', html))


def test_empty_list_says_what_to_do(owner):
    html = owner.get("/admin/segments").get_data(as_text=True)
    assert "No saved segments yet" in html
    assert 'href="/admin/segments/new"' in html


def test_list_shows_live_counts_and_links_to_the_leads(app, owner):
    _lead(app, "ann@example.com", tags=["vip"])
    _lead(app, "bob@example.com", tags=["vip"], subscription="unsubscribed")
    _lead(app, "cat@example.com", tags=["vip"])
    _lead(app, "dan@example.com")
    with app.app_context():
        db.session.add(Suppression(email="cat@example.com"))
        db.session.commit()
    segment_id = _saved(app, "VIPs", "tags: [vip]\n")
    html = owner.get("/admin/segments").get_data(as_text=True)
    row = re.search(r"<tr>\s*<td><a href=\"/admin/segments/\d+\">VIPs</a>.*?</tr>", html,
                    re.S).group(0)
    numbers = re.findall(r'<td class="number">([^<]*)</td>', row)
    assert numbers == ["3", "1"]  # members (any subscription), audience
    assert f'href="/admin/leads?segment={segment_id}"' in row
    # The link shows exactly the members.
    assert table_emails(owner, f"?segment={segment_id}") == [
        "ann@example.com", "bob@example.com", "cat@example.com"]


def test_create_saves_a_valid_segment(app, owner):
    token = csrf_of(owner, "/admin/segments/new")
    response = owner.post("/admin/segments/new", data={
        "csrf_token": token, "name": " Webinar  people ", "definition": "pages: [webinar]\r\n"})
    assert response.status_code == 302
    with app.app_context():
        row = db.session.scalar(select(SavedSegment))
        assert (row.name, row.definition) == ("Webinar people", "pages: [webinar]\n")
    assert "Webinar people" in owner.get("/admin/segments").get_data(as_text=True)


def test_a_bad_definition_says_line_and_key_and_saves_nothing(app, owner):
    token = csrf_of(owner, "/admin/segments/new")
    response = owner.post("/admin/segments/new", data={
        "csrf_token": token, "name": "Broken",
        "definition": "pages: [webinar]\nclicked:\n  within_days: lots\ncolour: red\n"})
    assert response.status_code == 422
    html = unescape(response.get_data(as_text=True))
    assert "line 3: clicked.within_days: 'lots': write a whole number of days" in html
    assert "line 4: colour: unknown key" in html
    # What the owner typed is shown again.
    assert "within_days: lots" in html
    with app.app_context():
        assert db.session.scalar(select(SavedSegment)) is None


def test_name_is_required_and_unique(app, owner):
    _saved(app, "VIPs", "tags: [vip]\n")
    token = csrf_of(owner, "/admin/segments/new")
    for name, words in (("", "Give the segment a name."), ("VIPs", "exists already")):
        response = owner.post("/admin/segments/new", data={
            "csrf_token": token, "name": name, "definition": "tags: [x]"})
        assert response.status_code == 422
        assert words in unescape(response.get_data(as_text=True))
    with app.app_context():
        assert db.session.scalar(select(SavedSegment.id).where(
            SavedSegment.definition == "tags: [x]\n")) is None


def test_edit_changes_the_definition(app, owner):
    segment_id = _saved(app, "VIPs", "tags: [vip]\n")
    html = owner.get(f"/admin/segments/{segment_id}").get_data(as_text=True)
    assert "tags: [vip]" in html
    token = csrf_of(owner, f"/admin/segments/{segment_id}")
    response = owner.post(f"/admin/segments/{segment_id}", data={
        "csrf_token": token, "name": "VIPs", "definition": "tags: [gold]\n"})
    assert response.status_code == 302
    with app.app_context():
        assert db.session.get(SavedSegment, segment_id).definition == "tags: [gold]\n"


def test_delete_removes_it(app, owner):
    segment_id = _saved(app, "VIPs", "tags: [vip]\n")
    token = csrf_of(owner, "/admin/segments")
    response = owner.post(f"/admin/segments/{segment_id}/delete", data={"csrf_token": token})
    assert response.status_code == 302
    with app.app_context():
        assert db.session.get(SavedSegment, segment_id) is None
    assert owner.post(f"/admin/segments/{segment_id}/delete",
                      data={"csrf_token": token}).status_code == 404


def test_posts_need_the_csrf_token(app, owner):
    segment_id = _saved(app, "VIPs", "tags: [vip]\n")
    assert owner.post(f"/admin/segments/{segment_id}/delete").status_code == 400
    assert owner.post("/admin/segments/new", data={"name": "x"}).status_code == 400


def test_unknown_segment_is_404(owner):
    assert owner.get("/admin/segments/999").status_code == 404


def test_leads_table_filters_by_tag(app, owner):
    _lead(app, "ann@example.com", tags=["vip", "buyer"])
    _lead(app, "bob@example.com", tags=["buyer"])
    _lead(app, "cat@example.com")
    assert table_emails(owner, "?tag=vip") == ["ann@example.com"]
    assert table_emails(owner, "?tag=buyer") == ["ann@example.com", "bob@example.com"]
    # Combined with another filter.
    assert table_emails(owner, "?tag=buyer&q=bob") == ["bob@example.com"]
    # A bad tag name is named and ignored; the table still shows.
    response = owner.get("/admin/leads?tag=Not%20A%20Tag")
    assert response.status_code == 200
    assert "Tag filter: tag 'Not A Tag' may hold only" in unescape(
        response.get_data(as_text=True))
    assert len(table_emails(owner, "?tag=Not%20A%20Tag")) == 3


def test_leads_table_filter_by_segment_combines_with_the_others(app, owner):
    _lead(app, "ann@example.com", tags=["vip"])
    _lead(app, "bob@example.com", tags=["vip"], page="ebook")
    _lead(app, "cat@example.com", page="ebook")
    segment_id = _saved(app, "Ebook", "pages: [ebook]\n")
    assert table_emails(owner, f"?segment={segment_id}") == [
        "bob@example.com", "cat@example.com"]
    assert table_emails(owner, f"?segment={segment_id}&tag=vip") == ["bob@example.com"]
    html = owner.get(f"/admin/leads?segment={segment_id}").get_data(as_text=True)
    assert f'<option value="{segment_id}" selected>Ebook</option>' in html
    # The CSV export follows the same filter.
    csv_text = owner.get(f"/admin/leads/export.csv?segment={segment_id}").get_data(
        as_text=True)
    assert "bob@example.com" in csv_text and "ann@example.com" not in csv_text


def test_unknown_segment_filter_is_named_and_ignored(app, owner):
    _lead(app, "ann@example.com")
    response = owner.get("/admin/leads?segment=12345")
    assert response.status_code == 200
    assert "There is no saved segment" in unescape(response.get_data(as_text=True))
    assert table_emails(owner, "?segment=abc") == ["ann@example.com"]


def test_segments_is_in_the_navigation(owner):
    html = owner.get("/admin/leads").get_data(as_text=True)
    assert 'href="/admin/segments"' in html


def test_a_stored_definition_that_no_longer_reads_is_shown_not_a_500(app, owner):
    segment_id = _saved(app, "Old", "colour: red\n")
    html = unescape(owner.get("/admin/segments").get_data(as_text=True))
    assert "line 1: colour: unknown key" in html
    assert f"/admin/leads?segment={segment_id}" not in html
    response = owner.get(f"/admin/leads?segment={segment_id}")
    assert response.status_code == 200
    assert "Segment “Old” has a problem" in unescape(response.get_data(as_text=True))
