"""A visitor's whole journey in a real browser against the real server."""

import re

from tests.e2e.conftest import link_in, opt_in


def test_visitor_confirms_gets_the_welcome_email_and_its_link_lands_right(page, stack):
    opt_in(page, stack, "robin@example.com")
    page.get_by_role("heading", name="Check your inbox").wait_for()

    confirmation = stack.wait_for_mail("robin@example.com")[0]
    assert "confirm" in str(confirmation["Subject"]).lower()
    page.goto(link_in(confirmation, rf"{re.escape(stack.base_url)}/confirm/[A-Za-z0-9_.-]+"))
    # The link alone confirms nothing (mail scanners open links): the visitor presses.
    page.get_by_role("heading", name="Confirm your subscription").wait_for()
    assert "robin@example.com" in page.locator("main").inner_text()
    [lead] = [row for row in stack.leads("launch") if row["email"] == "robin@example.com"]
    assert lead["subscription"] == "unconfirmed"
    page.get_by_role("button", name="Confirm my subscription").click()
    page.get_by_role("heading", name="Your subscription is confirmed").wait_for()
    assert page.locator("h1, h2, h3").count() == 1

    welcome = stack.wait_for_mail("robin@example.com", count=2)[1]
    assert str(welcome["Subject"]) == "Welcome aboard, Robin"
    page.goto(link_in(welcome, rf"{re.escape(stack.base_url)}/c/[A-Za-z0-9_-]+"))
    page.wait_for_url(f"{stack.base_url}/p/launch?utm_source=email&from=welcome")
    page.get_by_role("heading", name="Get the launch guide").wait_for()

    [lead] = [row for row in stack.leads("launch") if row["email"] == "robin@example.com"]
    assert (lead["utm_source"], lead["utm_campaign"]) == ("newsletter", "nov")
    assert (lead["review"], lead["subscription"]) == ("approved", "subscribed")

    # The welcome email's unsubscribe link: everything (the default), or this sequence.
    page.goto(link_in(welcome, rf"{re.escape(stack.base_url)}/u/[A-Za-z0-9_.-]+"))
    page.get_by_role("heading", name="Unsubscribe?").wait_for()
    page.get_by_role("button", name="Unsubscribe from everything").wait_for()
    page.get_by_role("button", name="Only stop the “launch” emails").click()
    page.get_by_role("heading", name="You've left the “launch” emails").wait_for()
    [lead] = [row for row in stack.leads("launch") if row["email"] == "robin@example.com"]
    assert lead["subscription"] == "subscribed"


def test_invalid_email_is_explained_on_the_page(page, stack):
    page.goto(f"{stack.base_url}/p/launch")
    page.get_by_label("First name").fill("Kim")
    page.get_by_label("Email", exact=True).fill("kim@")
    page.get_by_label("Send me the guide").check()
    page.get_by_role("button", name="Subscribe").click()
    page.get_by_text("Please correct the highlighted fields.").wait_for()
    assert page.get_by_label("First name").input_value() == "Kim"
    assert not [row for row in stack.leads() if row["email"].startswith("kim@")]


def test_phone_sized_screen_shows_a_usable_form(phone, stack):
    phone.goto(f"{stack.base_url}/p/launch?utm_source=instagram")
    button = phone.get_by_role("button", name="Subscribe")
    box = button.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390
    assert box["height"] >= 40  # big enough to tap
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "the page scrolls sideways on a phone"
    phone.get_by_label("First name").fill("Sam")
    phone.get_by_label("Email", exact=True).fill("sam.phone@example.com")
    phone.get_by_label("Send me the guide").check()
    phone.wait_for_timeout(2100)
    button.tap()
    phone.get_by_role("heading", name="Check your inbox").wait_for()
    assert [row["utm_source"] for row in stack.leads()
            if row["email"] == "sam.phone@example.com"] == ["instagram"]
