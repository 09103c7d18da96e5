"""The owner's broadcast journey in a real browser against gunicorn, a scheduler
process and a real SMTP server: a broadcast file becomes a draft in the dashboard, the
owner schedules it there, and sees it sent (and the leads get it, once)."""

import re
from datetime import UTC, datetime

import pytest

from tests.e2e.conftest import _page, log_in
from tests.live import start_stack

SPRING = """---
subject: "Spring sale, {{ lead.first_name }}"
segment:
  pages: [launch]
---
Hi {{ lead.first_name }}, the [sale](https://shop.example.com/sale) is on.
"""


@pytest.fixture(scope="module")
def broadcast_stack(tmp_path_factory):
    """A stack whose broadcasts folder holds one draft, with three leads on `launch`."""
    tmp = tmp_path_factory.mktemp("broadcast-stack")
    folder = tmp / "broadcasts"
    folder.mkdir()
    (folder / "spring-sale.md").write_text(SPRING, encoding="utf-8")
    running, stop = start_stack(tmp, extra_env={"CAPTURE_BROADCASTS_DIR": str(folder)})
    running.seed_leads(3, prefix="buyer")
    yield running
    stop()


@pytest.fixture
def owner(browser, request, tmp_path, broadcast_stack):
    for page in _page(browser, request, tmp_path, "owner",
                      viewport={"width": 1400, "height": 1000}):
        log_in(page, broadcast_stack)
        yield page


def test_owner_schedules_a_broadcast_in_the_dashboard_and_sees_it_sent(owner, broadcast_stack):
    stack = broadcast_stack
    owner.goto(f"{stack.base_url}/admin/broadcasts")
    row = owner.locator('tr[data-broadcast="spring-sale"]')
    assert "draft" in row.inner_text()
    row.get_by_role("link", name="spring-sale").click()
    owner.get_by_role("heading", name=re.compile("Spring sale")).wait_for()
    assert owner.locator('[data-part="audience"]').inner_text() == "3 leads"
    # The schedule form takes a time in UTC: this minute, so the scheduler starts it.
    owner.get_by_label("Schedule for (UTC)").fill(datetime.now(UTC).strftime("%Y-%m-%dT%H:%M"))
    owner.get_by_role("button", name="Schedule").click()
    owner.locator(".flash.success").wait_for()
    for _ in range(60):
        owner.reload()
        if owner.locator('h1 [data-state="sent"]').count():
            break
        owner.wait_for_timeout(500)
    assert owner.locator('h1 [data-state="sent"]').count() == 1
    assert "3 sent" in owner.locator('[data-part="progress"]').inner_text()
    for number in range(3):
        messages = [m for m in stack.wait_for_mail(f"buyer{number}@example.com", count=2)
                    if str(m["Subject"]).startswith("Spring sale")]
        assert len(messages) == 1
    owner.goto(f"{stack.base_url}/admin/broadcasts")
    assert "sent" in owner.locator('tr[data-broadcast="spring-sale"]').inner_text()
