"""The suppression list: addresses that must not be re-added or mailed. Every check of
it goes through here.

A row holds the address itself (a hard bounce, a lead deleted before erasure existed)
or, for an erased person, only a keyed hash of it (`email_hash`): HMAC-SHA256 of the
stored form of the address, keyed by a key derived from SECRET_KEY. Addresses given
here are stored forms (what `Lead.email` holds). Below leads/, mail/ and segments/,
which all check the list. The list can then
say "this address was erased" when the address is typed again, yet nobody reading the
database can tell which addresses it holds (an unkeyed hash of an address is reversed
by hashing a list of addresses).
"""

import hashlib
import hmac
from collections.abc import Iterable

from flask import current_app
from sqlalchemy import ColumnElement, bindparam, exists, or_, select
from sqlalchemy.orm import aliased

from capture.db import db
from capture.models import Lead, Suppression

# The derived key's purpose: the secret key also signs sessions and links.
_KEY_PURPOSE = b"capture suppression hash v1"


def _keys() -> list[bytes]:
    """The hash keys: of SECRET_KEY, then of its fallbacks, so that an erased address
    still matches after the secret key is rotated (the old key kept as a fallback)."""
    secrets = [current_app.config["SECRET_KEY"],
               *(current_app.config.get("SECRET_KEY_FALLBACKS") or ())]
    return [hmac.new(secret.encode() if isinstance(secret, str) else secret,
                     _KEY_PURPOSE, hashlib.sha256).digest() for secret in secrets]


def address_hash(email: str, key: bytes | None = None) -> str:
    """The keyed hash of an address (its stored form, as leads hold it: see
    `capture.leads.addresses.stored_form`) as the list keeps it for an erased person:
    hex HMAC-SHA256 under the current key (or `key`)."""
    return hmac.new(key or _keys()[0], email.encode(), hashlib.sha256).hexdigest()


def _hashes(email: str) -> list[str]:
    """The address's hash under every key it may have been stored with."""
    return [address_hash(email, key) for key in _keys()]


def matching(email: str) -> ColumnElement[bool]:
    """A condition over Suppression: the row is about this address (as such or hashed)."""
    return or_(Suppression.email == email, Suppression.email_hash.in_(_hashes(email)))


# For the prebuilt statements of the hot paths (the opt-in): bind with `bound_values`.
MATCHING_BOUND = or_(Suppression.email == bindparam("email"),
                     Suppression.email_hash.in_(bindparam("email_hashes", expanding=True)))


def bound_values(email: str) -> dict:
    """The parameters of MATCHING_BOUND for an address."""
    return {"email": email, "email_hashes": _hashes(email)}


def is_suppressed(email: str) -> bool:
    """Whether mail to this address (stored form) is refused and a sign-up ignored."""
    return db.session.scalar(select(Suppression.id).where(matching(email)).limit(1)) is not None


def suppressed_among(emails: Iterable[str]) -> set[str]:
    """The addresses of `emails` (stored forms) that are suppressed, in two lookups
    however many there are."""
    emails = set(emails)
    if not emails:
        return set()
    found = set(db.session.scalars(select(Suppression.email).where(
        Suppression.email.in_(emails))))
    hashes = {digest: email for email in emails for digest in _hashes(email)}
    found.update(hashes[digest] for digest in db.session.scalars(
        select(Suppression.email_hash).where(Suppression.email_hash.in_(hashes))))
    return found


def lead_not_suppressed() -> ColumnElement[bool]:
    """A condition over Lead for queries that check many leads in SQL: its address is
    not on the list. Only plain rows are compared: a hashed row belongs to an erased
    person, whose address no lead carries (erasure replaces it, and every door that
    adds a lead asks `is_suppressed` first)."""
    return ~exists().where(Suppression.email == Lead.email)


def suppressed_lead_ids():
    """SELECT the ids of the leads whose address is on the list (see
    `lead_not_suppressed`), over an alias of leads: usable inside a query of leads."""
    suppressed = aliased(Lead)
    return select(suppressed.id).join(Suppression, Suppression.email == suppressed.email)


def suppress(email: str, reason: str) -> None:
    """Put an address on the list as such (a hard bounce), unless it is there already
    (added to the session; committed by the caller)."""
    if not is_suppressed(email):
        db.session.add(Suppression(email=email, reason=reason[:200]))


def suppress_erased(email: str, reason: str = "erased") -> None:
    """Keep an erased person's address on the list as its keyed hash only: a row that
    holds the address itself becomes a hashed one."""
    digest = address_hash(email)
    rows = db.session.scalars(select(Suppression).where(matching(email))).all()
    hashed = [row for row in rows if row.email_hash is not None]
    plain = [row for row in rows if row.email_hash is None]
    if not hashed and plain:
        kept = plain.pop(0)
        # The old reason may quote the address (a bounce's SMTP answer).
        kept.email, kept.email_hash, kept.reason = None, digest, reason
    elif not hashed:
        db.session.add(Suppression(email=None, email_hash=digest, reason=reason))
    for row in plain:
        db.session.delete(row)
