"""The one source of "now", so tests can move time instead of sleeping."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time in UTC as a naive datetime (how every timestamp is stored)."""
    return datetime.now(UTC).replace(tzinfo=None)
