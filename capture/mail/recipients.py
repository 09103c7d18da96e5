"""The leads a sending tick writes to, read as plain rows: what an email and the stop
checks need of a lead, without the ORM's objects."""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from capture.db import db
from capture.models import Lead, Page, first_word

_LEADS = Lead.__table__


@dataclass(slots=True, eq=False)
class Recipient:
    """A lead as sending reads it (loaded with a chunk, never written back): the values
    an email is rendered from and the ones `membership.should_stop` checks."""

    id: int
    email: str
    name: str
    country: str | None
    fields: dict[str, Any] | None
    public_ref: str
    page_id: int | None
    subscription: str
    review: str
    page: Page | None = None

    @property
    def first_name(self) -> str:
        """The first word of the name, for greetings (as `Lead.first_name`)."""
        return first_word(self.name)


_COLUMNS = (_LEADS.c.id, _LEADS.c.email, _LEADS.c.name, _LEADS.c.country, _LEADS.c.fields,
            _LEADS.c.public_ref, _LEADS.c.page_id, _LEADS.c.subscription, _LEADS.c.review)


def load(lead_ids: Iterable[int]) -> dict[int, Recipient]:
    """The leads by id, each with its page (one query for the leads, one for their few
    pages): loading a chunk as ORM objects, the page joined to each lead, took a
    sixth of the tick."""
    rows = db.session.execute(select(*_COLUMNS).where(_LEADS.c.id.in_(set(lead_ids)))).all()
    page_ids = {row.page_id for row in rows if row.page_id is not None}
    pages = ({page.id: page for page in db.session.scalars(
        select(Page).where(Page.id.in_(page_ids)))} if page_ids else {})
    return {row.id: Recipient(*row, page=pages.get(row.page_id)) for row in rows}
