"""Helpers of the dashboard tests: an owner's client of an app with its own settings, the
page editor's form, and how the overview shows a number."""

from sqlalchemy import select

from capture.access.owners import create_owner
from capture.db import db
from capture.models import Page
from tests.conftest import OWNER_EMAIL, OWNER_PASSWORD, login

def owner_of(app):
    """A client logged in as the owner of `app` (an app made with custom settings)."""
    with app.app_context():
        create_owner(OWNER_EMAIL, OWNER_PASSWORD)
    client = app.test_client()
    assert login(client).status_code == 302
    return client


def form_data(token: str, **overrides) -> dict:
    """A complete, valid editor form as the browser posts it (checkboxes: present = on)."""
    data = {
        "csrf_token": token,
        "slug": "guide",
        "title": "The Guide",
        "headline": "Get the guide today",
        "body": "Read **this**.",
        "rows-0-name": "name", "rows-0-label": "First name", "rows-0-kind": "text",
        "rows-1-name": "email", "rows-1-label": "Your email", "rows-1-kind": "email",
        "rows-1-required": "y",
        "rows-2-name": "size", "rows-2-label": "Team size", "rows-2-kind": "select",
        "rows-2-options": "1-10, 11-50, 51+",
        "rows-3-name": "country", "rows-3-label": "Country", "rows-3-kind": "country",
        "rows-3-required": "y",
        "rows-4-name": "", "rows-4-label": "", "rows-4-kind": "text",
        "button": "Send it",
        "consent": "I agree to receive emails.",
        "double_opt_in": "y",
        "sequence": "welcome",
        "thank_you": "## Thanks!",
        "redirect_url": "",
        "review": "manual",
        "countries": "us, CA",
        "required_fields": "size",
        "block_domains": "spam.example\nbad.example",
        "block_disposable": "y",
        "payout": "2.50",
        "currency": "eur",
        "template": "default.html",
        "published": "y",
    }
    for key, value in overrides.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def page_id(app, slug: str) -> int:
    with app.app_context():
        return db.session.scalar(select(Page.id).where(Page.slug == slug))


def get_page(app, slug: str) -> Page | None:
    with app.app_context():
        page = db.session.scalar(select(Page).where(Page.slug == slug))
        if page is not None:
            db.session.expunge(page)
        return page


PERIODS = ("today", "7d", "30d", "all")


def shown(kind: str, value) -> str:
    """How the dashboard must show a number: rates in % with one decimal, money with
    two decimals, "-" when undefined."""
    if value is None:
        return "-"
    if kind == "percent":
        return f"{value * 100:.1f}%"
    if kind == "money":
        return f"{value:,.2f}"
    return f"{value:,}"
