"""Dashboard, pages area: the list and its numbers, the editor (create, edit, every field,
problems shown per field), the live preview, publish, copy and the share panel."""

import html
import re
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from capture.leads import lifecycle as leads
from capture.numbers import metrics
from capture.db import db
from capture.models import Lead, Page, Visit
from capture.pages.service import unique_slug
from tests.admin.conftest import form_data, get_page, page_id
from tests.conftest import create_page, csrf_of, optin


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def row_of(page_html: str, slug: str) -> str:
    match = re.search(rf'<tr data-page="{slug}">(.*?)</tr>', page_html, re.S)
    assert match, f"no row for {slug}"
    return match.group(1)


def cell(row: str, metric: str) -> str:
    match = re.search(rf'data-metric="{metric}">(.*?)</td>', row, re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split())


# --- access ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/admin/pages", "/admin/pages/new", "/admin/pages/1/edit",
                                  "/admin/pages/1/share", "/admin/pages/1/preview"])
def test_anonymous_is_sent_to_login(client, demo_page, path):
    response = client.get(path)
    assert response.status_code == 302
    assert "/admin/login" in response.headers["Location"]


def test_every_page_renders_for_the_owner(owner, app, demo_page):
    pid = page_id(app, "demo")
    for path in ("/admin/pages", "/admin/pages/new", f"/admin/pages/{pid}/edit",
                 f"/admin/pages/{pid}/share", f"/admin/pages/{pid}/preview"):
        assert owner.get(path).status_code == 200, path


def test_unknown_page_is_404(owner):
    assert owner.get("/admin/pages/999/edit").status_code == 404
    assert owner.get("/admin/pages/999/share").status_code == 404


@pytest.mark.parametrize("action", ["publish", "unpublish", "copy", "edit"])
def test_post_without_csrf_is_refused(owner, app, demo_page, action):
    pid = page_id(app, "demo")
    response = owner.post(f"/admin/pages/{pid}/{action}",
                          data=form_data("", slug="demo", published=None))
    assert response.status_code == 400
    page = get_page(app, "demo")
    assert page.published is True and page.title != "The Guide"
    assert count(app, Page) == 1


def test_create_and_preview_without_csrf_are_refused(owner, app):
    assert owner.post("/admin/pages/new", data=form_data("")).status_code == 400
    assert owner.post("/admin/pages/preview", data=form_data("")).status_code == 400
    assert count(app, Page) == 0


# --- list -----------------------------------------------------------------------------

def test_empty_list_invites_to_create_a_page(owner):
    body = owner.get("/admin/pages").get_data(as_text=True)
    assert "No pages yet" in body
    assert "Create your first page" in body
    assert 'href="/admin/pages/new"' in body


def test_list_shows_each_page_with_the_numbers_of_the_metrics_module(owner, app, client,
                                                                      demo_page):
    create_page(app, slug="offer", title="Offer", payout="4.00", review="manual",
                published=False)
    for index in range(3):
        visitor = app.test_client()
        optin(visitor, "demo", query="?utm_source=ads", email=f"reader{index}@example.com",
              name="Reader", consent="y")
    app.test_client().get("/p/demo")  # a visitor who does not sign up
    with app.app_context():
        first = db.session.scalar(select(Lead).where(Lead.email == "reader0@example.com"))
        leads.reject(first, "test")
        report = metrics.report(by="page")
    numbers = report.rows["demo"]
    assert numbers.visitors == 4 and numbers.leads == 3  # the data set is not trivial

    body = owner.get("/admin/pages").get_data(as_text=True)
    demo = row_of(body, "demo")
    assert cell(demo, "visitors") == str(numbers.visitors)
    assert cell(demo, "leads") == str(numbers.leads)
    assert cell(demo, "conversion_rate") == f"{numbers.conversion_rate * 100:.1f}%"
    assert cell(demo, "approval_rate") == f"{numbers.approval_rate * 100:.1f}%"
    assert cell(demo, "revenue") == f"{numbers.revenue:,.2f} USD"
    assert cell(demo, "earnings_per_visitor") == f"{numbers.earnings_per_visitor:,.2f} USD"
    assert 'badge published' in demo and "welcome" in demo and "auto" in demo

    offer = row_of(body, "offer")
    assert "badge draft" in offer and "manual" in offer
    assert cell(offer, "visitors") == "0"
    assert cell(offer, "conversion_rate") == "-"
    assert cell(offer, "earnings_per_visitor") == "-"


