"""Bounce and complaint rates (capture.numbers.deliverability): their definitions in the
reports, their grouping by the lead's first-touch page and source, and the overview's
warnings at 2 % bounces and 0.1 % complaints over 30 days."""

from datetime import datetime

import pytest

from capture.db import db
from capture.numbers import attention, metrics
from tests.conftest import banners
from tests.metrics_data import D1, D2, OLD, add_delivery, add_event, add_lead, add_page, at


@pytest.fixture(autouse=True, params=["rollups", "tables"])
def source(request, monkeypatch):
    """Every test twice: whole-day reports from the rollups and from the rows."""
    if request.param == "tables":
        monkeypatch.setattr(metrics, "uses_rollups", lambda start, end: False)
    return request.param


def emailed(page, number: int, prefix: str, when: datetime = D1, **attribution) -> list:
    """`number` leads of `page`, each sent one email at `when`."""
    leads = []
    for index in range(number):
        lead = add_lead(page, f"{prefix}{index}@example.com", at(when, 8), "approved",
                        **attribution)
        add_delivery(lead, "01-welcome", at(when, 9))
        leads.append(lead)
    return leads


@pytest.fixture
def mailed(app, clock):
    """Page alpha: 4 google leads and 2 facebook leads emailed on D1; beta: 2 leads
    without a source emailed on D2. Bounces and complaints as the tests below count."""
    with app.app_context():
        alpha, beta = add_page("alpha", 0), add_page("beta", 0)
        google = emailed(alpha, 4, "g", utm_source="google")
        facebook = emailed(alpha, 2, "f", utm_source="facebook")
        plain = emailed(beta, 2, "p", when=D2)
        # g0: a hard bounce written twice (two emails): one lead.
        add_event(google[0], "bounce", at(D1, 10))
        add_event(google[0], "bounce", at(D1, 11))
        # g1: soft bounces only (under the limit): no bounce.
        add_event(google[1], "soft_bounce", at(D1, 10))
        # g2: a complaint.
        add_event(google[2], "complaint", at(D1, 12))
        # f0: a bounce and a complaint; f1 a complaint on D2.
        add_event(facebook[0], "bounce", at(D1, 10))
        add_event(facebook[0], "complaint", at(D1, 13))
        add_event(facebook[1], "complaint", at(D2, 9))
        # p0: a bounce before the period of the tests.
        add_event(plain[0], "bounce", at(OLD, 10))
        db.session.commit()


def report(app, **arguments) -> metrics.Report:
    with app.app_context():
        return metrics.report(**arguments)


def test_bounces_and_complaints_count_leads_with_the_event_in_the_period(app, mailed):
    total = report(app, start=D1, end=datetime(2026, 3, 3)).total
    assert (total.delivered, total.bounces, total.complaints) == (8, 2, 3)
    assert total.bounce_rate == pytest.approx(2 / 8)
    assert total.complaint_rate == pytest.approx(3 / 8)
    everything = report(app).total
    assert (everything.bounces, everything.complaints) == (3, 3)


def test_a_part_of_a_day_is_counted_from_the_events(app, mailed):
    total = report(app, start=at(D1, 10, 30), end=at(D2, 12)).total
    assert (total.bounces, total.complaints) == (1, 3)


def test_rates_are_none_without_delivered(app, clock):
    total = report(app).total
    assert (total.bounces, total.complaints, total.bounce_rate, total.complaint_rate) == (
        0, 0, None, None)


def test_grouped_by_the_leads_source_and_page(app, mailed):
    period = {"start": D1, "end": datetime(2026, 3, 3)}
    rows = report(app, by="source", **period).rows
    assert {name: (n.delivered, n.bounces, n.complaints) for name, n in rows.items()} == {
        "google": (4, 1, 1), "facebook": (2, 1, 2), "(none)": (2, 0, 0)}
    assert rows["facebook"].complaint_rate == pytest.approx(1.0)
    rows = report(app, by="page", **period).rows
    assert {name: (n.bounces, n.complaints) for name, n in rows.items()} == {
        "alpha": (2, 3), "beta": (0, 0)}
    rows = report(app, by="day", **period).rows
    assert {name: (n.bounces, n.complaints) for name, n in rows.items()} == {
        "2026-03-01": (2, 2), "2026-03-02": (0, 1)}
    with app.app_context():
        alpha = db.session.scalar(db.select(metrics.Page.id).where(metrics.Page.slug == "alpha"))
    only = report(app, page_id=alpha, by="source", **period).rows
    assert {name: n.bounces for name, n in only.items()} == {"google": 1, "facebook": 1}


