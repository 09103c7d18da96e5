"""The editor's design settings: the gallery of designs with live thumbnails (each
design rendered with the page's values), the image and video settings."""

import io
import re

from PIL import Image as Pillow

from capture.pages.designs import DESIGNS
from capture.pages.images import store
from tests.admin.conftest import form_data, get_page, page_id
from tests.conftest import create_page, csrf_of


def uploaded(app) -> str:
    buffer = io.BytesIO()
    Pillow.new("RGB", (32, 18), (200, 120, 40)).save(buffer, format="PNG")
    with app.app_context():
        return store(buffer.getvalue(), "cover.png").name


def test_gallery_shows_every_design_with_its_thumbnail_and_the_choice(owner, app):
    create_page(app, slug="guide", template="hero.html")
    pid = page_id(app, "guide")
    html = owner.get(f"/admin/pages/{pid}/edit").get_data(as_text=True)
    for design in DESIGNS:
        assert f'src="/admin/pages/{pid}/designs/{design.file}"' in html
        assert f'formaction="/admin/pages/designs/{design.file}"' in html
        assert design.title in html
    radios = re.findall(r'<input type="radio" name="template" value="([^"]+)"'
                        r' aria-describedby="[^"]+"( checked)?>', html)
    assert [file for file, _ in radios] == [d.file for d in DESIGNS]
    assert [file for file, checked in radios if checked] == ["hero.html"]


def test_thumbnail_of_a_saved_page_shows_it_in_that_design(owner, app):
    create_page(app, slug="guide", headline="Saved headline")
    pid = page_id(app, "guide")
    response = owner.get(f"/admin/pages/{pid}/designs/letter.html")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "design-letter" in html and "Saved headline" in html
    assert response.headers["Content-Security-Policy"].startswith("sandbox;")


def test_thumbnail_shows_the_unsaved_values_in_that_design(owner, app):
    token = csrf_of(owner, "/admin/pages/new")
    response = owner.post("/admin/pages/designs/split.html",
                          data=form_data(token, headline="Typed, not saved"))
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "design-split" in html and "Typed, not saved" in html
    assert get_page(app, "guide") is None


def test_thumbnail_of_an_unknown_design_is_not_found(owner, app):
    create_page(app, slug="guide")
    pid = page_id(app, "guide")
    assert owner.get(f"/admin/pages/{pid}/designs/nothing.html").status_code == 404
    assert owner.get(f"/admin/pages/{pid}/designs/_form.html").status_code == 404
    assert owner.get(f"/admin/pages/{pid}/designs/..%2Fbase.html").status_code == 404


def test_choosing_a_design_with_image_and_video_saves_them(owner, app):
    name = uploaded(app)
    token = csrf_of(owner, "/admin/pages/new")
    response = owner.post("/admin/pages/new", data=form_data(
        token, template="video.html", image=name, image_alt="Our studio",
        video_url="https://youtu.be/dQw4w9WgXcQ"))
    assert response.status_code == 302
    page = get_page(app, "guide")
    assert (page.template, page.image, page.image_alt, page.video_url) == (
        "video.html", name, "Our studio", "https://www.youtube.com/watch?v=dQw4w9WgXcQ")


def test_editor_offers_the_uploaded_images(owner, app):
    name = uploaded(app)
    html = owner.get("/admin/pages/new").get_data(as_text=True)
    assert f'<option value="{name}">cover.png (32×18)</option>' in html


def test_video_address_from_elsewhere_is_shown_beside_its_field(owner, app):
    token = csrf_of(owner, "/admin/pages/new")
    response = owner.post("/admin/pages/new", data=form_data(
        token, template="video.html", video_url="https://evil.example/watch?v=dQw4w9WgXcQ"))
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert re.search(r'id="video_url"[^>]*>\s*<p class="hint"[^>]*>[^<]*</p>\s*'
                     r'<p class="error" role="alert">must be a YouTube or Vimeo video', html)
    assert get_page(app, "guide") is None
