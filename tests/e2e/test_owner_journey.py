"""The owner's journeys in a real browser: find a lead and its story, review leads,
edit a page and see it live, preview a sequence step."""

import re

from tests.e2e.conftest import link_in, opt_in


def test_owner_sees_the_lead_with_its_source_and_timeline(page, owner_page, stack):
    opt_in(page, stack, "ada@example.com", name="Ada", query="?utm_source=podcast")
    confirmation = stack.wait_for_mail("ada@example.com")[0]
    page.goto(link_in(confirmation, rf"{re.escape(stack.base_url)}/confirm/[A-Za-z0-9_.-]+"))
    page.get_by_role("button", name="Confirm my subscription").click()
    welcome = stack.wait_for_mail("ada@example.com", count=2)[1]
    html = welcome.get_body(("html",)).get_content()
    page.goto(re.search(r'<img src="([^"]+/o/[^"]+)"', html).group(1))  # opens the email
    page.goto(link_in(welcome, rf"{re.escape(stack.base_url)}/c/[A-Za-z0-9_-]+"))  # clicks

    owner_page.goto(f"{stack.base_url}/admin/leads?q=ada@example.com")
    row = owner_page.get_by_role("row").filter(has_text="ada@example.com")
    assert "podcast" in row.inner_text()
    row.get_by_role("link", name="ada@example.com").click()
    owner_page.get_by_role("heading", name="Timeline").wait_for()
    timeline = owner_page.locator("ol.timeline").inner_text()
    for entry in ("Opted in from podcast", "Confirmed the address", "Sent “Welcome aboard, Ada”",
                  "Opened “Welcome aboard, Ada”", "Clicked"):
        assert entry in timeline, timeline


def test_owner_approves_and_rejects_leads_of_a_manual_review_page(browser, owner_page, stack,
                                                                  tmp_path):
    for email in ("keep@example.com", "drop@example.com"):
        context = browser.new_context()
        visitor = context.new_page()
        visitor.goto(f"{stack.base_url}/p/vetted")
        visitor.get_by_label("Name").fill(email.split("@")[0].title())
        visitor.get_by_label("Email").fill(email)
        visitor.wait_for_timeout(2100)
        visitor.get_by_role("button", name="Subscribe").click()
        visitor.wait_for_url(re.compile(r".*/thanks$"))
        context.close()
    stack.fold_in()  # as the scheduler does within a second

    owner_page.goto(f"{stack.base_url}/admin/leads?review=pending&page=vetted")
    owner_page.get_by_label("Select keep@example.com").check()
    owner_page.get_by_role("button", name="Approve selected").click()
    owner_page.get_by_label("Select drop@example.com").check()
    owner_page.get_by_label("Reason for rejecting").fill("Outside our market")
    owner_page.get_by_role("button", name="Reject selected").click()

    owner_page.goto(f"{stack.base_url}/admin/leads?page=vetted")
    table = owner_page.locator("table").inner_text()
    assert re.search(r"keep@example.com.*approved", table, re.S)
    assert re.search(r"drop@example.com.*rejected", table, re.S)
    # Approval enrolled the subscribed lead: its welcome email goes out.
    assert str(stack.wait_for_mail("keep@example.com")[0]["Subject"]) == "Welcome aboard, Keep"
    assert stack.smtp.to("drop@example.com") == []


def test_owner_edits_a_page_and_sees_the_change_live(page, owner_page, stack):
    owner_page.goto(f"{stack.base_url}/admin/pages")
    owner_page.get_by_role("link", name="Launch Guide").first.click()
    owner_page.get_by_label("Headline").fill("The launch guide, rewritten")
    owner_page.get_by_role("button", name="Save changes").first.click()
    owner_page.get_by_text("Saved Launch Guide").wait_for()
    page.goto(f"{stack.base_url}/p/launch")
    page.get_by_role("heading", name="The launch guide, rewritten").wait_for()


def test_owner_previews_a_sequence_step_in_a_sandboxed_frame(owner_page, stack):
    owner_page.goto(f"{stack.base_url}/admin/sequences")
    owner_page.get_by_role("link", name=re.compile("Welcome aboard")).first.click()
    frame = owner_page.locator("iframe.email-frame")
    assert frame.get_attribute("sandbox") == ""
    preview = owner_page.frame_locator("iframe.email-frame")
    preview.get_by_text("read the guide").wait_for()
    assert "Welcome aboard" in owner_page.locator("h1").inner_text()
