"""The page's Test tab in the dashboard: the numbers per variant with a chart, the
variants' editor (add, change, weight, remove; bad input refused with one line each,
nothing changed), preview of each variant, pause, resume and promote (CSRF)."""

import re

import pytest

from capture.db import db
from capture.models import Page
from tests.admin.conftest import form_data, page_id
from tests.conftest import csrf_of, optin
from tests.test_page_tests import FIELDS, TEST, client_of, visitor_of


def the_page(app) -> Page:
    with app.app_context():
        page = db.session.query(Page).one()
        db.session.expunge(page)
        return page


def tab(app) -> str:
    return f"/admin/pages/{page_id(app, 'offer')}/test"


def variant_rows(token: str, *rows: dict, a_weight: str = "") -> dict:
    """The tab's form as a browser posts it: the weight of a and one row per variant."""
    data = {"csrf_token": token, "a_weight": a_weight}
    for index, row in enumerate(rows):
        data.update({f"rows-{index}-{name}": value for name, value in row.items()})
    return data


def test_the_tab_shows_each_variant_with_its_numbers_chart_and_actions(owner, app, make_page):
    make_page(**TEST)
    client_of(app, visitor_of(app, "a")).get("/p/offer")
    optin(client_of(app, visitor_of(app, "b")), "offer", email="bo@example.com",
          company="Acme")
    html = owner.get(tab(app)).get_data(as_text=True)
    rows = dict(re.findall(r'<tr data-variant="([^"]+)">(.*?)</tr>', html, re.S))
    assert list(rows) == ["a", "b"]
    assert re.search(r'data-metric="leads">\s*1\s*<', rows["b"])
    assert 'figure class="variant-chart" data-variant="a"' in html
    assert 'figure class="variant-chart" data-variant="b"' in html
    assert "fewer than 100" in html
    pid = page_id(app, "offer")
    for action in ("pause", "promote"):
        assert f'action="/admin/pages/{pid}/test/b/{action}"' in html
    assert f'href="/admin/pages/{pid}/preview?variant=b"' in html
    # The editor links to the tab.
    assert f'href="/admin/pages/{pid}/test"' in owner.get(f"/admin/pages/{pid}/edit").get_data(
        as_text=True)


def test_adding_and_changing_variants_in_the_tab(owner, app, make_page):
    make_page(fields=FIELDS, headline="Headline A")
    token = csrf_of(owner, tab(app))
    response = owner.post(tab(app), data=variant_rows(
        token, {"key": "b", "weight": "30", "headline": "Headline B", "button": "Go B"},
        {"key": "c", "weight": "", "thank_you": "Thanks C", "paused": "y",
         "fields": '[{"name": "email", "label": "Work email", "type": "email", '
                   '"required": true}]'},
        a_weight="70"))
    assert response.status_code == 302
    page = the_page(app)
    assert page.variant_a_weight == 70
    assert page.variants == [
        {"key": "b", "weight": 30, "paused": False, "headline": "Headline B", "button": "Go B"},
        {"key": "c", "weight": None, "paused": True, "thank_you": "Thanks C",
         "fields": [{"name": "email", "label": "Work email", "type": "email",
                     "required": True}]}]
    html = owner.get(tab(app)).get_data(as_text=True)
    assert 'value="Headline B"' in html and "Work email" in html
    # Change b, remove c: c's numbers would stay, as an ended variant.
    token = csrf_of(owner, tab(app))
    owner.post(tab(app), data=variant_rows(
        token, {"original": "b", "key": "b", "weight": "50", "headline": "Headline B2"},
        {"original": "c", "key": "c", "remove": "y"}))
    page = the_page(app)
    assert page.variants == [{"key": "b", "weight": 50, "paused": False,
                              "headline": "Headline B2"}]
    assert page.variant_a_weight is None


