"""The one source of "now", so tests can move time instead of sleeping."""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

# Set by `as_of`: the moment that work done later stands for.
_AS_OF: ContextVar[datetime | None] = ContextVar("capture_as_of", default=None)


def utcnow() -> datetime:
    """The current time in UTC as a naive datetime (how every timestamp is stored),
    or the moment `as_of` stands for."""
    moment = _AS_OF.get()
    return moment if moment is not None else datetime.now(UTC).replace(tzinfo=None)


@contextmanager
def as_of(moment: datetime) -> Iterator[None]:
    """Within the block, "now" is `moment` (in this thread): what the intake's
    processor stores for a sign-up is dated when the visitor signed up."""
    token = _AS_OF.set(moment)
    try:
        yield
    finally:
        _AS_OF.reset(token)
