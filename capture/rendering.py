"""Email messages: headers that cannot be injected into, text and HTML parts."""

import re
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from flask import current_app, render_template

from capture.models import Lead, Page

# Control characters (CR, LF, tabs, NUL …) never reach a header.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def header_text(value: str, limit: int = 200) -> str:
    """A value made safe for a header: one line, no control characters, and no
    `=?…?=` sequence a mail client could decode as an encoded word."""
    text = _CONTROL.sub(" ", value or "").strip()
    text = text.replace("=?", "= ?")
    return " ".join(text.split())[:limit]


def recipient(lead: Lead) -> Address:
    """The lead as a To: address; its name is display text only."""
    username, domain = lead.email.rsplit("@", 1)
    return Address(header_text(lead.name, 100), username, domain)


def new_message(lead: Lead, subject: str, text: str, html: str) -> EmailMessage:
    """A multipart/alternative message to one lead from the configured sender."""
    config = current_app.config
    sender: Address = config["MAIL_FROM_ADDRESS"]
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient(lead)
    message["Subject"] = header_text(subject, 300)
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=sender.domain or "localhost")
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


def confirmation_message(lead: Lead, page: Page, confirm_url: str) -> EmailMessage:
    """The double opt-in email: one link to confirm, nothing else to click."""
    context = {
        "lead": lead,
        "page": page,
        "confirm_url": confirm_url,
        "postal_address": current_app.config["POSTAL_ADDRESS"],
    }
    subject = f"Please confirm your subscription: {page.title}"
    text = render_template("email/confirm.txt", **context)
    html = render_template("email/confirm.html", **context)
    return new_message(lead, subject, text, html)
