"""The Content-Security-Policy in a real browser (issue 15.12): the dashboard, its
live previews and the public pages run without one violation, and another site
cannot frame them. (Every other journey checks for violations too: see conftest.)"""

import re
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.e2e.conftest import DESKTOP_CHROME, csp_violations


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def other_site(tmp_path_factory):
    """A static site on a loopback port of its own: another origin."""
    folder = tmp_path_factory.mktemp("other-site")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=folder))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_dashboard_and_its_previews_run_without_a_policy_violation(owner_page, stack):
    base = stack.base_url
    for path in ("/admin/", "/admin/leads", "/admin/pages", "/admin/sources",
                 "/admin/deliveries", "/admin/tokens", "/admin/webhooks", "/admin/leads/import"):
        owner_page.goto(base + path)
        owner_page.wait_for_load_state("load")
    # The page editor's live preview: typing refreshes the sandboxed frame.
    owner_page.goto(f"{base}/admin/pages")
    owner_page.get_by_role("link", name="Launch Guide").first.click()
    owner_page.get_by_label("Headline").fill("Previewed under the policy")
    preview = owner_page.frame_locator("#page-preview")
    preview.get_by_role("heading", name="Previewed under the policy").wait_for()
    owner_page.get_by_role("button", name="After sign-up").click()
    owner_page.wait_for_timeout(800)
    # A new page: the placeholder frame, then its first preview.
    owner_page.goto(f"{base}/admin/pages/new")
    owner_page.wait_for_load_state("load")
    # A sequence step's email preview (srcdoc with the email's inline styles).
    owner_page.goto(f"{base}/admin/sequences")
    owner_page.get_by_role("link", name=re.compile("Welcome aboard")).first.click()
    owner_page.frame_locator("iframe.email-frame").get_by_text("read the guide").wait_for()
    assert csp_violations(owner_page) == []


def test_public_pages_run_without_a_policy_violation(page, stack):
    page.goto(f"{stack.base_url}/p/launch")
    page.get_by_label("First name").fill("Pat")
    page.get_by_label("Email", exact=True).fill("not-an-address")
    page.get_by_role("button").last.click()
    page.wait_for_load_state("load")
    page.goto(f"{stack.base_url}/p/launch/thanks")
    page.goto(f"{stack.base_url}/p/nothing-here")
    assert csp_violations(page) == []


def test_another_site_cannot_frame_the_public_page_or_the_dashboard(browser, stack,
                                                                    other_site):
    folder, origin = other_site
    (folder / "framer.html").write_text(
        "<!doctype html><title>framer</title>"
        f'<iframe id="public" src="{stack.base_url}/p/launch"></iframe>'
        f'<iframe id="dashboard" src="{stack.base_url}/admin/login"></iframe>')
    context = browser.new_context(user_agent=DESKTOP_CHROME)
    refused = []
    page = context.new_page()
    page.on("console", lambda message: refused.append(message.text)
            if "frame-ancestors" in message.text else None)
    try:
        page.goto(f"{origin}/framer.html")
        page.wait_for_load_state("load")
        page.wait_for_timeout(500)
        for name in ("public", "dashboard"):
            frame = page.frame_locator(f"#{name}")
            assert frame.locator("form").count() == 0, name  # nothing of ours shows
        assert len(refused) == 2, refused
    finally:
        context.close()
