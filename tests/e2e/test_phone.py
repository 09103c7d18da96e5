"""Every dashboard page on a phone (390×844): no page-level sideways scrolling, every
sidebar link on screen; the demo page's button above the fold; the token copy button.

Screenshots of every page are saved in the test's temporary folder (printed with -s).
"""

import subprocess
import sys

import pytest

from tests.e2e.conftest import _page, log_in
from tests.live import ROOT, start_stack

WIDTH, HEIGHT = 390, 844
LONG_ADDRESS = "someone.with.a.rather.long.mailbox.name@subdomain.example-company.com"
FAILURE = ("550 5.1.1 <someone.with.a.rather.long.mailbox.name@subdomain.example-company.com>: "
           "Recipient address rejected: User unknown in virtual mailbox table")
HOOK_URL = "https://crm.example.com/hooks/capture/incoming-leads-from-the-launch-page?key=abc"
SEED = f"""
import secrets
from sqlalchemy import select
from capture import create_app
from capture.leads import lifecycle as leads
from capture.mail import membership
from capture.db import db
from capture.models import Delivery, Lead, Optin, Page, Webhook, WebhookDelivery
with create_app().app_context():
    page = db.session.scalar(select(Page).where(Page.slug == "launch"))
    lead = Lead(email={LONG_ADDRESS!r}, name="Maximiliana Wolkenstein-Hohenberg",
                public_ref="long1", page_id=page.id, review="approved",
                subscription="subscribed", utm_source="a-very-long-newsletter-source-name",
                utm_campaign="spring-launch-campaign-2026")
    db.session.add(lead)
    db.session.flush()
    membership.enroll(lead)
    vetted = db.session.scalar(select(Page).where(Page.slug == "vetted"))
    db.session.add(Optin(lead_id=lead.id, page_id=vetted.id, review="pending",
                         utm_source="a-very-long-partner-newsletter-source", ref="partner-42",
                         consent_text="I agree to receive the vetted offer and the emails "
                                      "that come with it; I can leave at any time."))
    db.session.add(Delivery(lead_id=lead.id, sequence="launch", step="01-welcome",
                            filename="01-welcome.md", status="failed", attempts=3,
                            subject="Welcome aboard, Maximiliana", error={FAILURE!r}))
    hook = Webhook(url={HOOK_URL!r}, secret=secrets.token_hex(32),
                   events=["lead.created", "lead.confirmed"], page_id=page.id)
    db.session.add(hook)
    db.session.flush()
    db.session.add(WebhookDelivery(webhook_id=hook.id, event="lead.created", body="{{}}",
                                   status="failed", attempts=5, status_code=503,
                                   error="HTTP 503 from crm.example.com: Service Unavailable"))
    db.session.commit()
    print(lead.id, hook.id)
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Capture with the outbox backend (so the Outbox has messages) and some data on
    every dashboard page: leads (one with a long address), a failed delivery, a
    webhook with a failed delivery, an API token."""
    running, stop = start_stack(tmp_path_factory.mktemp("phone"),
                                extra_env={"CAPTURE_MAIL_BACKEND": "outbox"})
    running.seed_leads(12)
    seeded = subprocess.run([sys.executable, "-c", SEED], cwd=ROOT, env=running.env,
                            capture_output=True, text=True, timeout=120)
    assert seeded.returncode == 0, seeded.stderr
    running.lead_id, running.webhook_id = map(int, seeded.stdout.split())
    running.flask("tokens", "create", "storefront-integration")
    yield running
    stop()


@pytest.fixture
def phone_owner(browser, request, stack, tmp_path):
    """A phone-sized tab where the owner has logged in (and may use the clipboard)."""
    for page in _page(browser, request, tmp_path, "phone-owner", is_mobile=True,
                      has_touch=True, viewport={"width": WIDTH, "height": HEIGHT}):
        page.context.grant_permissions(["clipboard-read", "clipboard-write"],
                                       origin=stack.base_url)
        log_in(page, stack)
        yield page


def first_link(page, selector: str) -> str:
    """The href of the first link matching `selector` on the current page."""
    return page.locator(selector).first.get_attribute("href")


def dashboard_paths(page, stack) -> dict[str, str]:
    """Every dashboard page, by name, with data on it."""
    base = stack.base_url
    page.goto(f"{base}/admin/pages")
    editor = first_link(page, "a.page-title")
    page.goto(f"{base}/admin/sequences")
    step = first_link(page, "a[href*='/admin/sequences/launch/']")
    page.goto(f"{base}/admin/outbox")
    page.locator("a[href^='/admin/outbox/']").first.wait_for()
    message = first_link(page, "a[href^='/admin/outbox/']")
    return {
        "overview": "/admin/", "sources": "/admin/sources", "pages": "/admin/pages",
        "page editor": editor, "share": editor.replace("/edit", "/share"),
        "leads": "/admin/leads", "lead": f"/admin/leads/{stack.lead_id}",
        "import": "/admin/leads/import", "sequences": "/admin/sequences", "step": step,
        "deliveries": "/admin/deliveries", "outbox": "/admin/outbox", "message": message,
        "webhooks": "/admin/webhooks", "webhook": f"/admin/webhooks/{stack.webhook_id}",
        "new webhook": "/admin/webhooks/new", "tokens": "/admin/tokens",
        "account": "/admin/account", "segments": "/admin/segments",
        "new segment": "/admin/segments/new", "broadcasts": "/admin/broadcasts",
        "broadcast": "/admin/broadcasts/welcome-offer",
    }


def test_every_dashboard_page_fits_a_phone_and_shows_every_sidebar_link(
        phone_owner, stack, tmp_path):
    page = phone_owner
    problems = []
    for name, path in dashboard_paths(page, stack).items():
        response = page.goto(stack.base_url + path)
        assert response.status == 200, (name, path, response.status)
        page.screenshot(path=str(tmp_path / f"{name.replace(' ', '-')}.png"), full_page=True)
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > WIDTH:
            problems.append(f"{name} ({path}) is {width} px wide")
        links = page.locator(".sidebar nav a, .sidebar a.who")
        assert links.count() >= 10, name
        for index in range(links.count()):
            link = links.nth(index)
            box = link.bounding_box()
            on_screen = box is not None and 0 <= box["x"] and box["x"] + box["width"] <= WIDTH
            if not (link.is_visible() and on_screen):
                problems.append(f"{name}: the link {link.inner_text()!r} is off-screen")
    print(f"screenshots: {tmp_path}")
    assert not problems, "\n".join(problems)


def test_demo_page_shows_its_button_without_scrolling_on_a_phone(phone, stack, tmp_path):
    phone.goto(f"{stack.base_url}/p/demo")
    phone.screenshot(path=str(tmp_path / "demo.png"))
    button = phone.get_by_role("button", name="Send me the checklist")
    box = button.bounding_box()
    assert box["y"] >= 0 and box["y"] + box["height"] <= HEIGHT, box
    assert phone.evaluate("window.scrollY") == 0
    assert phone.evaluate("document.documentElement.scrollWidth") <= WIDTH
    # The page's text is still there, under the form.
    assert "One promise" in phone.locator(".copy").inner_text()


def test_new_api_token_is_copied_with_its_button(phone_owner, stack):
    page = phone_owner
    page.goto(f"{stack.base_url}/admin/tokens")
    page.get_by_label("Name").fill("zapier")
    page.get_by_role("button", name="Create token").click()
    token = page.locator("code#token").inner_text().strip()
    page.get_by_role("button", name="Copy").click()
    page.get_by_role("button", name="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == token
