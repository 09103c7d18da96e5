"""The overview page: the period's numbers (equal to capture.numbers.metrics), the SVG chart,
and the warning banners that appear exactly when their condition holds.

The seeded data set is the one of tests/test_metrics.py (clock at 2026-03-02 10:00):
days 2026-03-01 and 2026-03-02, plus older rows on 2026-02-01.
"""

import re
from datetime import date, datetime, timedelta
from html.parser import HTMLParser

import pytest
from sqlalchemy import select

from capture.numbers import metrics, periods
from capture.db import db
from capture.models import Delivery, Lead, Page, Visit
from tests.admin.conftest import PERIODS, shown
from tests.conftest import banners, owner_client
from tests.factories import add_lead as add_enrolled_lead
from tests.factories import three_steps, tick, write_step
from tests.metrics_data import seed

CARDS = {
    "visitors": "count", "leads": "count", "imported": "count", "conversion_rate": "percent",
    "approval_rate": "percent", "confirmed": "count", "revenue": "money",
    "payout": "money", "upgrades": "count", "profit": "money",
    "earnings_per_visitor": "money",
    "open_rate": "percent", "click_rate": "percent", "unsubscribes": "count",
    "bounce_rate": "percent", "complaint_rate": "percent",
}


# --- reading the page ---------------------------------------------------------------

