"""The queued sign-up (CAPTURE_OPTIN_PROCESSING=queued, the default outside the tests):
the request appends one row and answers; the processor makes the lead of it exactly
as the request would have, dated when the visitor signed up; what it cannot store
is kept and shown."""

from datetime import datetime

import pytest
from sqlalchemy import delete, select

from capture import clock, scheduler
from capture.db import db
from capture.leads import intake
from capture.models import Event, Intake, Lead, Page
from tests.conftest import banners, count, form_tokens, lead_of, owner_client, send_confirmations

SIGNED_UP = datetime(2026, 12, 4, 9, 30)


@pytest.fixture
def app(make_app):
    return make_app(OPTIN_PROCESSING="queued")


@pytest.fixture
def client(app):
    return app.test_client()


def _sign_up(client, slug="demo", **fields):
    page = client.get(f"/p/{slug}?utm_source=news&utm_campaign=winter")
    data = {**form_tokens(page.get_data(as_text=True)), "consent": "y", **fields}
    return client.post(f"/p/{slug}", data=data)


def _process(app) -> intake.Folded:
    with app.app_context():
        return intake.process()


def _kinds(app, email):
    with app.app_context():
        return db.session.scalars(select(Event.kind).join(Lead).where(Lead.email == email)
                                  .order_by(Event.id)).all()


def test_the_visitor_gets_the_answer_and_the_sign_up_waits_as_one_row(app, client, demo_page):
    response = _sign_up(client, email="ann@example.com", name="Ann")
    assert response.status_code == 303
    assert response.headers["Location"] == "/p/demo/thanks"
    assert count(app, Intake) == 1
    assert count(app, Lead) == 0


def test_the_processor_stores_the_lead_as_the_request_would_have(app, client, demo_page):
    _sign_up(client, email=" Ann@Example.com ", name="Ann")
    assert _process(app).stored == 1
    lead = lead_of(app, "ann@example.com")
    assert (lead.name, lead.utm_source, lead.utm_campaign) == ("Ann", "news", "winter")
    assert (lead.consent_ip, lead.subscription, lead.review) == (
        "127.0.0.1", "unconfirmed", "approved")
    assert lead.consent_text.startswith("Email me the checklist")
    assert count(app, Intake) == 0
    send_confirmations(app)
    assert _kinds(app, "ann@example.com") == ["optin", "approve", "confirmation_sent"]


def test_what_the_processor_stores_is_dated_when_the_visitor_signed_up(app, client,
                                                                        demo_page):
    with clock.as_of(SIGNED_UP):
        _sign_up(client, email="ann@example.com")
    _process(app)
    lead = lead_of(app, "ann@example.com")
    assert lead.created_at == lead.consent_at == SIGNED_UP
    with app.app_context():
        assert set(db.session.scalars(select(Event.created_at))) == {SIGNED_UP}


def test_a_confirmation_email_arrives_once_the_processor_ran(make_app, smtp, demo_page):
    app = make_app(OPTIN_PROCESSING="queued", MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1",
                   SMTP_PORT=smtp.port)
    client = app.test_client()
    _sign_up(client, email="ann@example.com")
    send_confirmations(app)
    assert smtp.to("ann@example.com") == []
    scheduler.run_intake(app)
    send_confirmations(app)
    assert len(smtp.to("ann@example.com")) == 1


def test_one_address_twice_in_a_batch_is_one_lead_and_a_duplicate(app, client, demo_page):
    _sign_up(client, email="ann@example.com")
    _sign_up(client, email="ANN@example.com")
    assert _process(app).stored == 2
    assert count(app, Lead) == 1
    assert _kinds(app, "ann@example.com") == ["optin", "approve", "duplicate"]


def test_batches_follow_the_batch_size_until_none_waits(make_app, demo_page):
    app = make_app(OPTIN_PROCESSING="queued", INTAKE_BATCH_SIZE=2)
    client = app.test_client()
    for number in range(5):
        _sign_up(client, email=f"p{number}@example.com")
    assert _process(app).stored == 5
    assert count(app, Lead) == 5 and count(app, Intake) == 0


