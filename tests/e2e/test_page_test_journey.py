"""A page test in a real browser: the owner adds a variant on the page's Test tab,
and visitors are served both variants, each keeping theirs."""

import re

from tests.e2e.conftest import DESKTOP_CHROME


def test_owner_adds_a_variant_and_visitors_see_both(browser, owner_page, stack):
    owner_page.goto(f"{stack.base_url}/admin/pages")
    owner_page.get_by_role("link", name="Launch Guide").first.click()
    owner_page.get_by_role("link", name="Test").click()
    owner_page.get_by_role("heading", name="Variants").wait_for()
    owner_page.get_by_label("Key").fill("b")
    owner_page.get_by_label("Weight", exact=True).fill("50")
    owner_page.get_by_label("Headline").fill("Launch faster with variant B")
    owner_page.get_by_role("button", name="Save the test").click()
    owner_page.get_by_text("Saved the test of Launch Guide").wait_for()
    assert owner_page.get_by_label("Key").first.input_value() == "b"

    seen = set()
    for _ in range(30):
        context = browser.new_context(user_agent=DESKTOP_CHROME)
        visitor = context.new_page()
        visitor.goto(f"{stack.base_url}/p/launch")
        headline = visitor.locator("h1").inner_text()
        variant = "b" if "variant B" in headline else "a"
        if variant == "a":
            assert headline == "Get the launch guide"
        visitor.reload()  # the same visitor keeps their variant
        assert visitor.locator("h1").inner_text() == headline
        seen.add(variant)
        context.close()
        if seen == {"a", "b"}:
            break
    assert seen == {"a", "b"}

    owner_page.reload()
    table = owner_page.locator("table.variants-table").inner_text()
    assert re.search(r"^a\s+live", table, re.M) and re.search(r"^b\s+live", table, re.M)
    owner_page.locator("figure.variant-chart").first.wait_for()
