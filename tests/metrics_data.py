"""The small data set the metrics tests count by hand (described at the top of
tests/test_metrics.py), inserted row by row."""

import secrets
from datetime import datetime, timedelta
from decimal import Decimal

from capture.db import db
from capture.models import Delivery, Event, Lead, Page, Upgrade, Visit

ALPHA = Decimal("2.50")
BETA = Decimal("4.00")
D1 = datetime(2026, 3, 1)
D2 = datetime(2026, 3, 2)
OLD = datetime(2026, 2, 1)
START, END = datetime(2026, 3, 1), datetime(2026, 3, 3)


def at(day: datetime, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return day.replace(hour=hour, minute=minute, second=second)


# --- inserting rows by hand ----------------------------------------------------------

def add_page(slug: str, payout: Decimal) -> Page:
    page = Page(slug=slug, title=slug.title(), payout=payout)
    db.session.add(page)
    db.session.flush()
    return page


def add_visit(page: Page, cookie: str, when: datetime, *, bot: bool = False,
              **attribution) -> Visit:
    visit = Visit(page_id=page.id, visitor_id=cookie, created_at=when, is_bot=bot,
                  **attribution)
    db.session.add(visit)
    return visit


def add_lead(page: Page, email: str, when: datetime, review: str, *,
             confirmed: bool = False, **attribution) -> Lead:
    lead = Lead(email=email, public_ref=secrets.token_hex(8), page_id=page.id,
                created_at=when, consent_at=when, review=review,
                confirmed_at=when + timedelta(minutes=20) if confirmed else None,
                subscription="subscribed" if confirmed else "unconfirmed",
                **attribution)
    db.session.add(lead)
    db.session.flush()
    return lead


def add_delivery(lead: Lead, step: str, sent_at: datetime | None,
                 status: str = "sent") -> Delivery:
    delivery = Delivery(lead_id=lead.id, sequence="welcome", step=step,
                        filename=f"{step}.md", status=status, attempts=1,
                        created_at=sent_at or D1, sent_at=sent_at)
    db.session.add(delivery)
    db.session.flush()
    return delivery


def add_event(lead: Lead, kind: str, when: datetime, *, delivery: Delivery | None = None,
              machine: bool = False, page: Page | None = None, **data) -> Event:
    event = Event(lead_id=lead.id, page_id=page.id if page else lead.page_id, kind=kind,
                  created_at=when, delivery_id=delivery.id if delivery else None,
                  machine=machine, data=data)
    db.session.add(event)
    return event


def add_upgrade(lead: Lead, amount: str, when: datetime) -> Upgrade:
    upgrade = Upgrade(lead_id=lead.id, txn=secrets.token_hex(8), amount=Decimal(amount),
                      currency="USD", source="test", created_at=when)
    db.session.add(upgrade)
    return upgrade


def seed(app) -> dict[str, int]:
    """Insert the data set described at the top of tests/test_metrics.py; return
    the page ids by slug."""
    with app.app_context():
        alpha = add_page("alpha", ALPHA)
        beta = add_page("beta", BETA)

        google_spring = {"utm_source": "google", "utm_campaign": "spring"}
        google_summer = {"utm_source": "google", "utm_campaign": "summer"}
        add_visit(alpha, "c1", at(D1, 8), **google_spring)
        add_visit(alpha, "c1", at(D1, 9), **google_spring)
        add_visit(alpha, "c1", at(D2, 7), **google_spring)
        add_visit(alpha, "c2", at(D1, 9), utm_source="facebook", utm_campaign="spring")
        add_visit(alpha, "c3", at(D2, 6), ref="partner7")
        add_visit(alpha, "c6", at(D1, 11), **google_spring)
        add_visit(alpha, "bot1", at(D1, 12), bot=True, **google_spring)
        add_visit(beta, "c4", at(D2, 6), **google_summer)
        add_visit(beta, "c5", at(D2, 6), utm_source="newsletter", ref="partner7")
        add_visit(beta, "c1", at(D2, 6, 30), **google_summer)
        add_visit(beta, "c7", at(D2, 7), **google_summer)
        add_visit(beta, "bot2", at(D2, 7), bot=True, **google_summer)
        add_visit(alpha, "c9", at(OLD, 8), **google_spring)

        l1 = add_lead(alpha, "l1@example.com", at(D1, 9, 5), "approved", confirmed=True,
                      **google_spring)
        add_lead(alpha, "l2@example.com", at(D1, 9, 10), "rejected",
                 utm_source="facebook", utm_campaign="spring")
        add_lead(alpha, "l3@example.com", at(D2, 6, 5), "pending", confirmed=True,
                 ref="partner7")
        l4 = add_lead(beta, "l4@example.com", at(D2, 6, 5), "approved", confirmed=True,
                      **google_summer)
        l5 = add_lead(beta, "l5@example.com", at(D2, 6, 10), "approved", confirmed=True,
                      utm_source="newsletter", ref="partner7")
        add_lead(beta, "l6@example.com", at(D2, 7, 5), "rejected", **google_summer)
        l0 = add_lead(alpha, "l0@example.com", at(OLD, 8, 5), "approved", confirmed=True,
                      **google_spring)

        d1 = add_delivery(l1, "01-welcome", at(D1, 12))
        d2 = add_delivery(l1, "02-guide", at(D2, 8))
        d3 = add_delivery(l4, "01-welcome", at(D2, 8))
        d4 = add_delivery(l5, "01-welcome", at(D2, 8))
        d0 = add_delivery(l0, "01-welcome", at(OLD, 10))

        add_event(l1, "open", at(D1, 12, 0, 5), delivery=d1, machine=True)
        add_event(l1, "open", at(D1, 13), delivery=d1)
        add_event(l1, "open", at(D1, 14), delivery=d1)
        add_event(l1, "open", at(D2, 8, 30), delivery=d2)
        add_event(l1, "click", at(D1, 12, 0, 6), delivery=d1, machine=True)
        add_event(l1, "click", at(D1, 13, 5), delivery=d1)
        add_event(l4, "open", at(D2, 8, 0, 3), delivery=d3, machine=True)
        add_event(l4, "click", at(D2, 8, 0, 4), delivery=d3, machine=True)
        add_event(l5, "open", at(D2, 9), delivery=d4)
        add_event(l0, "open", at(OLD, 11), delivery=d0)

        add_event(l1, "unsubscribe", at(D2, 9, 30))
        add_event(l5, "unsubscribe", at(D2, 9, 10))
        add_event(l5, "unsubscribe", at(D2, 9, 11))

        add_event(l1, "duplicate", at(D2, 7), page=beta, utm_source="facebook",
                  utm_campaign="retarget")
        add_event(l4, "duplicate", at(D2, 7, 30), page=beta)
        add_event(l0, "duplicate", at(OLD, 12), page=alpha, utm_source="google")

        # Events that are none of the counted kinds change nothing.
        add_event(l1, "optin", at(D1, 9, 5), **google_spring)
        add_event(l1, "confirm", at(D1, 9, 30))

        add_upgrade(l1, "10.00", at(D2, 9))
        add_upgrade(l1, "5.25", at(D2, 9, 5))
        add_upgrade(l5, "7.50", at(D2, 9, 20))
        add_upgrade(l0, "100.00", at(OLD, 13))

        db.session.commit()
        return {"alpha": alpha.id, "beta": beta.id}