def test_page_title_with_script_is_escaped(owner, app):
    create_page(app, slug="xss", title="<script>alert(1)</script>")
    for path in ("/admin/pages", f"/admin/pages/{page_id(app, 'xss')}/edit",
                 f"/admin/pages/{page_id(app, 'xss')}/share"):
        body = owner.get(path).get_data(as_text=True)
        assert "<script>alert(1)</script>" not in body, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body, path


# --- create and edit --------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["application/x-www-form-urlencoded",
                                      "multipart/form-data"])
def test_create_with_every_field_makes_the_page_live(owner, app, encoding):
    token = csrf_of(owner, "/admin/pages/new")
    assert 'enctype="multipart/form-data"' in owner.get("/admin/pages/new").get_data(as_text=True)
    response = owner.post("/admin/pages/new", data=form_data(token), content_type=encoding)
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/admin/pages/{page_id(app, 'guide')}/edit")

    page = get_page(app, "guide")
    assert page.title == "The Guide" and page.headline == "Get the guide today"
    assert page.body == "Read **this**." and page.button == "Send it"
    assert page.fields == [
        {"name": "name", "label": "First name", "type": "text", "required": False},
        {"name": "email", "label": "Your email", "type": "email", "required": True},
        {"name": "size", "label": "Team size", "type": "select", "required": False,
         "options": ["1-10", "11-50", "51+"]},
        {"name": "country", "label": "Country", "type": "country", "required": True},
    ]
    assert page.consent == "I agree to receive emails." and page.double_opt_in is True
    assert page.sequence == "welcome" and page.thank_you == "## Thanks!"
    assert page.redirect_url is None and page.review == "manual"
    assert page.rules == {"countries": ["US", "CA"], "required": ["size"],
                          "block_domains": ["spam.example", "bad.example"],
                          "block_disposable": True}
    assert page.payout == Decimal("2.50") and page.currency == "EUR"
    assert page.template == "default.html" and page.published is True

    live = owner.get("/p/guide")
    assert live.status_code == 200
    text = live.get_data(as_text=True)
    assert "Get the guide today" in text and "Team size" in text and "51+" in text


def test_unchecked_boxes_are_saved_as_off(owner, app):
    token = csrf_of(owner, "/admin/pages/new")
    data = form_data(token, double_opt_in=None, block_disposable=None, published=None,
                     redirect_url="https://example.com/next")
    assert owner.post("/admin/pages/new", data=data).status_code == 302
    page = get_page(app, "guide")
    assert page.double_opt_in is False and page.published is False
    assert page.rules["block_disposable"] is False
    assert page.redirect_url == "https://example.com/next"
    assert owner.get("/p/guide").status_code == 404  # a draft


def test_invalid_data_shows_each_problem_by_its_field_and_stores_nothing(owner, app):
    token = csrf_of(owner, "/admin/pages/new")
    data = form_data(token, slug="Not a slug!", title="", payout="abc", currency="XYZ",
                     countries="ZZ", redirect_url="ftp://x", **{"rows-2-options": ""})
    response = owner.post("/admin/pages/new", data=data)
    assert response.status_code == 422
    body = html.unescape(response.get_data(as_text=True))
    assert "Nothing was saved" in body
    for message in ("lowercase letters, digits and dashes", "must not be empty",
                    "'abc' is not a number", "'XYZ' is not an ISO 4217 currency code",
                    "'ZZ' is not an ISO country code", "must be an absolute http(s) URL",
                    "size: Options: a select needs a list of options"):
        assert message in body, message
    # Each message sits in its field's block.
    assert re.search(r'<label for="payout">.*?is not a number', body, re.S)
    assert not re.search(r'<label for="payout">.*?<label for="currency">.*?is not a number',
                         body, re.S)
    # The typed values are kept.
    assert 'value="Not a slug!"' in body and "spam.example\nbad.example" in body
    assert count(app, Page) == 0


