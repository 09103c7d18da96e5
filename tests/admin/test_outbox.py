"""The Outbox area: the outbox backend's .eml files, newest first, paginated; one
message with its headers, text part and sandboxed HTML part; no other file readable."""

import html
import re
from email.message import EmailMessage
from pathlib import Path

from capture.mail import backends as mail
from capture.mail import outbox
from tests.admin.conftest import owner_of


def send(app, subject, to="ann@example.com", text="Hello.", html_part="<p>Hello.</p>"):
    with app.app_context():
        message = EmailMessage()
        message["From"] = "Capture <no-reply@localhost>"
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = "Mon, 02 Mar 2026 10:00:00 +0000"
        message.set_content(text)
        message.add_alternative(html_part, subtype="html")
        mail.send(message)


def names(app):
    with app.app_context():
        return outbox.outbox_names()


def listed_subjects(page: str) -> list[str]:
    return re.findall(r'<tr data-message="[^"]+">.*?<a href="[^"]+">(.*?)</a>', page, re.S)


def test_page_renders_for_the_owner_and_redirects_anonymous_visitors(app, owner, client):
    send(app, "Hi")
    name = names(app)[0]
    assert owner.get("/admin/outbox").status_code == 200
    assert owner.get(f"/admin/outbox/{name}").status_code == 200
    for path in ("/admin/outbox", f"/admin/outbox/{name}"):
        response = client.get(path)
        assert response.status_code == 302 and "/admin/login" in response.headers["Location"]


def test_empty_outbox_says_so(app, owner):
    page = owner.get("/admin/outbox").get_data(as_text=True)
    assert "No messages yet" in page


def test_another_backend_explains_where_emails_go(make_app):
    app = make_app(MAIL_BACKEND="smtp")
    page = owner_of(app).get("/admin/outbox").get_data(as_text=True)
    assert "Your mail backend is <strong>smtp</strong>" in page
    assert "CAPTURE_MAIL_BACKEND=outbox" in page
    assert "The outbox is empty." in page


def test_messages_are_listed_newest_first(app, owner, clock):
    for subject in ("First", "Second", "Third"):
        send(app, subject)
        clock.advance(minutes=1)
    page = owner.get("/admin/outbox").get_data(as_text=True)
    assert listed_subjects(page) == ["Third", "Second", "First"]
    assert "ann@example.com" in page and "2026-03-02 10:00:00" in page


def test_the_list_is_paginated_by_fifty(app, owner, clock):
    for number in range(53):
        send(app, f"Message {number}")
        clock.advance(seconds=1)
    first = listed_subjects(owner.get("/admin/outbox").get_data(as_text=True))
    second = owner.get("/admin/outbox?page=2").get_data(as_text=True)
    assert len(first) == 50 and first[0] == "Message 52"
    assert listed_subjects(second) == ["Message 2", "Message 1", "Message 0"]
    assert "Page 2 of 2" in second
    assert 'href="/admin/outbox?page=1"' in second and "Older" not in second


def test_a_message_shows_headers_text_and_sandboxed_html(app, owner):
    send(app, "Hello <script>alert(1)</script>", to="Ann <ann@example.com>",
         text="Plain <b>text</b> part.",
         html_part='<p>Rich part.</p><script>alert(2)</script>'
                   '<img src="http://127.0.0.1:5000/o/token">')
    name = names(app)[0]
    response = owner.get(f"/admin/outbox/{name}")
    page = response.get_data(as_text=True)
    assert "<script>" not in page
    assert "Hello &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Plain &lt;b&gt;text&lt;/b&gt; part." in page
    assert re.search(r"<th scope=\"row\">From</th><td>Capture &lt;no-reply@localhost&gt;</td>",
                     page)
    frame = re.findall(r"<iframe[^>]*>", page)
    assert len(frame) == 1 and 'sandbox=""' in frame[0]
    srcdoc = html.unescape(re.search(r'srcdoc="([^"]*)"', frame[0]).group(1))
    assert "<p>Rich part.</p>" in srcdoc
    # No image loads (an open pixel must not count the owner's reading as an open).
    assert "img-src data:" in response.headers["Content-Security-Policy"]
    assert "Images are not loaded here" in page


def test_only_listed_outbox_files_can_be_read(app, owner):
    send(app, "Hi")
    folder = Path(app.instance_path) / "outbox"
    (folder / ".partial.eml").write_text("Subject: half\n\n")
    (folder / "notes.txt").write_text("Subject: secret\n\n")
    (Path(app.instance_path) / "outside.eml").write_text("Subject: outside\n\n")
    for path in ("/admin/outbox/..%2foutside.eml", "/admin/outbox/..%2F..%2Fconfig.py",
                 "/admin/outbox/%2Fetc%2Fpasswd", "/admin/outbox/..", "/admin/outbox/.partial.eml",
                 "/admin/outbox/notes.txt", "/admin/outbox/nothing.eml",
                 "/admin/outbox/%2e%2e%2foutside.eml"):
        response = owner.get(path)
        assert response.status_code == 404, path
    with app.app_context():
        assert outbox.outbox_message("../outside.eml") is None
        assert outbox.outbox_message(str(folder / names(app)[0])) is None
        assert outbox.outbox_message(names(app)[0]) is not None
