"""Dashboard owners: creating one, the password rules, checking and changing a
password (used by the log-in and account views and by the `owner` commands)."""

import functools

from sqlalchemy import select
from werkzeug import security

from capture.db import db
from capture.models import Owner, new_session_token

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 200  # what the log-in form accepts


def create_owner(email: str, password: str) -> Owner:
    """Add a dashboard login; ValueError with a clear message when it cannot be."""
    email = email.strip().lower()
    if "@" not in email or len(email) > 254:
        raise ValueError(f"{email!r} is not an email address")
    password_hash = hash_password(password)
    if db.session.scalar(select(Owner.id).where(Owner.email == email)):
        raise ValueError(f"an owner {email} exists already")
    owner = Owner(email=email, password_hash=password_hash)
    db.session.add(owner)
    db.session.commit()
    return owner


def hash_password(password: str) -> str:
    """The stored hash of a new password; ValueError when it is too short or too long."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"the password may have at most {MAX_PASSWORD_LENGTH} characters")
    return security.generate_password_hash(password)


@functools.cache
def _unknown_owner_hash() -> str:
    """A hash made the way owners' hashes are (same method, same cost), checked when
    no owner has the address typed: both answers then take the same time, so the
    log-in does not tell which addresses are owners."""
    return security.generate_password_hash("no owner has this address")


def password_matches(owner: Owner | None, password: str) -> bool:
    """True when `owner` exists and `password` is theirs; one hash check either way."""
    if owner is None:
        security.check_password_hash(_unknown_owner_hash(), password)
        return False
    return security.check_password_hash(owner.password_hash, password)


def set_password(owner: Owner, password: str) -> None:
    """Give the owner a new password and end every session of theirs (a new session
    token); ValueError with a clear message when the password cannot be used."""
    owner.password_hash = hash_password(password)
    owner.session_token = new_session_token()
    db.session.commit()
