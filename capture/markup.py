"""Owner-written Markdown (page body, thank-you text) to safe HTML."""

import re
from functools import lru_cache

from markdown_it import MarkdownIt
from markupsafe import Markup

# Raw HTML in the Markdown is shown as text, and markdown-it refuses javascript: and
# data: links, so nothing the owner pastes can run script on a visitor's page.
_markdown = MarkdownIt("commonmark", {"html": False, "typographer": True})


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
def email_markdown(text: str) -> str:
    """The HTML of a step's Markdown body (already rendered with the lead's values).
    Cached: the same step rendered for another lead with the same values (the same
    first name, or none) is the same text, and Markdown costs more than the rest of
    the email."""
    return _markdown.render(text)
