"""Composing email: step templates and the confirmation rendered into messages, safe
headers, and the language an email's built-in words are in."""

import html as html_lib
import re
from datetime import UTC, datetime
from email.headerregistry import Address
from email.utils import format_datetime, make_msgid, parseaddr
from functools import lru_cache
from urllib.parse import urlsplit

from flask import current_app, render_template
from flask_babel import gettext

from capture import domains, languages
from capture.db import db
from capture.mail import layouts as email_layouts
from capture.mail import mime, subject_tests, verp
from capture.mail.library import Library
from capture.mail.sequences import compiled
from capture.markup import email_parts
from capture.tag_names import tag_problem
from capture.models import Broadcast, Delivery, Lead, Page

# Control characters (CR, LF, tabs, NUL …) never reach a header.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def header_text(value: str, limit: int = 200) -> str:
    """A value made safe for a header: one line, no control characters, and no
    `=?…?=` sequence a mail client could decode as an encoded word."""
    text = _CONTROL.sub(" ", value or "").strip()
    text = text.replace("=?", "= ?")
    return " ".join(text.split())[:limit]


# What a display name in To: may keep: letters and digits of any script, spaces and
# . ' - (O'Brien, Jean-Luc, J. Doe). Everything else (quotes, brackets, commas,
# semicolons …) could make a mail parser read the name as another address.
_DISPLAY_NAME_DROP = re.compile(r"[^\w .'-]+")


# The most of a lead's name an email repeats (greeting, To:): whole words up to this
# length, so a long name cannot fill an email with the signer-up's text.
NAME_IN_EMAIL_MAX = 40


def short_name(name: str) -> str:
    """The first words of a name, at most NAME_IN_EMAIL_MAX characters (a single longer
    word is cut)."""
    words = (name or "").split()
    kept = []
    for word in words:
        if len(" ".join([*kept, word])) > NAME_IN_EMAIL_MAX:
            break
        kept.append(word)
    return " ".join(kept) or (words[0][:NAME_IN_EMAIL_MAX] if words else "")


def recipient(lead: Lead) -> str:
    """The lead as a To: address; its name is display text only, reduced to
    characters that no mail parser can mistake for address syntax."""
    return mime.address(display_name(short_name(lead.name)), lead.email)


def display_name(text: str) -> str:
    """A name fit for an address header (see _DISPLAY_NAME_DROP), at most 64 long."""
    name = " ".join(_DISPLAY_NAME_DROP.sub(" ", header_text(text, 200)).split())[:64]
    return name.strip(" .'-")


def new_message(lead: Lead, subject: str, text: str, html: str, *,
                sender: Address | None = None, extra: list[tuple[str, str]] = (),
                message_id: str | None = None) -> mime.Email:
    """A multipart/alternative message to one lead from `sender` (the configured
    sender when None), with `extra` headers after the standard ones, and
    `message_id` (a new one when None)."""
    config = current_app.config
    sender = sender or config["MAIL_FROM_ADDRESS"]
    headers = [
        ("From", mime.address(sender.display_name, sender.addr_spec)),
        ("To", recipient(lead)),
        ("Subject", header_text(subject, 300)),
        ("Date", _date(datetime.now(UTC).replace(microsecond=0))),
        ("Message-ID", message_id or make_msgid(domain=message_id_domain())),
        *extra,
    ]
    return mime.Email(headers, text, html, sender=config["MAIL_FROM_ADDRESS"].addr_spec,
                      recipient=lead.email)


@lru_cache(maxsize=4)
def _date(moment: datetime) -> str:
    """The Date header of a second (the emails of a tick share a few)."""
    return format_datetime(moment)


def message_id_domain() -> str:
    """The right-hand side of our Message-IDs: the sender's domain, in ASCII."""
    return domains.to_ascii(current_app.config["MAIL_FROM_ADDRESS"].domain or "localhost")


def email_language(sequence, page: Page | None) -> str:
    """The language of an email's built-in words (its footer, and the unsubscribe page
    it links to): the sequence's or broadcast's `language` when it sets one, else the
    language of the page the lead opted in on."""
    return languages.known(getattr(sequence, "language", None)
                           or (page.language if page is not None else None))


def delivery_language(lead: Lead, delivery_id: int | None) -> str:
    """The language of the email `delivery_id` sent to `lead` (`email_language`), for
    the pages its links open; the lead's page's for a token without an email."""
    delivery = db.session.get(Delivery, delivery_id) if delivery_id is not None else None
    origin = None
    if delivery is not None and delivery.lead_id == lead.id:
        if delivery.broadcast_id is not None:
            origin = db.session.get(Broadcast, delivery.broadcast_id)
        elif delivery.sequence:
            origin = Library.current().get(delivery.sequence)
    return email_language(origin, lead.page)


