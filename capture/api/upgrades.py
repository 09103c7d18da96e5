"""API operation: record an upgrade (a purchase) of a lead, once per transaction id."""

from decimal import Decimal
from typing import Any

from sqlalchemy import select

from capture.leads import upgrades
from capture.api import bp
from capture.api.errors import invalid
from capture.api.inputs import json_object, refuse_unknown
from capture.api.shapes import upgrade_json
from capture.db import db
from capture.models import Lead

REQUIRED = {"lead": "the lead's public ref", "amount": "an amount like 19.90",
            "currency": "an ISO 4217 code like USD",
            "txn": "the transaction id (it makes replays harmless)"}


@bp.post("/upgrades")
def record_upgrade():
    """201 with the new upgrade; 200 with `replay: true` when the txn is known (the
    stored upgrade, unchanged)."""
    body = json_object()
    refuse_unknown(body, REQUIRED, body=True)
    problems = {key: f"required: {what}" for key, what in REQUIRED.items()
                if body.get(key) in (None, "")}
    lead = _lead(body.get("lead"), problems)
    amount = _checked(problems, "amount", upgrades.parse_amount,
                      _amount_text(body, problems))
    currency = _checked(problems, "currency", upgrades.parse_currency,
                        _text(body, "currency", problems))
    txn = _text(body, "txn", problems).strip()
    if "txn" not in problems and not txn:
        problems["txn"] = f"required: {REQUIRED['txn']}"
    elif len(txn) > upgrades.TXN_MAX:
        problems["txn"] = f"at most {upgrades.TXN_MAX} characters"
    if problems or lead is None or amount is None or currency is None:
        raise invalid(problems)
    upgrade, created = upgrades.record_upgrade(lead, amount, currency, txn, source="api")
    owner_ref = db.session.scalar(select(Lead.public_ref).where(Lead.id == upgrade.lead_id))
    body = {"upgrade": upgrade_json(upgrade, owner_ref), "replay": not created}
    return body, 201 if created else 200


def _lead(ref: Any, problems: dict[str, str]) -> Lead | None:
    if "lead" in problems:
        return None
    if not isinstance(ref, str):
        problems["lead"] = "must be a string"
        return None
    lead = db.session.scalar(select(Lead).where(Lead.public_ref == ref.strip()))
    if lead is None:
        problems["lead"] = "no lead has this public ref"
    return lead


def _amount_text(body: dict[str, Any], problems: dict[str, str]) -> str:
    """The amount as written: "19.90", or a JSON number (19.9) as its shortest form."""
    value = body.get("amount")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        problems.setdefault("amount", "must be a decimal string like 19.90")
        return ""
    return str(Decimal(str(value))) if isinstance(value, float) else str(value)


def _text(body: dict[str, Any], key: str, problems: dict[str, str]) -> str:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        problems[key] = "must be a string"
        return ""
    return value or ""


def _checked(problems: dict[str, str], key: str, parse, value: str):
    """parse(value), or None with the problem (without the parser's "key: " prefix)."""
    if key in problems:
        return None
    try:
        return parse(value)
    except upgrades.UpgradeError as error:
        problems[key] = str(error).removeprefix(f"{key}: ")
        return None
