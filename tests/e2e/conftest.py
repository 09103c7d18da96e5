"""End-to-end set-up: the app as a real gunicorn server with a scheduler process, a
real SMTP server (aiosmtpd) as its mail peer (see tests/live.py), and Debian's
chromium driven by Playwright. Each journey saves a screenshot in its temporary
folder on failure.
"""

import re
from pathlib import Path

import pytest

from tests.live import OWNER_EMAIL, OWNER_PASSWORD, start_stack  # noqa: F401

CHROMIUM = "/usr/bin/chromium"
# A person's browser: headless Chromium names itself HeadlessChrome, which mail-scanner
# detection would rightly treat as a machine.
DESKTOP_CHROME = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/156.0.0.0 Safari/537.36")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update"]
# The same user agent for the whole browser, not only by each context's override:
# a frame's request made before Playwright reaches its new renderer (a preview frame
# navigated while the page unloads) would otherwise say HeadlessChrome, and the
# dashboard's strong session protection, seeing another browser, ends the session.
LAUNCH_ARGS = [*CHROMIUM_FLAGS, f"--user-agent={DESKTOP_CHROME}"]

if not Path(CHROMIUM).exists():
    pytest.skip("chromium is not installed (.ci/run installs it)", allow_module_level=True)


def pytest_collection_modifyitems(items):
    """Every test here drives chromium against real processes: mark it slow (`make
    test-fast` leaves these out)."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Capture served by gunicorn with a scheduler process and a real SMTP peer."""
    running, stop = start_stack(tmp_path_factory.mktemp("stack"))
    yield running
    stop()


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, driven by Playwright (never `playwright install`)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, for the screenshot on failure."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


# Reports each Content-Security-Policy violation of the page or any of its frames to
# the console (Chromium also logs the ones it blocks itself, starting "Refused to").
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", function (event) {
  console.error("CSP violation: " + event.violatedDirective + " blocked " +
                (event.blockedURI || "inline") + " in " + event.documentURI);
});
"""


def csp_violations(page) -> list[str]:
    """What the page's console said about Content-Security-Policy violations so far."""
    return page.csp_messages


def _page(browser, request, tmp_path, name="page", **context_options):
    context = browser.new_context(user_agent=DESKTOP_CHROME, **context_options)
    context.set_default_timeout(15000)
    context.add_init_script(REPORT_VIOLATIONS)
    page = context.new_page()
    page.csp_messages = []
    page.on("console", lambda message: page.csp_messages.append(message.text)
            if "Content Security Policy" in message.text or "CSP violation" in message.text
            else None)
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        path = tmp_path / f"failure-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
        # CI keeps the log, not the screenshot: what the tab showed, in words.
        print(f"url: {page.url}")
        for frame in page.frames:
            try:
                text = frame.locator("body").inner_text(timeout=2000)
            except Exception as error:  # a frame that went away says why
                text = f"({type(error).__name__})"
            print(f"frame {frame.url[:80]!r}: {' '.join(text.split())[:1500]}")
    context.close()
    # Every journey doubles as a check of the policy: no page of ours breaks it.
    if report is not None and report.passed:
        assert page.csp_messages == [], page.csp_messages


@pytest.fixture
def page(browser, request, tmp_path):
    """A fresh desktop browser tab (its own cookies)."""
    yield from _page(browser, request, tmp_path, viewport={"width": 1280, "height": 900})


@pytest.fixture
def phone(browser, request, tmp_path):
    """A fresh phone-sized tab (390×844, touch, mobile)."""
    yield from _page(browser, request, tmp_path, "phone", viewport={"width": 390, "height": 844},
                     is_mobile=True, has_touch=True, device_scale_factor=2)


def link_in(message, pattern: str) -> str:
    """The first URL matching `pattern` in the message's text part."""
    text = message.get_body(("plain",)).get_content()
    match = re.search(pattern, text)
    assert match, f"no {pattern} in: {text}"
    return match.group(0)


def opt_in(page, stack, email, name="Robin", query="?utm_source=newsletter&utm_campaign=nov"):
    """Opt in on the launch page of `stack` as a person does."""
    page.goto(f"{stack.base_url}/p/launch{query}")
    page.get_by_label("First name").fill(name)
    page.get_by_label("Email", exact=True).fill(email)
    page.get_by_label("Send me the guide").check()
    page.wait_for_timeout(2100)  # people take longer than the minimum fill time
    page.get_by_role("button", name="Subscribe").click()


@pytest.fixture
def owner_page(browser, request, tmp_path, stack):
    """A tab where the owner has logged in through the log-in form."""
    for page in _page(browser, request, tmp_path, "owner",
                      viewport={"width": 1400, "height": 1000}):
        log_in(page, stack)
        yield page


def log_in(page, stack) -> None:
    """Log the owner in through the log-in form of `stack`."""
    page.goto(f"{stack.base_url}/admin/login")
    page.get_by_label("Email").fill(OWNER_EMAIL)
    page.get_by_label("Password").fill(OWNER_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Overview").wait_for()