def test_a_variants_image_and_video_are_chosen_in_the_tab(owner, app, make_page):
    from tests.test_page_designs import YOUTUBE, uploaded

    cover = uploaded(app)
    make_page(fields=FIELDS, image=cover)
    html = owner.get(tab(app)).get_data(as_text=True)
    assert f'<option value="{cover}">cover.jpg (64×36)</option>' in html
    token = csrf_of(owner, tab(app))
    owner.post(tab(app), data=variant_rows(
        token, {"key": "b", "image": "-", "template": "video.html", "video_url": YOUTUBE},
        {"key": "c", "image": cover, "image_alt": "Blue cover"}))
    assert the_page(app).variants == [
        {"key": "b", "weight": None, "paused": False, "template": "video.html",
         "image": "", "video_url": YOUTUBE},
        {"key": "c", "weight": None, "paused": False, "image": cover,
         "image_alt": "Blue cover"}]
    html = owner.get(tab(app)).get_data(as_text=True)
    assert '<option selected value="-">No image</option>' in html
    assert f'<option selected value="{cover}">' in html


def test_bad_input_in_the_tab_is_refused_with_one_line_each_and_nothing_changes(
        owner, app, make_page):
    make_page(**TEST)
    before = the_page(app)
    token = csrf_of(owner, tab(app))
    response = owner.post(tab(app), data=variant_rows(
        token, {"original": "b", "key": "b", "weight": "0"}, {"key": "b", "weight": "-3"},
        {"key": "c", "weight": "abc", "fields": "[not json"}))
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    problems = re.findall(r"<li>(.*?)</li>", html.split("Nothing was saved")[1].split("</ul>")[0])
    assert problems == [
        "variants[2] (c).fields: not valid JSON: Expecting value: line 1 column 2 (char 1)",
        "variants[0] (b).weight: must be a positive whole number (at most 10000)",
        "variants[1] (b).key: used by another variant",
        "variants[1] (b).weight: must be a positive whole number (at most 10000)",
        "variants[2] (c).weight: must be a positive whole number (at most 10000)"]
    after = the_page(app)
    assert (after.variants, after.updated_at) == (before.variants, before.updated_at)


def test_saving_the_editor_keeps_the_test(owner, app, make_page):
    make_page(**TEST)
    pid = page_id(app, "offer")
    token = csrf_of(owner, f"/admin/pages/{pid}/edit")
    response = owner.post(f"/admin/pages/{pid}/edit", data=form_data(
        token, slug="offer", required_fields="", countries="", **{
            "rows-2-name": "", "rows-3-name": ""}))
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    assert [v["key"] for v in the_page(app).variants] == ["b"]


def test_each_variant_has_its_preview(owner, app, make_page):
    make_page(**TEST)
    pid = page_id(app, "offer")
    assert "Headline B" in owner.get(f"/admin/pages/{pid}/preview?variant=b").get_data(
        as_text=True)
    assert "Headline A" in owner.get(f"/admin/pages/{pid}/preview?variant=a").get_data(
        as_text=True)
    assert owner.get(f"/admin/pages/{pid}/preview?variant=z").status_code == 404


def test_pause_resume_and_promote(owner, app, make_page):
    make_page(**TEST)
    pid = page_id(app, "offer")
    token = csrf_of(owner, tab(app))
    assert owner.post(f"/admin/pages/{pid}/test/b/pause", data={"csrf_token": token}
                      ).status_code == 302
    assert the_page(app).variants[0]["paused"] is True
    assert "Variant b is paused" in owner.get(tab(app)).get_data(as_text=True)
    owner.post(f"/admin/pages/{pid}/test/b/resume", data={"csrf_token": token})
    assert the_page(app).variants[0]["paused"] is False
    owner.post(f"/admin/pages/{pid}/test/b/promote", data={"csrf_token": token})
    page = the_page(app)
    assert (page.headline, page.variants) == ("Headline B", [])
    assert "Variant b is the page now" in owner.get(tab(app)).get_data(as_text=True)


@pytest.mark.parametrize("action", ["pause", "resume", "promote"])
def test_actions_need_the_csrf_token_and_a_known_variant(owner, app, make_page, action):
    make_page(**TEST)
    pid = page_id(app, "offer")
    assert owner.post(f"/admin/pages/{pid}/test/b/{action}").status_code == 400
    token = csrf_of(owner, tab(app))
    assert owner.post(f"/admin/pages/{pid}/test/z/{action}",
                      data={"csrf_token": token}).status_code == 404
    assert [(v["key"], v["paused"]) for v in the_page(app).variants] == [("b", False)]
    assert owner.post(tab(app), data=variant_rows("", {"key": "c"})).status_code == 400
