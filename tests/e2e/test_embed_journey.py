"""The embeddable form in a real browser: the owner allows their blog and pastes the
form's code into one of its pages, served from another origin (another loopback port);
a visitor signs up there. The same code on a site that is not allowed is refused."""

import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

CONSENT = "Send me the guide and follow-up emails."


class QuietHandler(SimpleHTTPRequestHandler):
    """Serves the host pages without logging each request to the test output."""

    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    """Two static sites on loopback ports of their own (the port is part of an origin):
    the owner's blog and a site the owner never allowed. Both serve the same folder."""
    folder = tmp_path_factory.mktemp("sites")
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=folder))
               for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, *(f"http://127.0.0.1:{server.server_port}" for server in servers)
    for server in servers:
        server.shutdown()
        server.server_close()


def copy_form_code(owner_page, stack, allowed_site: str, variant="embed-script") -> str:
    """The owner lists the site under the launch page's embed settings, saves, and
    copies the code the editor shows."""
    owner_page.goto(f"{stack.base_url}/admin/pages")
    owner_page.get_by_role("link", name="Launch Guide").first.click()
    owner_page.get_by_label("Sites allowed to embed the form").fill(allowed_site)
    owner_page.get_by_role("button", name="Save changes").first.click()
    owner_page.get_by_text("Saved Launch Guide").wait_for()
    return owner_page.locator(f"#{variant}").input_value()


def paste(folder, name: str, code: str) -> str:
    """A page of the host site with the form's code pasted in its article."""
    (folder / name).write_text(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>A blog post</title>"
        f"</head><body><h1>How we launched</h1><article>{code}</article></body></html>",
        encoding="utf-8")
    return name


def fill_in(page, email: str) -> None:
    page.get_by_label("First name").fill("Eve")
    page.get_by_label("Email", exact=True).fill(email)
    page.get_by_label(CONSENT).check()
    page.wait_for_timeout(2100)  # people take longer than the minimum fill time


def leads_with(stack, email: str) -> list[dict]:
    return [row for row in stack.leads("launch") if row["email"] == email]


def test_a_visitor_signs_up_with_the_form_pasted_on_an_allowed_site(page, owner_page,
                                                                    stack, sites):
    folder, blog, _ = sites
    name = paste(folder, "post.html", copy_form_code(owner_page, stack, blog))
    page.goto(f"{blog}/{name}?utm_source=blogpost&utm_campaign=embed-e2e&ref=partner9")

    # A mistake only the server sees is shown beside its field, on the blog.
    fill_in(page, "eve@localhost")
    page.get_by_role("button", name="Subscribe").click()
    error = page.locator('[data-capture-error="email"]')
    error.wait_for()
    assert "Check the part after the @: it needs a dot" in error.inner_text()
    assert page.url.startswith(blog)

    page.get_by_label("Email", exact=True).fill("eve@example.com")
    page.get_by_role("button", name="Subscribe").click()
    page.wait_for_url(f"{stack.base_url}/p/launch/thanks")
    page.get_by_role("heading", name="Check your inbox").wait_for()

    assert "confirm" in str(stack.wait_for_mail("eve@example.com")[0]["Subject"]).lower()
    [lead] = leads_with(stack, "eve@example.com")
    assert (lead["utm_source"], lead["utm_campaign"], lead["ref"]) == (
        "blogpost", "embed-e2e", "partner9")
    assert lead["subscription"] == "unconfirmed"


def test_the_script_free_form_signs_up_with_the_tags_of_its_action(page, owner_page,
                                                                   stack, sites):
    folder, blog, _ = sites
    code = copy_form_code(owner_page, stack, blog, variant="embed-plain")
    assert "<script" not in code
    code = code.replace('/embed"', '/embed?utm_source=plainform"')
    page.goto(f"{blog}/{paste(folder, 'plain.html', code)}")
    fill_in(page, "pia@example.com")
    page.get_by_role("button", name="Subscribe").click()
    page.wait_for_url(f"{stack.base_url}/p/launch/thanks")
    page.get_by_role("heading", name="Check your inbox").wait_for()
    stack.wait_for_mail("pia@example.com")
    [lead] = leads_with(stack, "pia@example.com")
    assert lead["utm_source"] == "plainform"


def test_the_form_pasted_on_a_site_not_allowed_is_refused(page, owner_page, stack, sites):
    folder, blog, other = sites
    name = paste(folder, "elsewhere.html", copy_form_code(owner_page, stack, blog))
    page.goto(f"{other}/{name}")
    fill_in(page, "mallory@example.com")
    page.get_by_role("button", name="Subscribe").click()
    page.get_by_text(f"This page does not accept sign-ups from {other}.").wait_for()
    assert leads_with(stack, "mallory@example.com") == []
    assert stack.smtp.to("mallory@example.com") == []
