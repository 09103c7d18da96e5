"""Tags on leads: adding and removing them in sets, with a `tag` / `untag` event each.

One function behind every door (a page's opt-in, a tagged link's human click, the
CSV import, the dashboard, the API): `add_tags` and `remove_tags` take lead ids and
names and work in a few statements per chunk of leads, never an ORM object per lead,
so tagging 10,000 leads from the dashboard is a handful of INSERTs. Both are
idempotent: a tag a lead already has (or lacks) changes nothing and logs nothing.
Callers commit.
"""

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from capture import clock
from capture.db import db
from capture.mail import condition_checks, membership
from capture.models import Lead, LeadTag
from capture.tag_names import tag_problem
from capture.timeline import event_row, insert_events

# Lead ids per statement: far below SQLite's and PostgreSQL's bound-parameter limits,
# and large enough that a bulk action on 10,000 leads is a few statements.
CHUNK = 2000
# What a cause may say (models.LeadTag.cause is 80 characters).
CAUSE_LENGTH = 80


class TagError(ValueError):
    """A tag name that is not one (the message says why, in one line)."""


def check_names(names: Iterable[object]) -> list[str]:
    """The names as a list without repeats, in order; TagError for the first bad one.
    One name given as a string is one name, not its letters."""
    if isinstance(names, str):
        names = [names]
    checked: list[str] = []
    for name in names:
        problem = tag_problem(name)
        if problem is not None:
            raise TagError(problem)
        if name not in checked:
            checked.append(name)  # type: ignore[arg-type]
    return checked


def _insert_ignoring_duplicates(connection):
    """INSERT … ON CONFLICT DO NOTHING for lead_tags, in the connection's dialect: two
    doors tagging the same lead at the same moment add the tag once."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(LeadTag.__table__).on_conflict_do_nothing(
        index_elements=["lead_id", "tag"])


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start:start + CHUNK]


def _unique_ids(lead_ids: Iterable[int]) -> list[int]:
    return sorted({int(lead_id) for lead_id in lead_ids})


def add_tags(lead_ids: Iterable[int], names: Iterable[str], cause: str, *,
             now: datetime | None = None, connection=None) -> int:
    """Give each lead each tag it does not have yet, with `cause` ("page:<slug>",
    "link", "import", "dashboard", "api") and time; a `tag` event per tag added, and
    the sequences whose `tag` trigger names it started.

    A sequence whose `stop_on` names a tag added stops for that lead at once.
    Returns how many (lead, tag) pairs were added. Unknown lead ids are skipped. On
    `connection` (the click handler's own), else the session's; the caller commits."""
    names = check_names(names)
    ids = _unique_ids(lead_ids)
    if not names or not ids:
        return 0
    connection = connection or db.session.connection()
    now = now or clock.utcnow()
    cause = cause[:CAUSE_LENGTH]
    statement = _insert_ignoring_duplicates(connection).returning(
        LeadTag.__table__.c.lead_id, LeadTag.__table__.c.tag)
    added = 0
    for chunk in _chunks(ids):
        pages = dict(connection.execute(
            select(Lead.id, Lead.page_id).where(Lead.id.in_(chunk))).all())
        have = set(connection.execute(
            select(LeadTag.lead_id, LeadTag.tag)
            .where(LeadTag.lead_id.in_(list(pages)), LeadTag.tag.in_(names))).all())
        rows = [{"lead_id": lead_id, "tag": name, "cause": cause, "created_at": now}
                for lead_id in pages for name in names if (lead_id, name) not in have]
        if not rows:
            continue
        # RETURNING says which rows this call inserted: a row a parallel call wrote
        # first is not returned, so its event is not logged twice.
        inserted = connection.execute(statement, rows).all()
        events = [event_row(lead_id, pages[lead_id], "tag", tag=name, cause=cause)
                  for lead_id, name in inserted]
        for event in events:
            event["created_at"] = now
        insert_events(events, connection)
        condition_checks.stop_tagged(inserted, connection)
        added += len(inserted)
        # A tag may start a sequence (`start_on: [{tag: NAME}]`), whatever gave it.
        membership.on_tags(inserted, connection)
    return added


def remove_tags(lead_ids: Iterable[int], names: Iterable[str], cause: str, *,
                connection=None) -> int:
    """Take the tags off the leads that have them; an `untag` event for each removed.
    Returns how many (lead, tag) pairs were removed; the caller commits."""
    names = check_names(names)
    ids = _unique_ids(lead_ids)
    if not names or not ids:
        return 0
    connection = connection or db.session.connection()
    cause = cause[:CAUSE_LENGTH]
    removed = 0
    for chunk in _chunks(ids):
        gone = connection.execute(
            delete(LeadTag.__table__)
            .where(LeadTag.__table__.c.lead_id.in_(chunk),
                   LeadTag.__table__.c.tag.in_(names))
            .returning(LeadTag.__table__.c.lead_id, LeadTag.__table__.c.tag)).all()
        if not gone:
            continue
        pages = dict(connection.execute(
            select(Lead.id, Lead.page_id).where(Lead.id.in_({row[0] for row in gone}))).all())
        insert_events([event_row(lead_id, pages.get(lead_id), "untag", tag=name, cause=cause)
                       for lead_id, name in gone], connection)
        removed += len(gone)
    return removed


def tags_of(lead_ids: Iterable[int]) -> dict[int, list[str]]:
    """Each lead's tag names, sorted (every given id is a key, [] when it has none)."""
    ids = _unique_ids(lead_ids)
    found: dict[int, list[str]] = {lead_id: [] for lead_id in ids}
    connection = db.session.connection()
    for chunk in _chunks(ids):
        for lead_id, name in connection.execute(
                select(LeadTag.lead_id, LeadTag.tag).where(LeadTag.lead_id.in_(chunk))
                .order_by(LeadTag.lead_id, LeadTag.tag)):
            found[lead_id].append(name)
    return found


def tag_rows(lead_id: int) -> list[LeadTag]:
    """One lead's tags with their cause and time, newest first (the lead page)."""
    return list(db.session.scalars(
        select(LeadTag).where(LeadTag.lead_id == lead_id)
        .order_by(LeadTag.created_at.desc(), LeadTag.tag)))

