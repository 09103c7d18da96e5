"""VERP envelope senders: `bounces+<token>@domain`, one per email, signed.

The token names what the email was: a delivery (`d<id>`) or a lead's confirmation
email, which has no delivery row (`c<lead id>`). It is that name in lowercase base32
followed by 10 characters of an HMAC-SHA256 under a key derived from SECRET_KEY, so a
forged bounce (anyone can send mail to the bounce address) names nobody: without the
key no token for another delivery can be made. Lowercase, because mail servers may
lowercase the local part; short, because a local part holds 64 characters at most.
"""

import base64
import hashlib
import hmac
from typing import NamedTuple

from flask import current_app

_KEY_PURPOSE = b"capture verp v1"
_MAC_LENGTH = 10  # base32 characters: 50 bits, far beyond guessing by mail
_KINDS = {"d": "delivery", "c": "confirmation"}


class Origin(NamedTuple):
    """What a bounce is about: `kind` "delivery" (id: the delivery's) or
    "confirmation" (id: the lead's)."""

    kind: str
    id: int


def _keys() -> list[bytes]:
    """The MAC keys: of SECRET_KEY, then of its fallbacks (a bounce of an email sent
    before a key rotation still maps back)."""
    secrets = [current_app.config["SECRET_KEY"],
               *(current_app.config.get("SECRET_KEY_FALLBACKS") or ())]
    return [hmac.new(secret.encode() if isinstance(secret, str) else secret,
                     _KEY_PURPOSE, hashlib.sha256).digest() for secret in secrets]


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _mac(key: bytes, name: str) -> str:
    return _b32(hmac.new(key, name.encode("ascii"), hashlib.sha256).digest())[:_MAC_LENGTH]


def make_token(origin: Origin) -> str:
    """The signed token for a delivery or a confirmation email."""
    prefix = next(letter for letter, kind in _KINDS.items() if kind == origin.kind)
    name = f"{prefix}{int(origin.id)}"
    return f"{_b32(name.encode('ascii'))}{_mac(_keys()[0], name)}"


def read_token(token: str) -> Origin | None:
    """The delivery or confirmation a genuine token names; None for anything else."""
    token = (token or "").strip().lower()
    if len(token) <= _MAC_LENGTH or len(token) > 60:
        return None
    encoded, mac = token[:-_MAC_LENGTH], token[-_MAC_LENGTH:]
    try:
        name = base64.b32decode(encoded.upper() + "=" * (-len(encoded) % 8)).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        return None
    if not any(hmac.compare_digest(_mac(key, name), mac) for key in _keys()):
        return None
    if name[:1] not in _KINDS or not name[1:].isdigit():
        return None
    return Origin(_KINDS[name[0]], int(name[1:]))


def envelope_sender(origin: Origin) -> str | None:
    """`bounces+<token>@domain` for this email, or None when CAPTURE_BOUNCE_ADDRESS
    is not set (the envelope sender is then the From address, as before)."""
    base = current_app.config.get("BOUNCE_ADDRESS") or ""
    if "@" not in base:
        return None
    local, _, domain = base.rpartition("@")
    return f"{local}+{make_token(origin)}@{domain}"


def origin_of(address: str) -> Origin | None:
    """The origin inside a VERP address of ours (`bounces+TOKEN@domain`, compared
    without case, the domain of CAPTURE_BOUNCE_ADDRESS), else None."""
    base = (current_app.config.get("BOUNCE_ADDRESS") or "").lower()
    local, _, domain = base.rpartition("@")
    address = address.strip().strip("<>").lower()
    given_local, _, given_domain = address.rpartition("@")
    if not local or given_domain != domain or not given_local.startswith(local + "+"):
        return None
    return read_token(given_local[len(local) + 1:])