def test_slug_of_another_page_is_refused(owner, app, demo_page):
    token = csrf_of(owner, "/admin/pages/new")
    response = owner.post("/admin/pages/new", data=form_data(token, slug="demo"))
    assert response.status_code == 422
    assert "another page uses this address already" in response.get_data(as_text=True)
    assert count(app, Page) == 1


def test_edit_changes_the_live_page(owner, app, demo_page):
    pid = page_id(app, "demo")
    edit = owner.get(f"/admin/pages/{pid}/edit").get_data(as_text=True)
    assert 'value="The One-Page Lead Magnet Checklist"' in edit  # the form shows the page
    assert 'value="demo"' in edit and "<option selected value=\"welcome\">" in edit
    token = csrf_of(owner, f"/admin/pages/{pid}/edit")
    data = form_data(token, slug="demo", headline="A brand new promise", review="auto",
                     countries="", **{"rows-3-name": ""})
    response = owner.post(f"/admin/pages/{pid}/edit", data=data)
    assert response.status_code == 302
    assert "A brand new promise" in owner.get("/p/demo").get_data(as_text=True)
    page = get_page(app, "demo")
    assert page.review == "auto" and [f["name"] for f in page.fields] == ["name", "email", "size"]
    assert count(app, Page) == 1


def test_invalid_edit_leaves_the_page_as_it_was(owner, app, demo_page):
    pid = page_id(app, "demo")
    token = csrf_of(owner, f"/admin/pages/{pid}/edit")
    data = form_data(token, slug="demo", headline="Changed", payout="-3")
    response = owner.post(f"/admin/pages/{pid}/edit", data=data)
    assert response.status_code == 422
    assert "must be between 0 and 1000000" in response.get_data(as_text=True)
    page = get_page(app, "demo")
    assert page.headline.startswith("Turn visitors") and page.payout == Decimal("1.50")


def test_edit_renaming_the_slug_moves_the_page(owner, app, demo_page):
    pid = page_id(app, "demo")
    token = csrf_of(owner, f"/admin/pages/{pid}/edit")
    assert owner.post(f"/admin/pages/{pid}/edit",
                      data=form_data(token, slug="demo2")).status_code == 302
    assert owner.get("/p/demo").status_code == 404
    assert owner.get("/p/demo2").status_code == 200


def test_add_more_fields_shows_more_rows_and_saves_nothing(owner, app):
    token = csrf_of(owner, "/admin/pages/new")
    response = owner.post("/admin/pages/new", data=form_data(token, add_rows="1"))
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert 'name="rows-7-name"' in body and 'value="Team size"' in body
    assert count(app, Page) == 0


# --- preview ----------------------------------------------------------------------------

def test_preview_shows_unsaved_values_and_stores_nothing(owner, app, demo_page):
    pid = page_id(app, "demo")
    edit = owner.get(f"/admin/pages/{pid}/edit").get_data(as_text=True)
    iframe = re.search(r'<iframe name="page-preview"[^>]*>', edit, re.S).group(0)
    assert re.search(r'\ssandbox(="")?[\s>]', iframe)
    assert "allow-same-origin" not in iframe and "allow-scripts" not in iframe
    assert 'formtarget="page-preview"' in edit

    token = csrf_of(owner, f"/admin/pages/{pid}/edit")
    before = {model: count(app, model) for model in (Page, Visit, Lead)}
    response = owner.post("/admin/pages/preview",
                          data=form_data(token, slug="demo", headline="Not saved yet"))
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "Not saved yet" in body and "Team size" in body and "I agree to receive" in body
    assert "sandbox" in response.headers["Content-Security-Policy"]
    assert {model: count(app, model) for model in (Page, Visit, Lead)} == before
    assert get_page(app, "demo").headline.startswith("Turn visitors")


def test_preview_of_invalid_values_still_renders_with_a_notice(owner, app):
    token = csrf_of(owner, "/admin/pages/new")
    data = form_data(token, slug="", title="", template="missing.html",
                     **{"rows-2-options": "", "rows-3-kind": "bogus"})
    response = owner.post("/admin/pages/preview", data=data)
    assert response.status_code == 200
    assert "problems to fix before this can be saved" in response.get_data(as_text=True)
    assert count(app, Page) == 0 and count(app, Visit) == 0


