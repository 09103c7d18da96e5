"""Plain functions the tests call with arguments: step files and sequences, enrolled
leads, webhook endpoints and CSV files to import, one run of the sending or webhook
job, and the rows those runs leave. Imports nothing from the tests (conftest.py builds
its fixtures on these)."""

from datetime import datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select

from capture.db import db
from capture.leads.imports import importer as imports
from capture.mail import engine, membership
from capture.models import (
    Broadcast,
    Delivery,
    Event,
    Lead,
    Page,
    Upgrade,
    Webhook,
    WebhookDelivery,
)
from capture.webhooks import delivery, endpoints
from capture.webhooks.events import EVENTS

# --- sequences and the sending engine --------------------------------------------------


def write_step(folder: Path, filename: str, subject: str, body: str, **front) -> Path:
    """Write a step file with front matter."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["---", f"subject: {subject!r}" if "'" not in subject else f'subject: "{subject}"']
    lines += [f"{key}: {value!r}" if isinstance(value, str) else f"{key}: {value}"
              for key, value in front.items()]
    path = folder / filename
    path.write_text("\n".join([*lines, "---", body, ""]), encoding="utf-8")
    return path


def sequence_folder(app, name="course") -> Path:
    return Path(app.config["SEQUENCES_DIR"]) / name


def three_steps(app, name="course") -> Path:
    folder = sequence_folder(app, name)
    write_step(folder, "01-welcome.md", "Welcome, {{ lead.first_name }}",
               "Hi {{ lead.first_name }}, here is [your guide](https://example.com/guide).",
               delay=0, preheader="Your guide inside")
    write_step(folder, "02-tips.md", "Three tips", "Tip one.", delay="2d")
    write_step(folder, "03-offer.md", "An offer",
               "[Upgrade](https://shop.example.com/buy?ref={{ lead.ref }})", delay="3d")
    return folder


def add_lead(app, email="ann@example.com", name="Ann Lee", sequence="course", **values):
    """An approved, subscribed lead on a page whose sequence is `sequence`, enrolled."""
    with app.app_context():
        page = db.session.scalar(select(Page).where(Page.slug == "course-page"))
        if page is None:
            page = Page(slug="course-page", title="The Course", fields=[], rules={},
                        sequence=sequence)
            db.session.add(page)
            db.session.flush()
        lead = Lead(email=email, name=name, public_ref=f"ref-{email.split('@')[0]}",
                    page_id=page.id, review="approved", subscription="subscribed", **values)
        db.session.add(lead)
        db.session.flush()
        membership.enroll(lead)
        db.session.commit()
        return lead.id


def tick(app):
    with app.app_context():
        return engine.tick()


def deliveries(app, lead_id=None):
    with app.app_context():
        query = select(Delivery.step, Delivery.status).order_by(Delivery.id)
        if lead_id:
            query = query.where(Delivery.lead_id == lead_id)
        return [tuple(row) for row in db.session.execute(query)]


def subjects(smtp):
    return [str(m["Subject"]) for m in smtp.messages]


# --- webhooks ------------------------------------------------------------------------------

# An endpoint's events when a test names none: every event about a lead's state.
# `optin.created` (one more per opt-in) is left out here and tested in test_optins.
ALL = [event for event in EVENTS if event != "optin.created"]


def add_webhook(app, url, events=None, page=None, active=True) -> int:
    """An endpoint (for the page with slug `page`, if given); returns its id."""
    with app.app_context():
        page_id = db.session.scalar(select(Page.id).where(Page.slug == page)) if page else None
        hook = Webhook(url=url, secret=endpoints.new_secret(), events=events or ALL,
                       page_id=page_id, active=active)
        db.session.add(hook)
        db.session.commit()
        return hook.id


def rows(app, **filters) -> list[WebhookDelivery]:
    """Delivery rows, oldest first, detached."""
    with app.app_context():
        found = db.session.scalars(select(WebhookDelivery).filter_by(**filters)
                                   .order_by(WebhookDelivery.id)).all()
        for row in found:
            db.session.expunge(row)
        return list(found)


def deliver(app) -> delivery.Summary:
    with app.app_context():
        return delivery.deliver_due()


# --- CSV imports -----------------------------------------------------------------------

HEADER = "email,name,country,consent,utm_source\n"

FIELDS = [
    {"name": "name", "label": "Name", "type": "text", "required": False},
    {"name": "email", "label": "Email", "type": "email", "required": True},
    {"name": "country", "label": "Country", "type": "country", "required": False},
    {"name": "plan", "label": "Plan", "type": "select", "required": False,
     "options": ["Basic", "Pro"]},
    {"name": "phone", "label": "Phone", "type": "tel", "required": False},
]


def write(tmp_path, text: str, name: str = "list.csv", encoding: str = "utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def run_import(app, path, slug="offer", **options) -> imports.Report:
    with app.app_context():
        return imports.import_file(path, slug, **options)


# --- broadcasts and their numbers (rows made directly) -----------------------------------


def add_broadcast(app, name="spring-sale", state="sent", **values) -> int:
    """A Broadcast row as `broadcasts send` freezes it; returns its id."""
    with app.app_context():
        broadcast = Broadcast(name=name, state=state, subject=values.pop("subject", name),
                              body=values.pop("body", "Hello."),
                              file_hash=values.pop("file_hash", "0" * 64), **values)
        db.session.add(broadcast)
        db.session.commit()
        return broadcast.id


def add_delivery(app, lead_id: int, *, broadcast_id: int | None = None, sequence="course",
                 step="01-welcome", status="sent", sent_at: datetime | None = None) -> int:
    """One email to a lead: of a broadcast (sequence "" and step = its name, as the
    engine writes them) or of a sequence step; returns the delivery's id."""
    with app.app_context():
        if broadcast_id is not None:
            sequence, step = "", db.session.get(Broadcast, broadcast_id).name
        delivery = Delivery(lead_id=lead_id, broadcast_id=broadcast_id, sequence=sequence,
                            step=step, filename=f"{step}.md", status=status,
                            sent_at=sent_at or (datetime(2026, 1, 1) if status == "sent"
                                                else None))
        db.session.add(delivery)
        db.session.commit()
        return delivery.id


def add_event(app, lead_id: int, kind: str, at: datetime, *, delivery_id: int | None = None,
              machine: bool = False, **data) -> int:
    """One timeline event at a given time (an open, a click, an unsubscribe …)."""
    with app.app_context():
        event = Event(lead_id=lead_id, kind=kind, created_at=at, delivery_id=delivery_id,
                      machine=machine, data=data)
        db.session.add(event)
        db.session.commit()
        return event.id


def add_upgrade(app, lead_id: int, amount: str, at: datetime, txn: str | None = None) -> int:
    """An upgrade of a lead at a given time."""
    with app.app_context():
        upgrade = Upgrade(lead_id=lead_id, amount=Decimal(amount), currency="USD",
                          txn=txn or f"txn-{lead_id}-{at.isoformat()}", created_at=at)
        db.session.add(upgrade)
        db.session.commit()
        return upgrade.id
