"""The email layouts (templates/email/layout.html and .txt) put around a step's
content: rendered for each email, or once per chunk with slots for each email's own
values."""

import logging
import re
import secrets

from flask import current_app
from markupsafe import Markup, escape

from capture import languages

log = logging.getLogger(__name__)

# What the layouts see of one email, besides its page and language. The layouts
# print these and test them for being empty, nothing else (see `Layouts`).
SLOTS = ("content", "preheader", "unsubscribe_url", "pixel_url")
# A slot's mark in a skeleton: letters and digits only, so that autoescaping keeps it
# as it is; random per process, so that no layout text or page title holds one.
_MARK = "capture" + secrets.token_hex(12)
_MARKS = re.compile(f"{_MARK}({'|'.join(SLOTS)}){_MARK}")


def render(language: str, page, *, content: str, text: str, preheader: str,
           unsubscribe_url: str, pixel_url: str | None) -> tuple[str, str]:
    """The HTML and text of one email: `content` (the step's HTML, trusted) and
    `text` (its text part) in the layouts, which see only these values (no request or
    session), rendered from the app's template environment, the HTML autoescaped."""
    templates = current_app.jinja_env
    postal_address = current_app.config["POSTAL_ADDRESS"]
    with languages.speaking(language):
        html = templates.get_template("email/layout.html").render(
            content=Markup(content), preheader=preheader, postal_address=postal_address,
            unsubscribe_url=unsubscribe_url, pixel_url=pixel_url, page=page,
        )
        text = templates.get_template("email/layout.txt").render(
            content=text, postal_address=postal_address, unsubscribe_url=unsubscribe_url,
        )
    return html, text


class Layouts:
    """The layouts for the emails of one chunk: rendered once per page, language and
    shape (which values are empty) with a mark in place of each value, then split at
    the marks; an email is its values put between the parts, escaped for the HTML as
    Jinja's autoescaping does. Two of an email's five renders, with their gettext
    calls, become a join. Nothing of a lead ever goes through the template, and a
    value put in is never read again, whatever it holds.

    A skeleton is used only once its first email, made from it, is the same as the
    same email rendered directly; else that page and language are rendered directly
    (a layout that filters or cuts a value)."""

    def __init__(self) -> None:
        self._skeletons: dict[tuple, tuple[list[str], list[str]] | None] = {}

    def render(self, language: str, page, *, content: str, text: str, preheader: str,
               unsubscribe_url: str, pixel_url: str | None) -> tuple[str, str]:
        """What `render` returns for these values."""
        values = {"content": content, "preheader": preheader,
                  "unsubscribe_url": unsubscribe_url, "pixel_url": pixel_url}
        # The page object itself (a chunk's leads share their few pages; a layout may
        # read any of its fields), and each empty value as it is ("" or None).
        key = (language, page, current_app.config["POSTAL_ADDRESS"], _shape(text),
               *(_shape(values[name]) for name in SLOTS))
        if key not in self._skeletons:
            direct = render(language, page, text=text, **values)
            skeleton = _skeleton(language, page, values, text)
            self._skeletons[key] = skeleton if _fill(skeleton, values, text) == direct else None
            if self._skeletons[key] is None:
                log.warning("the email layouts change a value they print: rendered per email")
            return direct
        skeleton = self._skeletons[key]
        if skeleton is None:
            return render(language, page, text=text, **values)
        return _fill(skeleton, values, text)


def _shape(value):
    """A value as a skeleton sees it: any text alike, an empty one as it is."""
    return True if value else value


def _skeleton(language: str, page, values: dict, text: str) -> tuple[list[str], list[str]]:
    """The layouts rendered with a mark for each value that is not empty, split at the
    marks: text, slot name, text, … ."""
    marked = {name: f"{_MARK}{name}{_MARK}" if values[name] else values[name]
              for name in SLOTS}
    html, plain = render(language, page, text=f"{_MARK}content{_MARK}" if text else text,
                         **marked)
    return _MARKS.split(html), _MARKS.split(plain)


def _fill(skeleton: tuple[list[str], list[str]], values: dict, text: str) -> tuple[str, str]:
    """The skeleton's parts with each slot's value: escaped in the HTML (the content
    is HTML already), as it is in the text, whose content is `text`."""
    html_parts, text_parts = skeleton
    html = [part if index % 2 == 0
            else values[part] if part == "content" else str(escape(values[part]))
            for index, part in enumerate(html_parts)]
    plain = [part if index % 2 == 0 else text if part == "content" else values[part]
             for index, part in enumerate(text_parts)]
    return "".join(html), "".join(plain)
