"""Webhook events, emitted: their names, their JSON payload, the rows queued with the change.

`emit` writes one delivery row per interested endpoint in the same transaction as the
change it reports (an outbox): a visitor's request only inserts rows, and
`capture.webhooks.delivery` posts them later.
"""

import json
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select, true

from capture import clock
from capture.db import db
from capture.models import UTM_KEYS, Lead, LeadTag, Webhook, WebhookDelivery

EVENTS = ("lead.created", "optin.created", "lead.confirmed", "lead.approved",
          "lead.rejected", "lead.returned", "lead.unsubscribed", "lead.complained",
          "upgrade.recorded")
# Sent only by the dashboard's "Send a test event", to one endpoint.
TEST_EVENT = "webhook.test"

# Built once: emit() runs in every opt-in, and a ready Core statement costs a
# quarter of the equivalent ORM query.
_WEBHOOKS = Webhook.__table__
_ACTIVE_WEBHOOKS = (select(_WEBHOOKS.c.id, _WEBHOOKS.c.events, _WEBHOOKS.c.page_id)
                    .where(_WEBHOOKS.c.active == true()))
_INSERT_DELIVERY = insert(WebhookDelivery.__table__)


def emit(event: str, lead: Lead, page_id: int | None = None,
         extra: dict[str, Any] | None = None) -> int:
    """Queue `event` about `lead` for every active webhook that wants it (the event
    is subscribed and the page filter, if any, is the lead's page or `page_id`).

    Writes rows in the session's transaction only: they commit, or roll back, with
    the change they report. Returns how many were queued. `extra`: more top-level
    payload keys."""
    return emit_many((event,), lead, page_id, extra)


def emit_many(events: Sequence[str], lead: Any, page_id: int | None = None,
              extra: dict[str, Any] | Callable[[], dict[str, Any]] | None = None) -> int:
    """`emit` for several events about one lead, in order, with one look-up of the
    endpoints (an auto-approved opt-in is `lead.created` and `lead.approved`).
    `lead` is a Lead or any object with its attributes (see `lead_data`); `extra`
    may be a function, called only when an endpoint wants one of the events."""
    for event in events:
        if event not in EVENTS:
            raise ValueError(f"unknown webhook event {event!r}")
    page_id = lead.page_id if page_id is None else page_id
    db.session.flush()  # an endpoint added in this transaction counts (as autoflush did)
    connection = db.session.connection()
    hooks = connection.execute(_ACTIVE_WEBHOOKS).all()
    rows = []
    now = clock.utcnow()
    for event in events:
        targets = [hook.id for hook in hooks if event in (hook.events or [])
                   and hook.page_id in (None, page_id)]
        if targets:
            if callable(extra):
                extra = extra()
            body = encode(payload(event, lead, now, extra))
            rows += [{"webhook_id": webhook_id, "event": event, "body": body,
                      "status": "pending", "created_at": now, "next_attempt_at": now}
                     for webhook_id in targets]
    if rows:
        connection.execute(_INSERT_DELIVERY, rows)
    return len(rows)


def payload(event: str, lead: Any, occurred_at: datetime,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON document posted for an event (its shape is documented in
    docs/integrate/webhooks.md and only ever grows)."""
    return {"id": f"evt_{secrets.token_hex(12)}", "event": event,
            "occurred_at": _time(occurred_at), "lead": lead_data(lead), **(extra or {})}


def lead_data(lead: Any) -> dict[str, Any]:
    """A lead as webhooks describe it: its public ref as `id`, never the row id."""
    page = lead.page
    return {
        "id": lead.public_ref,
        "email": lead.email,
        "name": lead.name,
        "country": lead.country,
        "page": page.slug if page is not None else None,
        "review": lead.review,
        "review_reason": lead.review_reason or "",
        "subscription": lead.subscription,
        "attribution": {key: getattr(lead, key) for key in (*UTM_KEYS, "ref", "referrer")},
        "fields": dict(lead.fields or {}),
        "consent": {"text": lead.consent_text or "", "at": _time(lead.consent_at)},
        "created_at": _time(lead.created_at),
        "confirmed_at": _time(lead.confirmed_at),
        "tags": _tags(lead),
    }


def _tags(lead: Any) -> list[str]:
    """The lead's tag names, sorted: as stored, or `tag_names` of a made-up lead."""
    given = getattr(lead, "tag_names", None)
    if given is not None:
        return sorted(given)
    lead_id = getattr(lead, "id", None)
    if lead_id is None:
        return []
    # Read here, not through capture.leads.tags: leads emit webhooks, so webhooks
    # may not import leads back.
    return list(db.session.scalars(select(LeadTag.tag).where(LeadTag.lead_id == lead_id)
                                   .order_by(LeadTag.tag)))


def upgrade_data(upgrade: Any) -> dict[str, Any]:
    """The `upgrade` key of an `upgrade.recorded` payload."""
    return {"upgrade": {"amount": f"{Decimal(upgrade.amount):.2f}",
                        "currency": upgrade.currency, "txn": upgrade.txn,
                        "source": upgrade.source}}


def encode(document: dict[str, Any]) -> str:
    """The exact body that is stored, signed and posted (ASCII JSON)."""
    return json.dumps(document, separators=(",", ":"))


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="milliseconds") + "Z"
