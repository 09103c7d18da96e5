"""The owner's webhook endpoints: secret, URL check, list, resend, test event, delete."""

import secrets
from types import SimpleNamespace

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.orm import joinedload

from capture import clock
from capture.db import db
from capture.models import UTM_KEYS, Webhook, WebhookDelivery
from capture.webhooks import delivery, events, outbound

STATUSES = ("pending", "sending", "delivered", "failed")


def new_secret() -> str:
    """A signing secret for a new endpoint."""
    return "whsec_" + secrets.token_urlsafe(32)


def check_url(url: str) -> str:
    """The URL cleaned when it can receive webhooks; outbound.UrlError otherwise."""
    return outbound.check_url(url, current_app.config["WEBHOOK_ALLOW_PRIVATE"])


def resend(delivery: WebhookDelivery) -> None:
    """Queue a delivery again (the owner's button): pending, due now. Its attempts
    count goes on; after WEBHOOK_RETRY_HOURS a failed attempt is final at once.
    ValueError with a sentence for the owner when it is being posted right now."""
    if delivery.status == "sending":
        raise ValueError("This delivery is being posted right now: reload in a moment.")
    changed = db.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery.id, WebhookDelivery.status == delivery.status)
        .values(status="pending", next_attempt_at=clock.utcnow(), claimed_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    if not changed:
        raise ValueError("This delivery changed state meanwhile: reload the page.")


def send_test(webhook: Webhook) -> WebhookDelivery:
    """Post a `webhook.test` event about a made-up lead to this endpoint now (even
    when it is disabled), without retries; return the delivery with its outcome."""
    now = clock.utcnow()
    attribution = {key: None for key in (*UTM_KEYS, "ref", "referrer")}
    sample = SimpleNamespace(
        public_ref="sample-ref", email="jane@example.com", name="Jane Doe", country=None,
        page=webhook.page or SimpleNamespace(slug="sample-page"), review="approved",
        review_reason="", subscription="subscribed", fields={"company": "Example Ltd"},
        consent_text="Send me the guide and occasional emails.", consent_at=now,
        created_at=now, confirmed_at=now, tag_names=["sample-tag"],
        **{**attribution, "utm_source": "test"})
    body = events.encode(events.payload(events.TEST_EVENT, sample, now))
    test = WebhookDelivery(webhook_id=webhook.id, event=events.TEST_EVENT, body=body,
                           status="sending", created_at=now, claimed_at=now,
                           next_attempt_at=None)
    db.session.add(test)
    db.session.commit()
    delivery.attempt(test, retry=False)
    db.session.refresh(test)
    return test


def deliveries_of(webhook_id: int, status: str | None = None, *, offset: int = 0,
                  limit: int = 50) -> tuple[list[WebhookDelivery], int]:
    """A webhook's deliveries, newest first (or only those in `status`), and how
    many there are."""
    condition = WebhookDelivery.webhook_id == webhook_id
    if status in STATUSES:
        condition = condition & (WebhookDelivery.status == status)
    total = db.session.scalar(select(func.count()).select_from(WebhookDelivery)
                              .where(condition))
    rows = db.session.scalars(select(WebhookDelivery).where(condition)
                              .order_by(WebhookDelivery.id.desc())
                              .offset(offset).limit(limit)).all()
    return list(rows), total or 0


def overview() -> list[tuple[Webhook, dict[str, int], WebhookDelivery | None]]:
    """Every webhook with its count of pending and failed deliveries and its latest."""
    hooks = db.session.scalars(select(Webhook).options(joinedload(Webhook.page))
                               .order_by(Webhook.id)).all()
    counts: dict[int, dict[str, int]] = {hook.id: {} for hook in hooks}
    for webhook_id, status, number in db.session.execute(
        select(WebhookDelivery.webhook_id, WebhookDelivery.status, func.count())
        .where(WebhookDelivery.status.in_(("pending", "sending", "failed")))
        .group_by(WebhookDelivery.webhook_id, WebhookDelivery.status)
    ):
        counts.setdefault(webhook_id, {})[status] = number
    rows = []
    for hook in hooks:
        latest = db.session.scalar(select(WebhookDelivery)
                                   .where(WebhookDelivery.webhook_id == hook.id)
                                   .order_by(WebhookDelivery.id.desc()).limit(1))
        rows.append((hook, counts[hook.id], latest))
    return rows


def delete(webhook: Webhook) -> None:
    """Remove an endpoint and its deliveries."""
    db.session.execute(
        WebhookDelivery.__table__.delete().where(WebhookDelivery.webhook_id == webhook.id))
    db.session.delete(webhook)
    db.session.commit()