def test_preview_of_a_saved_draft_counts_no_visit(owner, app):
    create_page(app, slug="draft", title="Draft", headline="Coming soon", published=False)
    response = owner.get(f"/admin/pages/{page_id(app, 'draft')}/preview")
    assert response.status_code == 200 and "Coming soon" in response.get_data(as_text=True)
    assert count(app, Visit) == 0


# --- publish, copy, share -------------------------------------------------------------

def test_publish_and_unpublish_toggle_the_live_page(owner, app, demo_page):
    pid = page_id(app, "demo")
    token = csrf_of(owner, "/admin/pages")
    assert owner.get("/p/demo").status_code == 200
    response = owner.post(f"/admin/pages/{pid}/unpublish", data={"csrf_token": token})
    assert response.status_code == 302
    assert owner.get("/p/demo").status_code == 404
    listing = owner.get("/admin/pages").get_data(as_text=True)
    assert "badge draft" in row_of(listing, "demo") and "offline" in listing
    owner.post(f"/admin/pages/{pid}/publish", data={"csrf_token": token})
    assert owner.get("/p/demo").status_code == 200
    assert "badge published" in row_of(owner.get("/admin/pages").get_data(as_text=True), "demo")


def test_copy_makes_an_unpublished_copy_under_a_new_slug(owner, app, demo_page):
    pid = page_id(app, "demo")
    token = csrf_of(owner, "/admin/pages")
    response = owner.post(f"/admin/pages/{pid}/copy", data={"csrf_token": token})
    assert response.status_code == 302
    copy = get_page(app, "demo-copy")
    assert response.headers["Location"].endswith(f"/admin/pages/{copy.id}/edit")
    original = get_page(app, "demo")
    assert copy.published is False and copy.title == f"{original.title} (copy)"
    for key in ("headline", "body", "fields", "consent", "sequence", "rules", "payout",
                "review", "currency", "template", "thank_you", "button"):
        assert getattr(copy, key) == getattr(original, key), key
    assert owner.get("/p/demo-copy").status_code == 404
    owner.post(f"/admin/pages/{pid}/copy", data={"csrf_token": token})
    assert get_page(app, "demo-copy-2") is not None
    assert count(app, Page) == 3


def test_unique_slug_stays_a_valid_slug():
    assert unique_slug("demo-copy", set()) == "demo-copy"
    assert unique_slug("demo-copy", {"demo-copy", "demo-copy-2"}) == "demo-copy-3"
    long = "a" * 60 + "-copy"
    slug = unique_slug(long, {long[:64]})
    assert len(slug) <= 64 and slug.endswith("-2")


def test_share_panel_builds_links_and_the_embed_snippet(owner, app, demo_page):
    pid = page_id(app, "demo")
    body = owner.get(f"/admin/pages/{pid}/share?utm_source=news+letter&utm_medium=email"
                     "&utm_campaign=spring&ref=").get_data(as_text=True)
    text = html.unescape(body)
    assert 'value="http://127.0.0.1:5000/p/demo"' in text
    assert ("http://127.0.0.1:5000/p/demo?utm_source=news+letter&utm_medium=email"
            "&utm_campaign=spring") in text
    # The snippet is shown as text (escaped once in the page) and links with utm_source=embed.
    assert "&lt;a href=&#34;http://127.0.0.1:5000/p/demo?utm_source=embed&#34;" in body \
        or "&lt;a href=&quot;http://127.0.0.1:5000/p/demo?utm_source=embed&quot;" in body
    assert "Send me the checklist&lt;/a&gt;" in body
    assert "Embed the form on other sites" in body


def test_share_snippet_escapes_the_button_text(owner, app):
    create_page(app, slug="x", title="X", button='"><script>alert(1)</script>')
    body = owner.get(f"/admin/pages/{page_id(app, 'x')}/share").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in body
    assert "<script>alert(1)</script>" not in html.unescape(
        re.search(r'<textarea[^>]*id="embed-snippet"[^>]*>(.*?)</textarea>', body, re.S).group(1))