class Cards(HTMLParser):
    """The value (<strong>) of each card, by its data-metric."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self._metric = None
        self._in_value = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "data-metric" in attrs:
            self._metric = attrs["data-metric"]
        elif tag == "strong" and self._metric:
            self._in_value = True
            self.values[self._metric] = ""

    def handle_endtag(self, tag):
        if tag == "strong" and self._in_value:
            self._in_value, self._metric = False, None

    def handle_data(self, data):
        if self._in_value:
            self.values[self._metric] += data


def cards(html: str) -> dict[str, str]:
    return Cards(html).values


def chart_svg(html: str) -> str | None:
    match = re.search(r'<svg class="chart".*?</svg>', html, re.S)
    return match.group(0) if match else None


def polyline_points(svg: str, series: str) -> list[tuple[float, float]]:
    points = re.search(rf'<polyline class="line {series}" points="([^"]*)"', svg).group(1)
    return [tuple(map(float, pair.split(","))) for pair in points.split()]


@pytest.fixture
def seeded(app, clock):
    return seed(app)


# --- access ---------------------------------------------------------------------------

def test_overview_redirects_an_anonymous_visitor_to_login(client):
    response = client.get("/admin/?period=7d")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login")


def test_overview_renders_for_the_owner_with_a_clear_empty_state(owner, clock):
    response = owner.get("/admin/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<h1>Overview</h1>" in html
    assert chart_svg(html) is None
    assert "No visits or leads in this period yet." in html
    values = cards(html)
    assert set(values) == set(CARDS)
    assert values["visitors"] == "0"
    assert values["conversion_rate"] == values["approval_rate"] == "-"
    assert values["open_rate"] == values["earnings_per_visitor"] == "-"
    assert values["revenue"] == "0.00"


def test_overview_links_the_css_from_static_and_no_cdn(owner, clock):
    html = owner.get("/admin/").get_data(as_text=True)
    assert '<link rel="stylesheet" href="/static/admin/overview.css">' in html
    assert "<script" not in html
    assert not re.search(r'(src|href)="(https?:)?//', html)
    with owner.get("/static/admin/overview.css") as stylesheet:
        assert stylesheet.status_code == 200


# --- the numbers ----------------------------------------------------------------------

@pytest.mark.parametrize("period", PERIODS)
def test_cards_show_the_metrics_modules_numbers_for_each_period(app, owner, seeded, period):
    html = owner.get(f"/admin/?period={period}").get_data(as_text=True)
    with app.app_context():
        chosen = periods.period(period)
        expected = metrics.report(start=chosen.start, end=chosen.end).total
    assert cards(html) == {name: shown(kind, getattr(expected, name))
                           for name, kind in CARDS.items()}
    # The sub-lines carry the raw counts behind the rates.
    assert (f"{expected.opened} of {expected.delivered} leads emailed · "
            f"{expected.opens_raw} opens in all") in html
    assert f"{expected.clicks_raw} clicks in all" in html
    assert (f"payout {shown('money', expected.payout)} + upgrades "
            f"{shown('money', expected.upgrade_revenue)}") in html


def test_imported_leads_show_apart_and_leave_conversion_alone(app, owner, seeded, tmp_path):
    before = cards(owner.get("/admin/?period=7d").get_data(as_text=True))
    path = tmp_path / "list.csv"
    path.write_text("email,consent\nx@example.com,yes\ny@example.com,yes\nz@example.com,no\n")
    result = app.test_cli_runner().invoke(args=["leads", "import", str(path), "--page", "alpha"])
    assert result.exit_code == 0, result.output

    html = owner.get("/admin/?period=7d").get_data(as_text=True)
    after = cards(html)

    assert (after["leads"], after["conversion_rate"]) == (before["leads"],
                                                          before["conversion_rate"])
    assert (before["imported"], after["imported"]) == ("0", "3")
    assert after["earnings_per_visitor"] == before["earnings_per_visitor"]
    assert after["payout"] != before["payout"]  # two approved at alpha's payout
    pages = owner.get("/admin/pages").get_data(as_text=True)
    assert re.search(r'<tr data-page="alpha">.*?data-metric="leads">4</td>\s*'
                     r'<td class="num" data-metric="imported">3</td>', pages, re.S)


@pytest.mark.parametrize(("period", "visitors", "leads", "revenue"), [
    ("today", "5", "4", "30.75"),   # D2: c1 c3 c4 c5 c7; L3-L6; L4 L5 payout + upgrades
    ("7d", "7", "6", "33.25"),      # D1 and D2
    ("30d", "8", "7", "135.75"),    # 2026-02-01 is the 30th day back
    ("all", "8", "7", "135.75"),
])
def test_each_period_counts_its_own_days(owner, seeded, period, visitors, leads, revenue):
    values = cards(owner.get(f"/admin/?period={period}").get_data(as_text=True))
    assert (values["visitors"], values["leads"], values["revenue"]) == (visitors, leads, revenue)


def test_default_period_is_30_days_and_unknown_periods_fall_back_to_it(owner, seeded):
    default = owner.get("/admin/").get_data(as_text=True)
    assert 'href="/admin/?period=30d" class="active" aria-current="page"' in default
    assert cards(default) == cards(owner.get("/admin/?period=30d").get_data(as_text=True))
    assert cards(owner.get("/admin/?period=<script>").get_data(as_text=True)) == cards(default)
    assert "Last 30 days: Feb 1, 2026 – Mar 2, 2026" in default


def test_periods_are_whole_utc_days_ending_today(app, clock):
    with app.app_context():
        today = periods.period("today")
        week = periods.period("7d")
        everything = periods.period("all")
    assert (today.start, today.end) == (datetime(2026, 3, 2), datetime(2026, 3, 3))
    assert (week.start, week.end) == (datetime(2026, 2, 24), datetime(2026, 3, 3))
    assert (week.first_day, week.last_day) == (date(2026, 2, 24), date(2026, 3, 2))
    assert (everything.start, everything.end) == (None, None)
    assert periods.period("nonsense", now=clock.now).key == periods.DEFAULT_PERIOD


# --- the chart --------------------------------------------------------------------------

@pytest.mark.parametrize(("period", "days"), [("today", 1), ("7d", 7), ("30d", 30),
                                              ("all", 30)])
def test_chart_has_one_point_and_one_bar_per_day(owner, seeded, period, days):
    svg = chart_svg(owner.get(f"/admin/?period={period}").get_data(as_text=True))
    assert svg is not None
    assert f'data-days="{days}"' in svg
    assert len(polyline_points(svg, "visitors")) == days
    assert len(polyline_points(svg, "leads")) == days
    assert svg.count('<rect class="bar revenue"') == days
    assert svg.count('<circle class="point visitors"') == days
    assert svg.count('<circle class="point leads"') == days


def test_chart_is_accessible_with_title_description_axes_and_legend(owner, seeded):
    svg = chart_svg(owner.get("/admin/?period=7d").get_data(as_text=True))
    assert 'role="img" aria-labelledby="chart-title chart-desc"' in svg
    assert '<title id="chart-title">Visitors, leads and revenue per day</title>' in svg
    assert re.search(r'<desc id="chart-desc">Feb 24, 2026 to Mar 2, 2026 \(UTC\): '
                     r"7 visitors, 6 leads and revenue of 33.25 USD\.", svg)
    for legend in ("Visitors", "Leads", "Revenue USD"):
        assert f">{legend}</text>" in svg
    assert ">Visitors and leads</text>" in svg and ">Revenue</text>" in svg
    assert ">Feb 24</text>" in svg and ">Mar 2</text>" in svg
    assert "<title>Mar 2: visitors 5</title>" in svg
    assert "<title>Mar 2: revenue 30.75 USD</title>" in svg


def test_chart_draws_the_days_of_metrics_daily(app, owner, seeded):
    html = owner.get("/admin/?period=7d").get_data(as_text=True)
    svg = chart_svg(html)
    with app.app_context():
        chosen = periods.period("7d")
        days = periods.daily(start=chosen.start, end=chosen.end)
    assert [day for day, _ in days] == [date(2026, 2, 24) + timedelta(days=n) for n in range(7)]
    # The day table under the chart lists each active day's numbers.
    table = re.findall(r'<tr data-day="([\d-]+)"><td>[\d-]+</td><td class="num">([^<]*)</td>'
                       r'<td class="num">([^<]*)</td><td class="num">([^<]*)</td></tr>', html)
    assert table == [(day.isoformat(), str(n.visitors), str(n.leads), shown("money", n.revenue))
                     for day, n in days if n.visitors or n.leads or n.revenue]
    assert [row[0] for row in table] == ["2026-03-01", "2026-03-02"]
    # The highest day sits on top of its axis; quiet days on the baseline.
    visitors = polyline_points(svg, "visitors")
    heights = [y for _, y in visitors]
    assert heights[-1] == min(heights)  # Mar 2 has the most visitors (5)
    assert len(set(heights[:5])) == 1   # Feb 24-28: nobody
    xs = [x for x, _ in visitors]
    assert xs == sorted(xs)


def test_daily_series_agrees_with_the_grouped_report(app, seeded):
    with app.app_context():
        by_day = metrics.report(start=datetime(2026, 2, 1), end=datetime(2026, 3, 3),
                                by="day")
        days = dict(periods.daily(start=datetime(2026, 2, 1), end=datetime(2026, 3, 3)))
        everything = periods.daily()
    assert len(days) == 30
    for key, numbers in by_day.rows.items():
        assert days[date.fromisoformat(key)] == numbers
    assert days[date(2026, 2, 15)] == metrics.Numbers()
    # Without bounds: from the first day with activity to today.
    assert (everything[0][0], everything[-1][0]) == (date(2026, 2, 1), date(2026, 3, 2))


def test_a_long_period_keeps_the_chart_readable(app, owner, clock):
    with app.app_context():
        page = Page(slug="long", title="Long")
        db.session.add(page)
        db.session.flush()
        for offset in range(0, 400, 9):
            db.session.add(Visit(page_id=page.id, visitor_id=f"v{offset}",
                                 created_at=clock.now - timedelta(days=offset)))
        db.session.commit()
    svg = chart_svg(owner.get("/admin/?period=all").get_data(as_text=True))
    days = (date(2026, 3, 2) - (date(2026, 3, 2) - timedelta(days=396))).days + 1
    assert f'data-days="{days}"' in svg
    assert len(polyline_points(svg, "visitors")) == days
    assert svg.count('<rect class="bar revenue"') == days
    assert "<circle" not in svg  # markers only while they stay readable
    labels = re.findall(r'<text x="[\d.]+" y="\d+" text-anchor="middle">([^<]*)</text>', svg)
    assert 2 <= len(labels) <= 8
    assert all(re.fullmatch(r"[A-Z][a-z]{2} \d{4}", label) for label in labels)


def test_axis_ticks_are_round_numbers_covering_the_maximum(app):
    from capture.admin.overview import nice_axis

    assert [label for _, _, label in nice_axis(5, whole=True, top=0, height=100).ticks] == [
        "0", "2", "4", "6"]
    assert [label for _, _, label in nice_axis(0, whole=True, top=0, height=100).ticks] == [
        "0", "1"]
    money = nice_axis(23.25, whole=False, top=0, height=100)
    assert [label for _, _, label in money.ticks] == ["0", "10", "20", "30"]
    assert money.ticks[0][1] == 100 and money.ticks[-1][1] == 0
    assert [label for _, _, label in nice_axis(0.3, whole=False, top=0, height=1).ticks] == [
        "0", "0.10", "0.20", "0.30"]


# --- warnings -----------------------------------------------------------------------------

def test_no_banner_when_nothing_needs_the_owner(make_app, clock):
    app = make_app(POSTAL_ADDRESS="1 Main St, Springfield")
    html = owner_client(app).get("/admin/").get_data(as_text=True)
    assert banners(html) == {}
    assert 'class="banner' not in html


def test_missing_postal_address_shows_a_banner(owner, clock):
    found = banners(owner.get("/admin/").get_data(as_text=True))
    assert list(found) == ["postal_address"]
    assert "set CAPTURE_POSTAL_ADDRESS" in found["postal_address"]


def test_sequence_problems_show_their_count_and_link(make_app, tmp_path, clock):
    folder = tmp_path / "sequences"
    write_step(folder / "welcome", "01-hello.md", "Hello", "Hi {{ lead.name }}", delay="0")
    app = make_app(POSTAL_ADDRESS="1 Main St", SEQUENCES_DIR=str(folder))
    client = owner_client(app)
    assert banners(client.get("/admin/").get_data(as_text=True)) == {}

    write_step(folder / "welcome", "02-broken.md", "Broken", "Hi {{ lead.password }}",
               delay="soon")
    (folder / "launch").mkdir()
    (folder / "launch" / "01-start.md").write_text("no front matter here\n", encoding="utf-8")
    html = client.get("/admin/").get_data(as_text=True)
    found = banners(html)
    assert list(found) == ["sequence_problems"]
    with app.app_context():
        from capture.mail.library import Library

        count = sum(len(s.all_problems()) for s in Library.current().all())
    assert count >= 3
    assert found["sequence_problems"].startswith(
        f"{count} problems in your sequence files (launch, welcome)")
    if "admin.sequences" in app.view_functions:
        assert 'href="/admin/sequences">See the problems' in html


def add_delivery(app, status: str, error: str = "", claimed_at=None, sent_at=None,
                 email=None) -> None:
    with app.app_context():
        page = db.session.scalar(select(Page).where(Page.slug == "mail"))
        if page is None:
            page = Page(slug="mail", title="Mail")
            db.session.add(page)
            db.session.flush()
        number = db.session.query(Lead).count()
        lead = Lead(email=email or f"d{number}@example.com", public_ref=f"r{number}",
                    page_id=page.id, review="approved", subscription="subscribed")
        db.session.add(lead)
        db.session.flush()
        db.session.add(Delivery(lead_id=lead.id, sequence="welcome", step="hello",
                                filename="01-hello.md", status=status, error=error,
                                claimed_at=claimed_at, sent_at=sent_at, attempts=1))
        db.session.commit()


def test_unknown_deliveries_show_their_count_and_link(make_app, clock):
    app = make_app(POSTAL_ADDRESS="1 Main St")
    client = owner_client(app)
    add_delivery(app, "failed", "SMTP 554: b'no'", claimed_at=clock.now)
    add_delivery(app, "sent", sent_at=clock.now)
    assert banners(client.get("/admin/").get_data(as_text=True)) == {}

    add_delivery(app, "unknown", "no outcome recorded", claimed_at=clock.now)
    add_delivery(app, "unknown", "no outcome recorded", claimed_at=clock.now)
    html = client.get("/admin/").get_data(as_text=True)
    found = banners(html)
    assert list(found) == ["unknown_deliveries"]
    assert found["unknown_deliveries"].startswith("2 emails are in state unknown")
    assert "resend on purpose" in found["unknown_deliveries"]
    if "admin.deliveries" in app.view_functions:
        assert 'href="/admin/deliveries">Review deliveries' in html


@pytest.mark.parametrize(("refusal", "reply", "shown_code"), [
    ("mail_reply", "530 5.7.0 Authentication required", "530"),
    ("rcpt_reply", "554 5.7.1 Relay access denied", "554"),
])
def test_smtp_failing_shows_until_an_email_goes_out_again(smtp_app, smtp, clock, refusal,
                                                          reply, shown_code):
    client = owner_client(smtp_app)
    three_steps(smtp_app)
    add_enrolled_lead(smtp_app)
    setattr(smtp, refusal, reply)
    tick(smtp_app)
    with smtp_app.app_context():
        assert db.session.scalar(select(Delivery.status)) == "retry"
    found = banners(client.get("/admin/").get_data(as_text=True))
    assert list(found) == ["smtp_failing"]
    assert found["smtp_failing"].startswith("Emails are not going out")
    assert shown_code in found["smtp_failing"]
    assert "check the CAPTURE_SMTP_* settings" in found["smtp_failing"]
    assert "1 waiting email is retried automatically" in found["smtp_failing"]

    setattr(smtp, refusal, None)
    clock.advance(minutes=5)
    tick(smtp_app)
    with smtp_app.app_context():
        assert db.session.scalar(select(Delivery.status)) == "sent"
    assert banners(client.get("/admin/").get_data(as_text=True)) == {}


def test_smtp_connection_refused_counts_as_failing(make_app, tmp_path, clock):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder = tmp_path / "sequences"
    folder.mkdir()
    app = make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=port,
                   SEQUENCES_DIR=str(folder), POSTAL_ADDRESS="1 Main St")
    client = owner_client(app)
    three_steps(app)
    add_enrolled_lead(app)
    tick(app)
    found = banners(client.get("/admin/").get_data(as_text=True))
    assert list(found) == ["smtp_failing"]
    assert "SMTP connection" in found["smtp_failing"]


def test_old_or_per_recipient_failures_are_not_smtp_failing(make_app, clock):
    app = make_app(POSTAL_ADDRESS="1 Main St")
    client = owner_client(app)
    # A bounce is the address's problem, not the server's.
    add_delivery(app, "failed", "recipient refused: SMTP 550 5.1.1 no such user",
                 claimed_at=clock.now)
    # Greylisting of one recipient is retried, but the server works.
    add_delivery(app, "retry", "recipient refused: SMTP 450 4.2.0 greylisted",
                 claimed_at=clock.now)
    # A server failure of two days ago is history.
    add_delivery(app, "failed", "gave up retrying: SMTP connection: timed out",
                 claimed_at=clock.now - timedelta(days=2))
    assert banners(client.get("/admin/").get_data(as_text=True)) == {}

    add_delivery(app, "retry", "recipient refused: SMTP 554 5.7.1 relay access denied",
                 claimed_at=clock.now - timedelta(hours=1))
    assert list(banners(client.get("/admin/").get_data(as_text=True))) == ["smtp_failing"]
    # A later successful send means the server works again.
    add_delivery(app, "sent", sent_at=clock.now - timedelta(minutes=30))
    assert banners(client.get("/admin/").get_data(as_text=True)) == {}


def test_every_warning_at_once_is_shown_most_urgent_first(make_app, tmp_path, clock):
    folder = tmp_path / "sequences"
    write_step(folder / "welcome", "01-hello.md", "Hello", "Hi", delay="whenever")
    app = make_app(SEQUENCES_DIR=str(folder))
    client = owner_client(app)
    add_delivery(app, "unknown", "no outcome recorded", claimed_at=clock.now)
    add_delivery(app, "retry", "SMTP connection: [Errno 111] Connection refused",
                 claimed_at=clock.now)
    found = banners(client.get("/admin/").get_data(as_text=True))
    assert list(found) == ["postal_address", "smtp_failing", "unknown_deliveries",
                           "sequence_problems"]
    assert found["sequence_problems"].startswith("1 problem in your sequence files (welcome)")
    assert found["unknown_deliveries"].startswith("1 email is in state unknown")


def test_error_text_in_a_banner_is_escaped(make_app, clock):
    app = make_app(POSTAL_ADDRESS="1 Main St")
    client = owner_client(app)
    add_delivery(app, "retry", "SMTP connection: <script>alert(1)</script>",
                 claimed_at=clock.now)
    html = client.get("/admin/").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_spend_shows_as_profit_in_the_cards_and_the_chart_and_a_losing_source_warns(
        app, owner, clock):
    from datetime import date
    from decimal import Decimal

    from capture.models import Cost
    from tests.conftest import create_page, optin

    create_page(app, slug="guide", double_opt_in=False, payout="2.00")
    optin(app.test_client(), "guide", query="?utm_source=ads", email="ann@example.com")
    with app.app_context():
        db.session.add(Cost(day=date(2026, 3, 2), source="ads", campaign="",
                            amount=Decimal("10.00"), currency="USD"))
        db.session.commit()
    html = owner.get("/admin/?period=7d").get_data(as_text=True)
    assert cards(html)["profit"] == "-8.00"
    assert "ROI -80.0%" in html
    svg = chart_svg(html)
    assert 'class="bar spend"' in svg and "ad spend 10.00, profit -8.00" in svg
    assert ("This source loses money over the last 30 days: ads (10.00 per approved lead, "
            "2.00 earned per approved lead). Lower their bids or stop them.") in html
    sources = owner.get("/admin/sources?period=7d").get_data(as_text=True)
    assert 'class="loses-money"' in sources
