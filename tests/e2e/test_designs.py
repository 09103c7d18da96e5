"""Every page design in Chromium at phone (390 px) and desktop (1280 px) width: no
sideways scrolling, no request leaving this machine, under 100 kB without the owner's
image, and no serious or critical axe-core finding; the video design loads its player
only when play is pressed. A failing test saves a screenshot (tests/e2e/conftest.py).

axe-core is vendored in tests/vendor/axe-core/ (no network at test time) and run with
`page.evaluate`, which the page's Content-Security-Policy does not apply to.
"""

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from capture.pages.designs import DESIGNS
from tests.live import ROOT, start_stack

AXE = (Path(__file__).parent.parent / "vendor" / "axe-core" / "axe.min.js").read_text()
RUN_AXE = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                      nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}));
}"""
MAX_PAGE_BYTES = 100 * 1024
VIDEO_ID = "dQw4w9WgXcQ"
PLAYER = "https://www.youtube-nocookie.com/"
BODY = ("Most opt-in pages ask for too much and promise too little. This free checklist "
        "walks you through the decisions that make a capture page convert:\n\n"
        "- **One promise**, stated in the headline\n- **One field** more than you need is "
        "one too many\n- **Follow-up that sends itself**\n\n## Why pages fail\n\n"
        + "A capture page has one job, and every extra link pulls attention away. " * 6
        + "\n\n> The best page I ever built had eleven words and one field.\n")
UPLOAD = f"""
import io
from PIL import Image
from capture import create_app
from capture.pages import images
buffer = io.BytesIO()
Image.linear_gradient("L").resize((1600, 900)).convert("RGB").save(buffer, format="JPEG")
with create_app().app_context():
    print(images.store(buffer.getvalue(), "cover.jpg").name)
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Capture with one page per design, each with an uploaded image (and a video)."""
    tmp = tmp_path_factory.mktemp("designs")
    running, stop = start_stack(tmp, workers=1, scheduler=False)
    made = subprocess.run([sys.executable, "-c", UPLOAD], cwd=ROOT, env=running.env,
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    image = made.stdout.split()[-1]
    pages = [{"slug": design.file.removesuffix(".html"), "title": "The Page Checklist",
              "headline": "Turn visitors into subscribers with one page", "body": BODY,
              "template": design.file, "image": image, "image_alt": "A soft grey gradient",
              "video_url": f"https://youtu.be/{VIDEO_ID}", "button": "Send me the checklist",
              "consent": "Email me the checklist and occasional tips.",
              "fields": [{"name": "name", "label": "First name", "type": "text"},
                         {"name": "email", "label": "Email", "type": "email",
                          "required": True}]}
             for design in DESIGNS]
    pages.append({"slug": "gallery", "title": "Gallery Page", "body": BODY})
    (tmp / "designs.json").write_text(json.dumps(pages))
    running.flask("pages", "import", str(tmp / "designs.json"))
    yield running
    stop()


def watch_requests(page, stack) -> list[str]:
    """Every URL the tab asks for; anything off this machine is aborted (the video
    player answers with a stand-in: this machine has no way out)."""
    asked: list[str] = []

    def handle(route):
        url = route.request.url
        asked.append(url)
        if url.startswith(stack.base_url) or url.startswith("data:"):
            route.continue_()
        elif url.startswith(PLAYER):
            route.fulfill(status=200, content_type="text/html",
                          body="<!doctype html><title>Player</title><p>Player</p>")
        else:
            route.abort()

    page.route("**/*", handle)
    return asked


def off_machine(urls: list[str]) -> list[str]:
    return [url for url in urls
            if urlsplit(url).hostname not in ("127.0.0.1", "localhost", None)]


def check_design(page, stack, design: str) -> None:
    asked = watch_requests(page, stack)
    weights: list[tuple[str, int]] = []
    page.on("response", lambda response: weights.append(
        (response.url, len(response.body()))))
    page.goto(f"{stack.base_url}/p/{design}")
    page.wait_for_load_state("networkidle")
    assert page.get_by_role("heading", level=1).inner_text() == \
        "Turn visitors into subscribers with one page"
    assert page.get_by_role("button", name="Send me the checklist").is_visible()
    assert off_machine(asked) == []
    sideways = page.evaluate("document.documentElement.scrollWidth - "
                             "document.documentElement.clientWidth")
    assert sideways <= 0, f"{design} scrolls sideways by {sideways} px"
    own = sum(size for url, size in weights if "/images/" not in url)
    assert own < MAX_PAGE_BYTES, weights
    page.evaluate(AXE)
    serious = [v for v in page.evaluate(RUN_AXE) if v["impact"] in ("serious", "critical")]
    assert serious == [], json.dumps(serious, indent=1)


@pytest.mark.parametrize("design", [d.file.removesuffix(".html") for d in DESIGNS])
def test_design_on_a_phone(phone, stack, design):
    check_design(phone, stack, design)


@pytest.mark.parametrize("design", [d.file.removesuffix(".html") for d in DESIGNS])
def test_design_on_a_desktop(page, stack, design):
    check_design(page, stack, design)


def test_keyboard_focus_is_visible_on_the_form(page, stack):
    page.goto(f"{stack.base_url}/p/split")
    page.keyboard.press("Tab")
    focused = page.evaluate("""() => {
        const element = document.activeElement;
        const style = getComputedStyle(element);
        return {name: element.name, outline: style.outlineStyle, width: style.outlineWidth};
    }""")
    assert focused["name"] == "name"
    assert focused["outline"] != "none" and focused["width"] != "0px"


def test_video_loads_nothing_from_youtube_before_play(page, stack):
    asked = watch_requests(page, stack)
    page.goto(f"{stack.base_url}/p/video")
    page.wait_for_load_state("networkidle")
    assert page.locator("iframe").count() == 0
    assert off_machine(asked) == []

    page.get_by_role("link", name="Play video").click()
    player = page.locator("iframe")
    player.wait_for()
    assert player.get_attribute("src") == \
        f"https://www.youtube-nocookie.com/embed/{VIDEO_ID}?autoplay=1&rel=0"
    page.frame_locator("iframe").get_by_text("Player").wait_for()
    assert off_machine(asked) == [player.get_attribute("src")]


def test_owner_picks_a_design_in_the_gallery(owner_page, stack):
    owner_page.goto(f"{stack.base_url}/admin/pages")
    owner_page.get_by_role("link", name="Gallery Page").click()
    thumbnails = owner_page.locator(".design-card iframe")
    assert thumbnails.count() == len(DESIGNS)
    owner_page.frame_locator('iframe[name="design-2"]').locator("body.design-hero").wait_for()
    owner_page.get_by_label("Long-form letter").check()
    owner_page.get_by_role("button", name="Save changes").first.click()
    owner_page.get_by_text("Saved Gallery Page.").wait_for()
    assert owner_page.get_by_label("Long-form letter").is_checked()
    owner_page.goto(f"{stack.base_url}/p/gallery")
    assert owner_page.locator("body.design-letter").count() == 1