def test_preview_of_the_after_sign_up_view_shows_the_unsaved_thank_you_text(owner, app):
    token = csrf_of(owner, "/admin/pages/new")
    single = owner.post("/admin/pages/preview?view=thanks",
                        data=form_data(token, double_opt_in=None, thank_you="## Welcome aboard"))
    assert single.status_code == 200
    assert "<h2>Welcome aboard</h2>" in single.get_data(as_text=True)
    double = owner.post("/admin/pages/preview?view=confirmed",
                        data=form_data(token, thank_you="Confirmed, *thanks*"))
    assert "<em>thanks</em>" in double.get_data(as_text=True)
    assert "sandbox" in double.headers["Content-Security-Policy"]
    assert count(app, Page) == 0 and count(app, Lead) == 0


def test_after_sign_up_preview_of_a_double_opt_in_page_asks_to_check_the_inbox(owner, app):
    """Like the real thanks page: the thank-you text comes only after confirming."""
    token = csrf_of(owner, "/admin/pages/new")
    after = owner.post("/admin/pages/preview?view=thanks",
                       data=form_data(token, thank_you="Confirmed, *thanks*"))
    text = after.get_data(as_text=True)
    assert "Check your inbox" in text and "<em>thanks</em>" not in text
    confirmed = owner.post("/admin/pages/preview?view=confirmed",
                           data=form_data(token, thank_you="Confirmed, *thanks*"))
    assert "Your subscription is confirmed" in confirmed.get_data(as_text=True)
    single = owner.post("/admin/pages/preview?view=confirmed",
                        data=form_data(token, double_opt_in=None, thank_you="All *set*"))
    assert "<em>set</em>" in single.get_data(as_text=True)
    assert "Check your inbox" not in single.get_data(as_text=True)
    edit = owner.get("/admin/pages/new").get_data(as_text=True)
    assert ">After sign-up</button>" in edit and ">After confirming</button>" in edit


def test_publishing_from_the_share_panel_returns_to_it(owner, app):
    create_page(app, slug="soon", title="Soon", published=False)
    pid = page_id(app, "soon")
    share = owner.get(f"/admin/pages/{pid}/share").get_data(as_text=True)
    assert "This page is a draft" in share
    token = csrf_of(owner, f"/admin/pages/{pid}/share")
    response = owner.post(f"/admin/pages/{pid}/publish",
                          data={"csrf_token": token, "back": "share"})
    assert response.headers["Location"].endswith(f"/admin/pages/{pid}/share")
    assert owner.get("/p/soon").status_code == 200


def test_pages_list_shows_one_button_per_page_and_the_rest_in_a_menu(owner, app):
    create_page(app, slug="live", title="Live", published=True)
    html = owner.get("/admin/pages").get_data(as_text=True)
    cell = re.search(r'<tr data-page="live">.*?<td class="actions">(.*?)</td>', html, re.S).group(1)
    buttons = re.findall(r'class="button[^"]*"[^>]*>([^<]+)<', cell)
    assert buttons == ["Edit", "More"]
    menu = re.search(r'<details class="more">.*?</details>', cell, re.S).group(0)
    for action in (">Share<", ">Open<", ">Unpublish<", ">Copy<"):
        assert action in menu


def test_proof_of_work_box_turns_the_widget_on_and_off(owner, app, client):
    token = csrf_of(owner, "/admin/pages/new")
    assert owner.post("/admin/pages/new",
                      data=form_data(token, proof_of_work="y")).status_code == 302
    assert get_page(app, "guide").proof_of_work is True
    editor = f"/admin/pages/{page_id(app, 'guide')}/edit"
    body = owner.get(editor).get_data(as_text=True)
    [box] = re.findall(r'<input[^>]*id="proof_of_work"[^>]*>', body)
    assert "checked" in box
    assert "<altcha-widget" in client.get("/p/guide").get_data(as_text=True)

    owner.post(editor, data=form_data(csrf_of(owner, editor)))
    assert get_page(app, "guide").proof_of_work is False
    assert "<altcha-widget" not in client.get("/p/guide").get_data(as_text=True)
