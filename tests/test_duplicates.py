"""A repeat opt-in on the same page: no second lead, a `duplicate` event on the first,
the same answer as a first opt-in, and no mail-bombing through the confirmation email.
(Another page is a new opt-in of the same lead: test_optins.)"""


from sqlalchemy import select

from capture.db import db
from capture.models import Event, Lead, Page, Suppression
from tests.conftest import count, optin


def events_of(app, email, kind):
    with app.app_context():
        rows = db.session.scalars(
            select(Event).join(Lead).where(Lead.email == email, Event.kind == kind)
            .order_by(Event.id)
        ).all()
        for row in rows:
            db.session.expunge(row)
        return rows


def confirmations(outbox, email):
    """The double opt-in emails written to one address."""
    return [m for m in outbox.to(email) if str(m["Subject"]).startswith("Please confirm")]


def page_id(app, slug):
    with app.app_context():
        return db.session.scalar(select(Page.id).where(Page.slug == slug))


def test_second_optin_with_other_case_and_spaces_creates_no_lead(app, client, demo_page):
    optin(client, email="jane@example.com", consent="y")
    response = optin(client, email="  JANE@Example.com ", consent="y")
    assert response.status_code == 303
    assert count(app, Lead) == 1


def test_duplicate_is_logged_on_existing_lead_with_page_and_new_visit_attribution(
    app, demo_page
):
    optin(app.test_client(), email="jane@example.com", consent="y",
          query="?utm_source=first&utm_campaign=launch")
    optin(app.test_client(), email="Jane@Example.com ", consent="y",
          query="?utm_source=newsletter&utm_medium=email&utm_campaign=spring&ref=partner7")

    [duplicate] = events_of(app, "jane@example.com", "duplicate")
    assert duplicate.page_id == page_id(app, "demo")
    assert duplicate.data["utm_source"] == "newsletter"
    assert duplicate.data["utm_medium"] == "email"
    assert duplicate.data["utm_campaign"] == "spring"
    assert duplicate.data["ref"] == "partner7"


def test_duplicate_keeps_the_lead_first_touch_attribution(app, demo_page):
    optin(app.test_client(), email="jane@example.com", consent="y", query="?utm_source=first")
    optin(app.test_client(), email="jane@example.com", consent="y", query="?utm_source=second")
    with app.app_context():
        lead = db.session.scalar(select(Lead).where(Lead.email == "jane@example.com"))
        assert lead.utm_source == "first"


def test_duplicate_gets_the_same_response_as_a_first_optin(app, demo_page):
    optin(app.test_client(), email="known@example.com", consent="y")

    first = optin(app.test_client(), email="new@example.com", consent="y")
    repeat = optin(app.test_client(), email="known@example.com", consent="y")
    assert repeat.status_code == first.status_code == 303
    assert repeat.headers["Location"] == first.headers["Location"]
    assert repeat.get_data() == first.get_data()

    new_thanks = app.test_client().get(first.headers["Location"]).get_data(as_text=True)
    repeat_thanks = app.test_client().get(repeat.headers["Location"]).get_data(as_text=True)
    assert repeat_thanks == new_thanks


def test_flood_of_duplicates_sends_no_extra_confirmation_within_resend_window(
    app, client, demo_page, outbox, frozen_clock
):
    optin(client, email="victim@example.com", consent="y")
    assert len(confirmations(outbox, "victim@example.com")) == 1

    for _ in range(20):
        frozen_clock.advance(seconds=20)  # 20 × 20 s: still inside the 10 minutes
        assert optin(client, email="victim@example.com", consent="y").status_code == 303

    assert len(confirmations(outbox, "victim@example.com")) <= 2
    assert len(events_of(app, "victim@example.com", "duplicate")) == 20
    assert count(app, Lead) == 1


def test_flood_after_resend_window_sends_exactly_one_more_confirmation(
    app, client, demo_page, outbox, frozen_clock
):
    optin(client, email="victim@example.com", consent="y")
    for _ in range(20):
        optin(client, email="victim@example.com", consent="y")
    before = len(confirmations(outbox, "victim@example.com"))

    frozen_clock.advance(minutes=10)
    for _ in range(20):
        optin(client, email="victim@example.com", consent="y")

    assert len(confirmations(outbox, "victim@example.com")) == before + 1


def test_resend_window_follows_confirm_resend_minutes_setting(
    make_app, demo_page, outbox, frozen_clock
):
    app = make_app(CONFIRM_RESEND_MINUTES=30)
    client = app.test_client()
    optin(client, email="victim@example.com", consent="y")
    frozen_clock.advance(minutes=20)
    optin(client, email="victim@example.com", consent="y")
    assert len(confirmations(outbox, "victim@example.com")) == 1
    frozen_clock.advance(minutes=11)
    optin(client, email="victim@example.com", consent="y")
    assert len(confirmations(outbox, "victim@example.com")) == 2


def test_duplicate_of_confirmed_lead_sends_no_confirmation(
    app, client, demo_page, outbox, frozen_clock
):
    optin(client, email="jane@example.com", consent="y")
    with app.app_context():
        lead = db.session.scalar(select(Lead).where(Lead.email == "jane@example.com"))
        lead.subscription = "subscribed"
        db.session.commit()

    frozen_clock.advance(hours=1)
    optin(client, email="jane@example.com", consent="y")
    assert len(confirmations(outbox, "jane@example.com")) == 1


def test_suppressed_address_gets_normal_thanks_and_no_lead(app, client, demo_page, outbox):
    with app.app_context():
        db.session.add(Suppression(email="gone@example.com", reason="deleted"))
        db.session.commit()

    response = optin(client, email=" Gone@Example.com", consent="y")
    assert response.status_code == 303
    assert response.headers["Location"] == "/p/demo/thanks"
    assert count(app, Lead) == 0
    assert count(app, Event) == 0
    assert outbox.messages() == []
