"""The owner's page service: save a page definition, copy a page, publish or take it
offline, and the addresses and button to share it.

Every definition is checked by `capture.pages.definition.validate_page` before it is
stored, so the dashboard and `pages import` accept exactly the same pages.
"""

import html
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from capture.db import db
from capture.models import Page
from capture.pages import variants
from capture.pages.definition import TEXT_LIMITS, apply_page, page_to_dict, validate_page

COPY_SUFFIX = "-copy"


def unique_slug(base: str, taken: set[str]) -> str:
    """`base`, or `base-2`, `base-3`… : the first that is not taken and is a valid slug."""
    for number in range(1, 10_000):
        suffix = "" if number == 1 else f"-{number}"
        candidate = base[: 64 - len(suffix)].rstrip("-") + suffix
        if candidate not in taken:
            return candidate
    raise ValueError(f"no free slug left for {base!r}")


def copy_values(page: Page, taken: set[str]) -> dict[str, Any]:
    """The definition of a copy of `page`: a free `<slug>-copy` slug, "(copy)" in the
    title, and unpublished, so the copy goes live only when the owner says so."""
    data = page_to_dict(page)
    data["fields"] = [dict(field) for field in page.fields]
    data["rules"] = dict(page.rules or {})
    data["allowed_origins"] = list(page.allowed_origins or [])
    data["tags"] = list(page.tags or [])
    data["slug"] = unique_slug(page.slug + COPY_SUFFIX, taken)
    data["title"] = f"{page.title} (copy)"[: TEXT_LIMITS["title"]]
    data["published"] = False
    return data


def save_page(page: Page | None, data: Any, *, sequences_dir: str,
              templates_dir: str) -> tuple[Page | None, list[str]]:
    """Validate `data` and store it: onto `page`, or as a new page when None.

    Returns the stored page and no problems, or the page untouched (None for a new
    one) and every problem; nothing is written when there is one."""
    clean, problems = validate_page(data, sequences_dir=sequences_dir,
                                    templates_dir=templates_dir)
    slug = clean.get("slug")
    if isinstance(slug, str):
        other = db.session.scalar(select(Page.id).where(Page.slug == slug))
        if other is not None and (page is None or other != page.id):
            problems.append("slug: another page uses this address already")
    if problems:
        return page, problems
    target = apply_page(page or Page(), clean)
    db.session.add(target)
    try:
        db.session.commit()
    except IntegrityError:  # the same slug saved by someone else a moment ago
        db.session.rollback()
        return page, ["slug: another page uses this address already"]
    return target, []


def pause_variant(page: Page, key: str, paused: bool, *, sequences_dir: str,
                  templates_dir: str) -> tuple[Page, list[str]]:
    """Pause variant `key` of the page's test (no new visitors get it; those who saw
    it keep it) or run it again. Raises ValueError for a key the page does not have."""
    data = variants.with_paused(page_to_dict(page), key, paused)
    return save_page(page, data, sequences_dir=sequences_dir, templates_dir=templates_dir)


def promote_variant(page: Page, key: str, *, sequences_dir: str,
                    templates_dir: str) -> tuple[Page, list[str]]:
    """Make variant `key` the page ("a": keep the page as it is) and end its test;
    visits and opt-ins keep their variants, so the test's numbers stay. Raises
    ValueError for a key the page does not have."""
    data = variants.promoted(page_to_dict(page), key)
    return save_page(page, data, sequences_dir=sequences_dir, templates_dir=templates_dir)


def copy_page(page: Page) -> Page:
    """Store an unpublished copy of `page` under a free slug and return it."""
    base = (page.slug + COPY_SUFFIX)[:56]
    taken = set(db.session.scalars(select(Page.slug).where(Page.slug.startswith(base))))
    copy = apply_page(Page(), copy_values(page, taken))
    db.session.add(copy)
    db.session.commit()
    return copy


def set_published(page: Page, published: bool) -> None:
    """Make the page live at /p/<slug>, or take it offline (its leads stay)."""
    page.published = published
    db.session.commit()


def share_link(base_url: str, slug: str, params: dict[str, str]) -> str:
    """The public address of a page, with the non-empty tracking parameters added."""
    url = f"{base_url.rstrip('/')}/p/{slug}"
    query = urlencode([(key, value.strip()) for key, value in params.items()
                       if isinstance(value, str) and value.strip()])
    return f"{url}?{query}" if query else url


def embed_snippet(link: str, label: str) -> str:
    """A copy-paste HTML button linking to the page (the form itself, for sites the
    page allows, is `capture.public.render.snippet`)."""
    style = ("display:inline-block;padding:12px 22px;border-radius:8px;background:#4f46e5;"
             "color:#fff;font:600 16px/1.2 sans-serif;text-decoration:none")
    return (f'<a href="{html.escape(link)}" target="_blank" rel="noopener" '
            f'style="{style}">{html.escape(label)}</a>')