def confirmation_message(lead: Lead, page: Page, confirm_url: str) -> mime.Email:
    """The double opt-in email, in the page's language: one link to confirm, nothing
    else to click."""
    context = {
        "lead": lead,
        "first_name": short_name(lead.first_name),
        "page": page,
        "confirm_url": confirm_url,
        "postal_address": current_app.config["POSTAL_ADDRESS"],
    }
    with languages.speaking(email_language(None, page)):
        subject = gettext("Please confirm your subscription: %(title)s", title=page.title)
        text = render_template("email/confirm.txt", **context)
        html = render_template("email/confirm.html", **context)
    message = new_message(lead, subject, text, html)
    # No delivery row for this email: its bounce names the lead (capture.mail.verp).
    message.sender = verp.envelope_sender(verp.Origin("confirmation", lead.id)) or message.sender
    return message


# Inline styles for the HTML that Markdown produces: many mail clients drop <style>.
_INLINE_STYLES = {
    "p": "margin:0 0 16px;font-size:16px;line-height:1.6;",
    "h1": "margin:0 0 16px;font-size:24px;line-height:1.3;",
    "h2": "margin:24px 0 12px;font-size:20px;line-height:1.3;",
    "h3": "margin:20px 0 10px;font-size:17px;line-height:1.3;",
    "ul": "margin:0 0 16px;padding-left:22px;font-size:16px;line-height:1.6;",
    "ol": "margin:0 0 16px;padding-left:22px;font-size:16px;line-height:1.6;",
    "li": "margin:0 0 6px;",
    "a": "color:#4f46e5;text-decoration:underline;",
    "blockquote": "margin:0 0 16px;padding:4px 16px;border-left:3px solid #d6d8e0;color:#5b6170;",
    "code": "font-family:Menlo,Consolas,monospace;font-size:14px;background:#f1f2f6;"
            "padding:1px 4px;border-radius:4px;",
    "hr": "border:0;border-top:1px solid #e3e5ea;margin:24px 0;",
}
_TAG = re.compile(r"<(" + "|".join(_INLINE_STYLES) + r")(?=[\s>/])")
# An http(s) link of the HTML part, with the tag of a [text](url "tag:NAME") link
# (capture.markup writes it as data-tag, which never reaches the email).
_HREF = re.compile(r'href="(https?://[^"]*)"(?: data-tag="([^"]*)")?')
_DATA_TAG = re.compile(r' data-tag="[^"]*"')
# A URL in the text part ends at white space or at the ) [ ] < > " of Markdown links.
_TEXT_URL = re.compile(r"https?://[^\s()<>\[\]\"]+")
_TRAILING = ".,;:!?'"
_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def _markdown_literal(value: str) -> str:
    """A lead's value made literal inside Markdown: no links, emphasis or HTML."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", " ".join(str(value).split()))


def _variables(lead: Lead, page: Page | None, unsubscribe_url: str, literal) -> dict:
    """What a step template sees: plain values, never the model objects."""
    return {
        "lead": {
            "name": literal(short_name(lead.name)),
            "first_name": literal(short_name(lead.first_name)),
            "email": literal(lead.email),
            "ref": lead.public_ref,
            "country": lead.country or "",
            # The page's own fields, each made literal like the name: a value the lead
            # typed is data, never Markdown, HTML or template code.
            "fields": {str(key): literal(_field_text(value))
                       for key, value in (lead.fields or {}).items()},
        },
        "page": {"title": literal(page.title if page else "")},
        "unsubscribe_url": unsubscribe_url,
    }


def _field_text(value) -> str:
    """A custom field's value as text: a checkbox as yes/no, a list joined by commas."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return "" if value is None else str(value)


class RenderError(Exception):
    """A step could not be rendered for a lead; nothing is sent."""


def render_subject(sequence, step, lead: Lead, page: Page | None, *,
                   unsubscribe_url: str) -> str:
    """The subject of one step for one lead, as it is sent (RenderError if it
    cannot be rendered)."""
    try:
        subject = compiled(step.subject).render(
            _variables(lead, page, unsubscribe_url, lambda value: value))
    except Exception as error:  # the sandbox raises several kinds; none may escape
        raise RenderError(f"{sequence.name}/{step.filename}: {error}") from error
    return header_text(subject, 300)


