"""The wire format of our emails, read back by the standard library's parser."""

from email import message_from_bytes, policy

import pytest

from capture.mail import mime


def parsed(message: mime.Email):
    return message_from_bytes(message.as_bytes(), policy=policy.default)


def content(message, subtype: str) -> str:
    """A part's text with the wire's CRLF line ends read as newlines."""
    return message.get_body((subtype,)).get_content().replace("\r\n", "\n").rstrip("\n")


def email(subject="Hello", text="Text", html="<p>HTML</p>", name="Ann Lee"):
    return mime.Email([("From", mime.address("Shop", "shop@example.com")),
                       ("To", mime.address(name, "ann@example.com")),
                       ("Subject", subject)], text, html,
                      sender="shop@example.com", recipient="ann@example.com")


def test_both_parts_read_back_exactly_as_written():
    text = "Héllo Zoë,\n\n. a line starting with a dot\n= signs = fine\n" + "x" * 200
    html = "<p>Grüße — «quotes» &amp; 名前</p>\n" + "<b>long</b> " * 50
    message = parsed(email(text=text, html=html))
    assert message.get_content_type() == "multipart/alternative"
    assert content(message, "plain") == text
    assert content(message, "html") == html


def test_every_line_is_short_seven_bit_and_crlf_terminated():
    raw = email(subject="A subject " * 40, text="ü" * 500, html="<p>" + "y" * 900).as_bytes()
    assert raw.isascii()
    lines = raw.split(b"\r\n")
    assert b"\n" not in b"".join(lines) and b"\r" not in b"".join(lines)
    assert max(len(line) for line in lines) <= 78


def test_non_ascii_subject_and_name_arrive_decoded():
    subject = "Grüße, " + " ".join(["Zoë"] * 30)
    message = parsed(email(subject=subject, name="Zoë O'Brien"))
    assert str(message["Subject"]) == subject
    assert message["To"].addresses[0].display_name == "Zoë O'Brien"
    assert message["To"].addresses[0].addr_spec == "ann@example.com"


@pytest.mark.parametrize("value", ["Hi\r\nBcc: victim@example.com", "Hi\nBcc: x@y.z", "a\rb"])
def test_a_line_break_in_a_header_is_refused(value):
    with pytest.raises(ValueError, match="line break"):
        email(subject=value)
    message = email()
    with pytest.raises(ValueError, match="line break"):
        message.replace_header("Subject", value)


def test_header_reads_and_replaces_by_name_in_any_case():
    message = email()
    assert message["subject"] == "Hello" and message["Reply-To"] is None
    message.replace_header("SUBJECT", "[Test] Hello")
    assert str(parsed(message)["Subject"]) == "[Test] Hello"
    with pytest.raises(KeyError):
        message.replace_header("Reply-To", "x@example.com")
