"""Dashboard, page editor: the sites allowed to embed the form, and the code to paste."""

import html
import re

from capture.models import Page
from tests.admin.conftest import form_data, get_page, page_id
from tests.conftest import count, create_page, csrf_of

BLOG = "https://blog.example.com"


def textarea(body: str, element_id: str) -> str:
    """The text of a textarea as the browser shows it (unescaped once)."""
    match = re.search(rf'<textarea[^>]*id="{element_id}"[^>]*>(.*?)</textarea>', body, re.S)
    assert match, f"no textarea {element_id}"
    return html.unescape(match.group(1))


def test_saving_sites_stores_them_as_origins_and_shows_them_one_per_line(owner, app):
    token = csrf_of(owner, "/admin/pages/new")
    response = owner.post("/admin/pages/new", data=form_data(
        token, allowed_origins="HTTPS://Blog.Example.com/\n\n  http://localhost:8000 \n"))
    assert response.status_code == 302
    assert get_page(app, "guide").allowed_origins == [BLOG, "http://localhost:8000"]
    editor = owner.get(f"/admin/pages/{page_id(app, 'guide')}/edit").get_data(as_text=True)
    assert textarea(editor, "allowed_origins").strip() == f"{BLOG}\nhttp://localhost:8000"


def test_a_line_that_is_not_an_origin_is_named_and_nothing_is_saved(owner, app):
    token = csrf_of(owner, "/admin/pages/new")
    response = owner.post("/admin/pages/new", data=form_data(
        token, allowed_origins=f"{BLOG}\nblog.example.com/signup"))
    assert response.status_code == 422
    body = html.unescape(response.get_data(as_text=True))
    assert "Nothing was saved." in body
    assert "'blog.example.com/signup' needs https:// or http:// in front" in body
    assert count(app, Page) == 0


def test_embedding_needs_double_opt_in(owner, app):
    token = csrf_of(owner, "/admin/pages/new")
    response = owner.post("/admin/pages/new", data=form_data(
        token, allowed_origins=BLOG, double_opt_in=None))
    assert response.status_code == 422
    assert "needs double opt-in" in response.get_data(as_text=True)
    assert count(app, Page) == 0


def test_editor_shows_both_snippets_for_a_page_with_sites(owner, app):
    create_page(app, allowed_origins=[BLOG], button="Send the guide")
    body = owner.get(f"/admin/pages/{page_id(app, 'offer')}/edit").get_data(as_text=True)
    script = textarea(body, "embed-script")
    plain = textarea(body, "embed-plain")
    assert '<form class="capture-form" method="post" ' \
        'action="http://127.0.0.1:5000/p/offer/embed"' in script
    assert "<script>" in script and "Send the guide</button>" in script
    assert 'name="website"' in plain and "<script>" not in plain
    # Shown as text: the page itself runs no script from the snippet.
    assert "<script>\n(function (form)" not in body


def test_snippet_in_the_editor_is_escaped(owner, app):
    create_page(app, allowed_origins=[BLOG], button='"><script>alert(1)</script>')
    body = owner.get(f"/admin/pages/{page_id(app, 'offer')}/edit").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in body
    assert "<script>alert(1)</script>" not in textarea(body, "embed-script")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;</button>" in textarea(body, "embed-script")


def test_page_without_sites_offers_no_snippet_but_says_how_to_get_one(owner, app):
    create_page(app)
    body = owner.get(f"/admin/pages/{page_id(app, 'offer')}/edit").get_data(as_text=True)
    assert 'id="embed-script"' not in body
    assert "Save the page with at least one site" in body
