"""Upgrades: a lead's purchases, recorded once per transaction id from the postback,
the API, the dashboard or the command line, and the postback's signature."""

import hashlib
import hmac
import re
from decimal import Decimal

import pycountry
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from capture.db import db
from capture.mail import membership
from capture.timeline import record_event
from capture.models import Lead, Upgrade
from capture.webhooks import events

_AMOUNT = re.compile(r"^[0-9]{1,10}(\.[0-9]{1,2})?$")


class UpgradeError(ValueError):
    """An upgrade with a missing or invalid value; the message names it."""


def parse_amount(value: str) -> Decimal:
    """A positive amount written like 19 or 19.90 (no exponent, at most two decimals)."""
    text = str(value or "").strip()
    if not _AMOUNT.match(text):
        raise UpgradeError(f"amount: {value!r} is not an amount like 19.90")
    amount = Decimal(text)
    if amount <= 0 or amount > Decimal("1000000000"):
        raise UpgradeError("amount: must be more than 0 and at most 1000000000")
    return amount


def parse_currency(value: str) -> str:
    """An ISO 4217 currency code, upper-cased."""
    code = str(value or "").strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", code) or pycountry.currencies.get(alpha_3=code) is None:
        raise UpgradeError(f"currency: {value!r} is not an ISO 4217 code")
    return code


TXN_MAX = Upgrade.__table__.c.txn.type.length


def record_upgrade(lead: Lead, amount: Decimal, currency: str, txn: str,
                   source: str) -> tuple[Upgrade, bool]:
    """Store an upgrade once per `txn`; return it and whether it is new. A replay
    (same txn) changes nothing."""
    txn = txn.strip()
    if not txn:
        raise UpgradeError("txn: required (the transaction id makes replays harmless)")
    if len(txn) > TXN_MAX:
        # Never cut: two long ids that share their start would become one upgrade.
        raise UpgradeError(f"txn: at most {TXN_MAX} characters (this one has {len(txn)})")
    existing = db.session.scalar(select(Upgrade).where(Upgrade.txn == txn))
    if existing is not None:
        return existing, False
    upgrade = Upgrade(lead_id=lead.id, amount=amount, currency=currency, txn=txn,
                      source=source)
    db.session.add(upgrade)
    try:
        db.session.flush()
    except IntegrityError:  # the same txn in a parallel request
        db.session.rollback()
        return db.session.scalar(select(Upgrade).where(Upgrade.txn == txn)), False
    record_event(lead, "upgrade", amount=str(amount), currency=currency, txn=txn,
                 source=source)
    events.emit("upgrade.recorded", lead, extra=events.upgrade_data(upgrade))
    membership.on_upgrade(lead.id)
    db.session.commit()
    return upgrade, True


def postback_signature(params: dict[str, str], secret: str) -> str:
    """Hex HMAC-SHA256 over the parameters except `sig`, sorted by name, joined as
    k=v&… (decoded values), keyed by the postback secret."""
    message = "&".join(f"{key}={params[key]}" for key in sorted(params) if key != "sig")
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def signature_valid(params: dict[str, str], secret: str) -> bool:
    """Compare the given `sig` with the expected one in constant time."""
    given = params.get("sig", "")
    expected = postback_signature(params, secret)
    return hmac.compare_digest(given.encode(), expected.encode())
