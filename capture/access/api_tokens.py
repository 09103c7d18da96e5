"""API tokens: created, listed, revoked and checked. Only a token's SHA-256 is stored,
so the database (or a backup of it) never holds a token that works; the token itself
is shown once, when it is created."""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select, update

from capture import clock
from capture.db import db
from capture.models import ApiToken

# Tells a Capture token apart in code, logs and secret scanners.
TOKEN_PREFIX = "cap_"
# Characters of the token kept in the clear to tell tokens apart in lists.
SHOWN_PREFIX_LENGTH = 12
NAME_MAX_LENGTH = 100
# last_used_at is written at most this often per token: a busy integration does not
# turn every read into a write.
TOUCH_INTERVAL = timedelta(minutes=1)


@dataclass
class NewToken:
    """A token just created: the row, and the token itself (never stored)."""

    row: ApiToken
    token: str


def hash_token(token: str) -> str:
    """The stored form of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def clean_name(name: str) -> str:
    """The name as stored; ValueError with a message fit to show when it is unusable."""
    name = " ".join("".join(ch if ch.isprintable() else " " for ch in name or "").split())
    if not name:
        raise ValueError("Give the token a name (what uses it, e.g. “store”).")
    if len(name) > NAME_MAX_LENGTH:
        raise ValueError(f"The name is longer than {NAME_MAX_LENGTH} characters.")
    return name


def create(name: str) -> NewToken:
    """Create a token named `name`. The returned token is the only copy.

    Raises ValueError when the name is empty or too long."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=clean_name(name), token_hash=hash_token(token),
                   prefix=token[:SHOWN_PREFIX_LENGTH], created_at=clock.utcnow())
    db.session.add(row)
    db.session.commit()
    return NewToken(row, token)


def all_tokens() -> list[ApiToken]:
    """Every token, active ones first, newest first."""
    return list(db.session.scalars(
        select(ApiToken).order_by(ApiToken.revoked_at.is_not(None), ApiToken.id.desc())))


def revoke(token_id: int) -> ApiToken | None:
    """Revoke a token for good (idempotent); None when there is no such token."""
    row = db.session.get(ApiToken, token_id)
    if row is None:
        return None
    if row.revoked_at is None:
        row.revoked_at = clock.utcnow()
        db.session.commit()
    return row


def authenticate(token: str) -> tuple[ApiToken | None, str]:
    """The active token row for a presented token, or None and why not ("unknown",
    "revoked"). The lookup is by hash, so no comparison leaks timing about a token."""
    if not token or len(token) > 200:
        return None, "unknown"
    row = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None:
        return None, "unknown"
    if row.revoked_at is not None:
        return None, "revoked"
    _touch(row)
    return row, ""


def _touch(row: ApiToken) -> None:
    """Record the use, at most once per TOUCH_INTERVAL (one guarded UPDATE, so
    parallel requests write once)."""
    now = clock.utcnow()
    if row.last_used_at is not None and now - row.last_used_at < TOUCH_INTERVAL:
        return
    db.session.execute(
        update(ApiToken)
        .where(ApiToken.id == row.id,
               or_(ApiToken.last_used_at.is_(None),
                   ApiToken.last_used_at <= now - TOUCH_INTERVAL))
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
