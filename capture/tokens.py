"""Signed tokens for public URLs: tamper-proof, tied to one purpose each."""

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer


def _serializer(purpose: str) -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=f"capture.{purpose}")


def make(purpose: str, value: str) -> str:
    """A URL-safe token carrying `value`, valid only for `purpose`."""
    return _serializer(purpose).dumps(value)


def read(purpose: str, token: str) -> str | None:
    """The value inside a genuine token for `purpose`, else None."""
    if not token or len(token) > 500:
        return None
    try:
        value = _serializer(purpose).loads(token)
    except BadSignature:
        return None
    return value if isinstance(value, str) else None


def unsubscribe_url(public_ref: str) -> str:
    """A lead's permanent one-click unsubscribe link (works in mail of any age)."""
    return f"{current_app.config['BASE_URL']}/u/{make('unsubscribe', public_ref)}"
