"""The links inside an email: the open pixel's URL and each owner-written link, stored
as a /c/ token when the email is rendered (`capture.leads.engagement` records what a
lead then does with them)."""

import secrets
from collections.abc import Callable

from flask import current_app
from sqlalchemy import insert, select

from capture import links
from capture.db import db
from capture.models import Link


def pixel_url(delivery_id: int) -> str:
    """The open pixel's URL for one email."""
    return f"{current_app.config['BASE_URL']}/o/{links.make('open', str(delivery_id))}"


def link_tracker(delivery_id: int, *, new: bool = False,
                 into: list[dict] | None = None) -> Callable[[str], str]:
    """The rendering hook: store each link target of an email, return its /c/ URL.

    The same target with the same tag in the same email (a retry renders it again)
    keeps one token; a tagged link (`tag`: the NAME of [text](url "tag:NAME")) stores
    its tag, which a person's click gives the lead (`capture.leads.engagement`);
    a `new` delivery has no links yet. With `into`, new links are appended there as
    rows for `insert_links` (a batch of emails stores its links in one statement)
    instead of being added to the session."""
    base = current_app.config["BASE_URL"]
    existing = {} if new else {
        (link.url, link.tag): link.token
        for link in db.session.scalars(select(Link).where(Link.delivery_id == delivery_id))
    }

    def track(url: str, tag: str | None = None) -> str:
        token = existing.get((url[:2000], tag))
        if token is None:
            token = secrets.token_urlsafe(16)
            row = {"token": token, "delivery_id": delivery_id, "url": url[:2000], "tag": tag}
            if into is None:
                db.session.add(Link(**row))
            else:
                into.append(row)
            existing[(url[:2000], tag)] = token
        return f"{base}/c/{token}"

    return track


def insert_links(rows: list[dict]) -> None:
    """Store the links `link_tracker(..., into=rows)` collected (the caller commits)."""
    if rows:
        db.session.connection().execute(insert(Link.__table__), rows)