def test_refused_and_trapped_sign_ups_append_nothing(app, client, demo_page):
    assert _sign_up(client, email="not-an-address").status_code == 422
    assert _sign_up(client, email="bot@example.com", website="http://spam").status_code == 303
    assert count(app, Intake) == 0


def test_the_embedded_form_is_queued_too(app, client, make_page):
    make_page(slug="embedded", allowed_origins=["https://partner.example.com"])
    response = client.post("/p/embedded/embed", data={"email": "eve@example.com"},
                           headers={"Origin": "https://partner.example.com"})
    assert response.status_code == 303
    assert count(app, Lead) == 0
    _process(app)
    assert lead_of(app, "eve@example.com") is not None


def test_a_sign_up_whose_page_was_deleted_is_kept_failed_and_shown(app, client, demo_page,
                                                                   make_page):
    make_page(slug="gone")
    _sign_up(client, "gone", email="gone@example.com")
    _sign_up(client, email="ann@example.com")
    with app.app_context():
        db.session.delete(db.session.scalar(select(Page).where(Page.slug == "gone")))
        db.session.commit()
    folded = _process(app)
    assert (folded.stored, folded.failed) == (1, 1)
    assert lead_of(app, "ann@example.com") is not None
    with app.app_context():
        row = db.session.scalar(select(Intake))
        assert (row.state, row.payload["email"]) == ("failed", "gone@example.com")
        assert "deleted before the sign-up was stored" in row.error
    shown = banners(owner_client(app).get("/admin/").get_data(as_text=True))
    assert "1 sign-up could not be stored" in shown["signups_waiting"]
    assert "intake retry" in shown["signups_waiting"]


def test_a_row_another_processor_took_meanwhile_is_not_counted_here(app, client, demo_page,
                                                                     make_page, monkeypatch):
    make_page(slug="gone")
    for email in ("ann@example.com", "bob@example.com"):
        _sign_up(client, email=email)
    _sign_up(client, "gone", email="gone@example.com")
    with app.app_context():
        db.session.delete(db.session.scalar(select(Page).where(Page.slug == "gone")))
        db.session.commit()
        bob = db.session.scalar(select(Intake.id).where(intake.holding("bob@example.com")))
    store = intake._store

    def others_take_bob(rows):
        # The batch fails (the deleted page), then row by row: while Ann's row is
        # stored, Bob's is taken by another processor (as in its own transaction).
        if len(rows) == 1 and rows[0].payload["email"] == "ann@example.com":
            db.session.execute(delete(Intake).where(Intake.id == bob))
        store(rows)

    monkeypatch.setattr(intake, "_store", others_take_bob)
    folded = _process(app)
    assert (folded.stored, folded.failed) == (1, 1)


def test_the_overview_says_when_sign_ups_wait_for_no_scheduler(app, client, demo_page):
    with clock.as_of(datetime(2026, 1, 1, 12, 0)):
        _sign_up(client, email="ann@example.com")
    shown = banners(owner_client(app).get("/admin/").get_data(as_text=True))
    assert shown["signups_waiting"].startswith("1 sign-up waits to be stored, the oldest "
                                               "since 2026-01-01 12:00 UTC")
    assert "is the scheduler running?" in shown["signups_waiting"]
    _process(app)
    assert "signups_waiting" not in banners(owner_client(app).get("/admin/")
                                            .get_data(as_text=True))


def test_the_intake_commands_show_process_and_retry(app, client, demo_page, make_page):
    runner = app.test_cli_runner()
    _sign_up(client, email="ann@example.com")
    assert runner.invoke(args=["intake", "status"]).output.startswith("1 waiting, the oldest")
    assert runner.invoke(args=["intake", "process"]).output == "intake: 1 sign-ups stored\n"
    with app.app_context():
        db.session.add(Intake(page_id=999, payload={"email": "x@example.com"},
                              state="failed", error="LookupError: page 999"))
        db.session.commit()
    assert "1 failed" in runner.invoke(args=["intake", "status"]).output
    assert runner.invoke(args=["intake", "retry"]).output == \
        "1 failed sign-up queued again\n"
    assert runner.invoke(args=["intake", "status"]).output.startswith("1 waiting")