def test_report_command_shows_the_rates(app, mailed):
    output = app.test_cli_runner().invoke(args=["report", "--by", "source"]).output
    header, *rows = output.splitlines()
    words = header.split()
    assert words[13:15] == ["bounce", "complaint"]
    facebook = next(row for row in rows if row.startswith("facebook"))
    assert facebook.split()[13:15] == ["50.0%", "100.0%"]


# --- the overview's warnings ------------------------------------------------------------

def sources(app, **numbers) -> None:
    """Per source: (leads emailed on D1, of them bounced, of them complained)."""
    with app.app_context():
        page = add_page("offer", 0)
        for name, (count, bounced, complained) in numbers.items():
            leads = emailed(page, count, name, utm_source=name)
            for lead in leads[:bounced]:
                add_event(lead, "bounce", at(D1, 10))
            for lead in leads[:complained]:
                add_event(lead, "complaint", at(D1, 11))
        db.session.commit()


def warnings(app) -> dict:
    with app.app_context():
        return {kind: check() for kind, check in (
            ("bounce", attention.high_bounce_rate),
            ("complaint", attention.high_complaint_rate))}


def test_no_warning_under_the_limits(app, clock):
    sources(app, google=(100, 1, 0))
    assert warnings(app) == {"bounce": None, "complaint": None}


def test_no_warning_under_100_leads_delivered(app, clock):
    sources(app, google=(99, 10, 10))
    assert warnings(app) == {"bounce": None, "complaint": None}


def test_bounce_warning_at_2_percent_names_the_worst_source(app, clock):
    # tiny's 30 % is left out: under 20 leads delivered.
    sources(app, google=(60, 1, 0), facebook=(30, 2, 0), tiny=(10, 3, 0))
    found = warnings(app)
    assert found["complaint"] is None
    warning = found["bounce"]
    assert warning.kind == "high_bounce_rate"
    assert warning.message.startswith(
        "Your bounce rate over the last 30 days is 6.00 % (6 of 100 leads delivered), at "
        "or above the 2 % at which mailbox providers start sending your emails to spam. "
        "The worst source is facebook: 6.67 % (2 of 30 leads delivered).")
    assert (warning.count, warning.endpoint) == (6, "admin.sources")
    assert warning.params == {"period": "30d", "sort": "bounce_rate", "dir": "desc"}


def test_bounce_warning_starts_exactly_at_2_percent(app, clock):
    sources(app, google=(100, 2, 0))
    assert warnings(app)["bounce"] is not None


def test_complaint_warning_at_0_1_percent(app, clock):
    sources(app, google=(80, 0, 0), facebook=(25, 0, 1))
    warning = warnings(app)["complaint"]
    assert warning.kind == "high_complaint_rate"
    assert warning.message.startswith(
        "Your complaint rate over the last 30 days is 0.95 % (1 of 105 leads delivered), at "
        "or above the 0.1 % at which mailbox providers start sending your emails to spam. "
        "The worst source is facebook: 4.00 % (1 of 25 leads delivered).")
    assert warning.params["sort"] == "complaint_rate"


def test_complaint_warning_below_0_1_percent_is_quiet(app, clock, monkeypatch):
    # As 1 of 1,001 against 1 per 1,000, with a limit raised to keep the data small:
    # 1 of 100 is under 1 per 99, and at 1 per 100.
    monkeypatch.setattr(attention, "COMPLAINT_LIMIT", (1, 99))
    sources(app, google=(100, 0, 1))
    assert warnings(app)["complaint"] is None
    monkeypatch.setattr(attention, "COMPLAINT_LIMIT", (1, 100))
    assert warnings(app)["complaint"] is not None


def test_warnings_show_on_the_overview(app, owner, clock):
    sources(app, google=(100, 3, 1))
    found = banners(owner.get("/admin/").get_data(as_text=True))
    assert "bounce rate over the last 30 days is 3.00 %" in found["high_bounce_rate"]
    assert "complaint rate" in found["high_complaint_rate"]
    assert "sort=bounce_rate" in owner.get("/admin/").get_data(as_text=True)
