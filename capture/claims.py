"""Taking queued rows for one process, safely beside other schedulers.

The scheduler's queues (due enrollments, retries, webhook deliveries) are tables with
a state column; any number of scheduler processes may run, and each row must be
worked on by one of them only. One claimed row's unexpected error fails that row
alone, with `unexpected(error)` as its reason: it never stops the rest."""

from sqlalchemy import update

from capture.db import db


def claim(model, ids_query, state_column, from_state: str, values: dict) -> list[int]:
    """Take the rows `ids_query` selects (ids of `model`), in its order: rows another
    process has locked are skipped on PostgreSQL (the lock is on `model`'s rows only,
    even when the query joins other tables), and the conditional update makes a row
    ours only if it is still in `from_state`. Commits; returns the ids taken."""
    candidates = db.session.scalars(
        ids_query.with_for_update(skip_locked=True, of=model)
    ).all()
    if not candidates:
        db.session.commit()
        return []
    claimed = db.session.scalars(
        update(model)
        .where(model.id.in_(candidates), state_column == from_state)
        .values(**values)
        .returning(model.id)
    ).all()
    db.session.commit()
    return sorted(claimed, key=candidates.index)


def unexpected(error: Exception) -> str:
    """The reason a claimed row failed with an unexpected error: its class and message."""
    return f"{type(error).__name__}: {error}"
