"""Owner-written Markdown (page body, thank-you text, email steps) to safe HTML, and
email steps to clean plain text."""

import re
from functools import lru_cache

from markdown_it import MarkdownIt
from markupsafe import Markup

from capture.tag_names import tag_problem

# Raw HTML in the Markdown is shown as text, and markdown-it refuses javascript: and
# data: links, so nothing the owner pastes can run script on a visitor's page.
_markdown = MarkdownIt("commonmark", {"html": False, "typographer": True})
# Emails keep the line breaks the owner typed inside a paragraph ("Talk soon,⏎The
# team" stays two lines), as in the text part.
_email = MarkdownIt("commonmark", {"html": False, "typographer": True, "breaks": True})


@lru_cache(maxsize=256)
def render_markdown(text: str) -> Markup:
    """The HTML of a Markdown text (cached: page texts change rarely)."""
    return Markup(_markdown.render(text or ""))


_LEADING_HEADING = re.compile(r"\A\s*<h([1-6])>(.*?)</h\1>", re.DOTALL)


def under_heading(html: Markup) -> Markup:
    """Rendered text shown below a page's own heading: a heading it starts with becomes
    a lead paragraph, so the page has one heading, not two stacked."""
    return Markup(_LEADING_HEADING.sub(r'<p class="lead">\2</p>', str(html), count=1))


@lru_cache(maxsize=1024)
def email_parts(text: str) -> tuple[str, str]:
    """The HTML and the plain text of a step's Markdown body (already rendered with
    the lead's values), from one parse. Cached: the same step rendered for another
    lead with the same values (the same first name, or none) is the same text, and
    Markdown costs more than the rest of the email.

    The plain text drops emphasis markers, shows links as "label (URL)", headings as
    plain lines, list items after "- " or "1. ", quotes after "> " and code as
    written; what the Markdown escapes (a lead's values) stays literal text."""
    tokens = _email.parse(text)
    _consume_link_tags(tokens)
    html = _email.renderer.render(tokens, _email.options, {})
    writer = _PlainText()
    for token in tokens:
        writer.feed(token)
    return html, "\n".join(writer.lines).strip("\n") + "\n"


# A link written [text](url "tag:NAME"): its title is not a title but the tag a click
# on it gives the lead; it is never shown.
_TAG_TITLE = "tag:"


def _consume_link_tags(tokens) -> None:
    """Turn each `tag:NAME` link title into a `data-tag="NAME"` attribute right after
    the href, which `capture.mail.compose` hands to the link tracker and removes."""
    for token in tokens:
        for child in token.children or []:
            title = child.attrGet("title") if child.type == "link_open" else None
            if isinstance(title, str) and title.startswith(_TAG_TITLE):
                del child.attrs["title"]
                child.attrSet("data-tag", title[len(_TAG_TITLE):].strip())


def link_tags(text: str) -> list[tuple[int, str]]:
    """Every `[text](url "tag:NAME")` of a Markdown text as (line, NAME), the line
    1-based within the text (a link split over lines: where its tag is written)."""
    found: list[tuple[int, str]] = []
    for token in _email.parse(text or ""):
        if token.type != "inline" or not token.children:
            continue
        cursor = 0
        for child in token.children:
            title = child.attrGet("title") if child.type == "link_open" else None
            if not (isinstance(title, str) and title.startswith(_TAG_TITLE)):
                continue
            name = title[len(_TAG_TITLE):].strip()
            at = token.content.find(title, cursor)
            cursor = max(at, cursor)
            offset = token.content.count("\n", 0, at) if at >= 0 else 0
            found.append(((token.map[0] if token.map else 0) + 1 + offset, name))
    return found


def link_tag_problems(text: str) -> list[tuple[int, str]]:
    """(line, message) for each link tag in a Markdown text that is no tag name, for
    the `check` commands of sequences and broadcasts to report as file:line."""
    return [(line, f"link tag: {problem}") for line, name in link_tags(text)
            if (problem := tag_problem(name)) is not None]


class _PlainText:
    """Writes markdown-it block tokens as lines of plain text."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.quote = ""  # "> " for each open blockquote
        self.numbers: list[int | None] = []  # per open list: the next number, None: bullets
        self.markers: list[str] = []  # per open list item: its "- " or "2. "
        self.first = False  # the open list item has not written its first line
        self.tight = False  # the paragraph is an item of a tight list: no blank line
        self.gap = False  # a blank line before the next block even so

    def feed(self, token) -> None:
        kind = token.type
        if kind in ("bullet_list_open", "ordered_list_open"):
            if not self.markers:
                self.gap = True  # a list stands apart from the text around it
            self.numbers.append(int(token.attrGet("start") or 1)
                                if kind == "ordered_list_open" else None)
        elif kind in ("bullet_list_close", "ordered_list_close"):
            self.numbers.pop()
        elif kind == "list_item_open":
            number = self.numbers[-1]
            self.markers.append("- " if number is None else f"{number}. ")
            if number is not None:
                self.numbers[-1] = number + 1
            self.first = True
        elif kind == "list_item_close":
            self.markers.pop()
            self.first = False
        elif kind == "blockquote_open":
            self.quote += "> "
        elif kind == "blockquote_close":
            self.quote = self.quote[:-2]
        elif kind == "paragraph_open":
            self.tight = token.hidden
        elif kind == "inline":
            self.write(_inline_text(token.children or []))
        elif kind in ("fence", "code_block"):
            self.write(token.content.rstrip("\n"))
        elif kind == "hr":
            self.write("----")

    def write(self, text: str) -> None:
        """One block: a blank line before it (none between tight list items)."""
        separate = self.gap or not (self.tight and self.markers)
        if self.lines and self.lines[-1].strip(" >") and separate:
            inside = self.quote and self.lines[-1].startswith(self.quote)
            self.lines.append(self.quote.rstrip() if inside else "")
        self.gap = False
        hang = " " * sum(len(marker) for marker in self.markers)
        for index, line in enumerate(text.split("\n")):
            if index == 0 and self.first:
                lead_in = " " * sum(len(marker) for marker in self.markers[:-1])
                start = self.quote + lead_in + self.markers[-1]
                self.first = False
            else:
                start = self.quote + hang
            self.lines.append((start + line).rstrip())


def _inline_text(children) -> str:
    """The words of a paragraph or heading: markers dropped, links as "label (URL)"."""
    parts: list[str] = []
    links: list[tuple[str, int]] = []
    for token in children:
        kind = token.type
        if kind in ("text", "code_inline"):
            parts.append(token.content)
        elif kind in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif kind == "link_open":
            links.append((str(token.attrGet("href") or ""), len(parts)))
        elif kind == "link_close" and links:
            href, start = links.pop()
            label = "".join(parts[start:]).strip()
            if href and href not in (label, f"mailto:{label}"):
                parts.append(f" ({href})")
        elif kind == "image":
            source = str(token.attrGet("src") or "")
            parts.append(f"{token.content} ({source})" if token.content else source)
    return "".join(parts)