def render_step(sequence, step, lead: Lead, page: Page | None, *, unsubscribe_url: str,
                track_link=None, pixel_url: str | None = None,
                layouts: email_layouts.Layouts | None = None) -> dict[str, str]:
    """Subject, preheader, text and HTML of one step for one lead; with a subject test
    also `subjects`, each of them rendered (the subject is the step's own). `layouts`:
    those of the lead's chunk (else the layouts are rendered for this email alone).

    `track_link(url, tag=None) -> url` and `pixel_url` are the tracking hooks: every
    http(s) link of the HTML part is passed through `track_link` (with the NAME of a
    link written [text](url "tag:NAME"), else without), the pixel is appended."""
    subject = render_subject(sequence, step, lead, page, unsubscribe_url=unsubscribe_url)
    subjects = [render_subject(sequence, subject_tests.chosen(step, index), lead, page,
                               unsubscribe_url=unsubscribe_url)
                for index in range(len(getattr(step, "subjects", ())))]
    plain = _variables(lead, page, unsubscribe_url, lambda value: value)
    escaped = _variables(lead, page, unsubscribe_url, _markdown_literal)
    try:
        preheader = compiled(step.preheader).render(plain)
        markdown_body = compiled(step.body).render(escaped)
    except Exception as error:  # the sandbox raises several kinds; none may escape
        raise RenderError(f"{sequence.name}/{step.filename}: {error}") from error
    # Both parts come from the one Markdown text, in which the lead's values are
    # literal: the text part shows them as typed, never as links or emphasis.
    html_body, text_body = email_parts(markdown_body)
    content = _TAG.sub(lambda m: f'<{m.group(1)} style="{_INLINE_STYLES[m.group(1)]}"',
                       html_body)
    if track_link is not None:
        tracked: dict[str, str] = {}  # by URL: what the text part links to
        links: dict[tuple[str, str | None], str] = {}  # by URL and tag

        def remember(url: str, tag: str | None = None) -> str:
            if (url, tag) not in links:
                # A tag that is no tag name is reported by `check`; never stored.
                links[(url, tag)] = (track_link(url, tag) if tag and tag_problem(tag) is None
                                     else track_link(url))
            tracked.setdefault(url, links[(url, tag)])
            return links[(url, tag)]

        content = _HREF.sub(lambda m: _tracked_href(m.group(1), m.group(2), remember,
                                                    unsubscribe_url), content)
        # The text part: only URLs the owner wrote (the links of the HTML part, and
        # bare URLs in the step file) are tracked, so a lead who types a URL as their
        # name cannot turn our /c/ links into a redirect to it. A URL of a tagged
        # link is the same tagged link in the text part.
        for url in _urls(step.body):
            if url != unsubscribe_url and "{" not in url and url not in tracked:
                remember(url)
        text_body = _TEXT_URL.sub(lambda m: _tracked_text_url(m.group(0), tracked), text_body)
    content = _DATA_TAG.sub("", content)
    html, text = (layouts or email_layouts).render(
        email_language(sequence, page), page, content=content, text=text_body,
        preheader=header_text(preheader, 200), unsubscribe_url=unsubscribe_url,
        pixel_url=pixel_url)
    return {"subject": subject, "preheader": preheader, "text": text,
            "html": html, "subjects": subjects}


def _urls(text: str) -> list[str]:
    """The http(s) URLs in a text, without trailing sentence punctuation."""
    return [m.group(0).rstrip(_TRAILING) for m in _TEXT_URL.finditer(text)]


def _tracked_text_url(found: str, tracked: dict[str, str]) -> str:
    """A URL of the text part, replaced by its /c/ link when the owner wrote it."""
    url = found.rstrip(_TRAILING)
    return tracked[url] + found[len(url):] if url in tracked else found


def _tracked_href(escaped_url: str, escaped_tag: str | None, track_link,
                  unsubscribe_url: str) -> str:
    """The href attribute for a link: through the tracking hook (with the link's tag),
    except unsubscribe."""
    url = html_lib.unescape(escaped_url)
    if url == unsubscribe_url:
        return f'href="{escaped_url}"'
    tag = html_lib.unescape(escaped_tag) if escaped_tag else None
    return f'href="{html_lib.escape(track_link(url, tag))}"'


def step_message(sequence, step, lead: Lead, page: Page | None, *, delivery_id: int,
                 unsubscribe_url: str, track_link=None, pixel_url=None,
                 layouts: email_layouts.Layouts | None = None) -> mime.Email:
    """The complete email of a sequence step, with the list headers of RFC 2369/8058."""
    config = current_app.config
    rendered = render_step(sequence, step, lead, page, unsubscribe_url=unsubscribe_url,
                           track_link=track_link, pixel_url=pixel_url, layouts=layouts)
    domain = message_id_domain()
    host = urlsplit(config["BASE_URL"]).hostname or "localhost"
    list_name = re.sub(r"[^A-Za-z0-9-]", "-", sequence.name)
    unsubscribe = f"<{unsubscribe_url}>"
    if config.get("UNSUBSCRIBE_MAILTO"):
        unsubscribe += f", <mailto:{config['UNSUBSCRIBE_MAILTO']}?subject=unsubscribe>"
    extra = ([("Reply-To", _formatted(parse_address(sequence.reply_to)))]
             if sequence.reply_to else [])
    extra += [("List-Id", f"{list_name} <{list_name}.{host}>"),
              ("List-Unsubscribe", unsubscribe),
              ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]
    message = new_message(
        lead, rendered["subject"], rendered["text"], rendered["html"],
        sender=parse_address(sequence.sender) if sequence.sender else None, extra=extra,
        message_id=f"<capture.{delivery_id}.{lead.public_ref}@{domain}>")
    message.sender = verp.envelope_sender(verp.Origin("delivery", delivery_id)) or message.sender
    return message


def _formatted(address: Address) -> str:
    return mime.address(address.display_name, address.addr_spec)


@lru_cache(maxsize=64)
def parse_address(value: str) -> Address:
    """`Name <user@domain>` as a header Address, its name made header-safe (cached:
    a sequence's sender is parsed for each of its emails)."""
    name, address = parseaddr(value)
    username, _, domain = address.rpartition("@")
    return Address(display_name(name), username, domain)
