"""The page designs as visitors get them: every design shows the page and its one
form; a video page loads nothing from the video's site before play and allows only
that player's frame; a page's image and video address are checked."""

import io
import re

import pytest
from PIL import Image as Pillow

from capture.pages.definition import page_templates_dir, validate_page
from capture.pages.designs import DESIGNS, gallery
from capture.pages.images import store
from capture.pages.media import parse_video
from tests.conftest import ROOT, form_tokens

YOUTUBE = "https://www.youtube.com/watch?v=dQw4w9WgXcQ"
NO_COOKIE_EMBED = "https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ?autoplay=1&amp;rel=0"


def uploaded(app, colour=(20, 90, 160)) -> str:
    buffer = io.BytesIO()
    Pillow.new("RGB", (64, 36), colour).save(buffer, format="JPEG")
    with app.app_context():
        return store(buffer.getvalue(), "cover.jpg").name


def frame_sources(response) -> str:
    policy = response.headers["Content-Security-Policy"]
    return re.search(r"frame-src ([^;]*)", policy).group(1)


def problems_of(app, **values) -> list[str]:
    data = {"slug": "x", "title": "X", **values}
    with app.app_context():
        return validate_page(data, sequences_dir=str(ROOT / "sequences"),
                             templates_dir=page_templates_dir())[1]


def test_gallery_lists_every_built_in_design_file():
    assert [d.file for d in gallery(page_templates_dir())] == [d.file for d in DESIGNS]
    assert len(DESIGNS) >= 5


@pytest.mark.parametrize("design", [d.file for d in DESIGNS])
def test_each_design_shows_the_page_and_its_one_form(app, client, make_page, design):
    make_page(slug="offer", template=design, headline="Grow your list",
              body="Some **bold** text.", button="Send it to me",
              consent="I agree to the emails.")
    response = client.get("/p/offer")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<h1>Grow your list</h1>" in html
    assert "<strong>bold</strong>" in html
    assert html.count("<form ") == 1 and html.count('name="website"') == 1
    assert "Send it to me</button>" in html and "I agree to the emails." in html
    assert set(form_tokens(html)) >= {"csrf_token", "started"}


@pytest.mark.parametrize("design", ["split.html", "hero.html", "letter.html", "video.html"])
def test_design_shows_the_uploaded_image_with_its_description(app, client, make_page, design):
    name = uploaded(app)
    make_page(slug="offer", template=design, image=name, image_alt="Our studio")
    html = client.get("/p/offer").get_data(as_text=True)
    assert f'src="/images/{name}" alt="Our studio"' in html


def test_letter_has_a_button_that_jumps_to_the_form_at_the_end(app, client, make_page):
    make_page(slug="offer", template="letter.html", button="Yes, send it")
    html = client.get("/p/offer").get_data(as_text=True)
    assert '<a class="button" href="#signup">Yes, send it</a>' in html
    assert html.index('id="signup"') > html.index('class="copy letter-copy"')


def test_video_page_has_a_poster_and_no_player_before_play(app, client, make_page):
    make_page(slug="offer", template="video.html", video_url="https://youtu.be/dQw4w9WgXcQ")
    response = client.get("/p/offer")
    html = response.get_data(as_text=True)
    assert "<iframe" not in html
    assert f'data-embed="{NO_COOKIE_EMBED}"' in html
    assert f'href="{YOUTUBE}"' in html
    assert "/static/video.js" in html


def test_only_a_page_with_a_video_may_frame_its_player(app, client, make_page):
    make_page(slug="offer", template="video.html", video_url=YOUTUBE)
    make_page(slug="plain", template="video.html")
    first, cached = client.get("/p/offer"), client.get("/p/offer")
    assert frame_sources(first) == "'self' https://www.youtube-nocookie.com"
    assert frame_sources(cached) == "'self' https://www.youtube-nocookie.com"
    assert frame_sources(client.get("/p/plain")) == "'self'"


def test_vimeo_page_may_frame_the_vimeo_player_only(app, client, make_page):
    make_page(slug="offer", template="video.html", video_url="https://vimeo.com/76979871")
    response = client.get("/p/offer")
    assert frame_sources(response) == "'self' https://player.vimeo.com"
    assert 'data-embed="https://player.vimeo.com/video/76979871?dnt=1&amp;autoplay=1"' in \
        response.get_data(as_text=True)


def test_cached_page_with_a_redirect_still_allows_its_form_target(app, client, make_page):
    make_page(slug="offer", redirect_url="https://shop.example.com/welcome")
    client.get("/p/offer")
    policy = client.get("/p/offer").headers["Content-Security-Policy"]
    assert "form-action 'self' https://shop.example.com" in policy


@pytest.mark.parametrize("url, canonical", [
    ("https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=42", YOUTUBE),
    ("https://youtu.be/dQw4w9WgXcQ", YOUTUBE),
    ("https://m.youtube.com/shorts/dQw4w9WgXcQ", YOUTUBE),
    ("https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ", YOUTUBE),
    ("https://vimeo.com/76979871", "https://vimeo.com/76979871"),
    ("https://vimeo.com/76979871/abc123def0", "https://vimeo.com/76979871/abc123def0"),
    ("https://player.vimeo.com/video/76979871?h=abc123def0",
     "https://vimeo.com/76979871/abc123def0"),
])
def test_video_addresses_are_stored_in_canonical_form(url, canonical):
    assert parse_video(url).url == canonical


@pytest.mark.parametrize("url", [
    "https://evil.example/watch?v=dQw4w9WgXcQ",
    "https://www.youtube.com.evil.example/watch?v=dQw4w9WgXcQ",
    "javascript:alert(1)//youtube.com/watch?v=dQw4w9WgXcQ",
    'https://www.youtube.com/watch?v=dQw4w9WgXc"',
    "https://www.youtube.com/watch?v=dQw4w9WgXcQ/../../x",
    "https://vimeo.com/76979871/<script>",
    "https://user@youtu.be/dQw4w9WgXcQ",
    "https://www.youtube.com/playlist?list=PL123",
])
def test_other_addresses_are_no_video(url):
    assert parse_video(url) is None


def test_page_with_a_video_address_from_elsewhere_is_refused(app):
    assert problems_of(app, video_url="https://evil.example/v/1") == [
        "video_url: must be a YouTube or Vimeo video address, like "
        "https://www.youtube.com/watch?v=… or https://vimeo.com/…"]


def test_page_with_an_image_never_uploaded_is_refused(app):
    assert problems_of(app, image="0123456789abcdef01234567.png") == [
        "image: no uploaded image '0123456789abcdef01234567.png': upload it under Images "
        "first"]


def test_image_description_has_a_length_limit(app):
    assert problems_of(app, image_alt="x" * 301) == ["image_alt: longer than 300 characters"]
