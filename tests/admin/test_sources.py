"""The sources page: numbers per utm_source, utm_campaign and ref, equal to
capture.numbers.metrics.report(by=…), for each period, sortable by any column.

The seeded data set is the one of tests/test_metrics.py (clock at 2026-03-02 10:00).
"""

from datetime import timedelta
from html.parser import HTMLParser

import pytest

from capture.numbers import metrics, ordering, periods
from capture.db import db
from capture.models import Lead, Page, Visit
from tests.admin.conftest import PERIODS, shown
from tests.conftest import optin
from tests.metrics_data import seed

COLUMNS = {
    "visitors": "count", "leads": "count", "conversion_rate": "percent",
    "approval_rate": "percent", "payout": "money", "upgrade_revenue": "money",
    "revenue": "money", "earnings_per_visitor": "money",
    "bounce_rate": "percent", "complaint_rate": "percent",
}


class Table(HTMLParser):
    """The body rows (data-key -> {column: text}, in order) and the total row."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, str]] = {}
        self.total: dict[str, str] = {}
        self._row: dict[str, str] | None = None
        self._column: str | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "data-key" in attrs:
            self._row = self.rows.setdefault(attrs["data-key"], {})
        elif tag == "tr" and attrs.get("class") == "total":
            self._row = self.total
        elif tag == "td" and self._row is not None and attrs.get("data-col") in COLUMNS:
            self._column = attrs["data-col"]
            self._row[self._column] = ""

    def handle_endtag(self, tag):
        if tag == "td":
            self._column = None
        elif tag == "tr":
            self._row = None

    def handle_data(self, data):
        if self._column is not None:
            self._row[self._column] += data


def table(client, query: str = "") -> Table:
    response = client.get(f"/admin/sources{query}")
    assert response.status_code == 200
    return Table(response.get_data(as_text=True))


def as_shown(numbers: metrics.Numbers) -> dict[str, str]:
    return {name: shown(kind, getattr(numbers, name)) for name, kind in COLUMNS.items()}


@pytest.fixture
def seeded(app, clock):
    return seed(app)


# --- access ---------------------------------------------------------------------------

def test_sources_redirects_an_anonymous_visitor_to_login(client):
    response = client.get("/admin/sources?by=ref")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login")


def test_sources_renders_for_the_owner_with_an_empty_state(owner, clock):
    html = owner.get("/admin/sources").get_data(as_text=True)
    assert "<h1>Sources</h1>" in html
    assert "No traffic in this period yet." in html
    assert "utm_source=newsletter" in html
    assert "<table" not in html
    assert '<link rel="stylesheet" href="/static/admin/overview.css">' in html


# --- the numbers ----------------------------------------------------------------------

@pytest.mark.parametrize("period", PERIODS)
@pytest.mark.parametrize("by", ["source", "campaign", "ref"])
def test_rows_and_total_equal_the_metrics_report(app, owner, seeded, by, period):
    shown_table = table(owner, f"?by={by}&period={period}")
    with app.app_context():
        chosen = periods.period(period)
        report = metrics.report(start=chosen.start, end=chosen.end, by=by)
    assert report.rows, "the data set has traffic in every period"
    assert shown_table.rows == {key: as_shown(numbers) for key, numbers in report.rows.items()}
    assert shown_table.total == as_shown(report.total)


def test_the_hand_counted_sources_of_the_last_7_days(owner, seeded):
    rows = table(owner, "?by=source&period=7d").rows
    assert list(rows) == ["google", "(none)", "facebook", "newsletter"]
    # google: visitors c1 c4 c6 c7; leads L1 L4 L6; L1 (2.50) and L4 (4.00) approved;
    # L1's upgrades 10.00 + 5.25; L1 and L4 emailed, neither bounced nor complained.
    assert rows["google"] == {
        "visitors": "4", "leads": "3", "conversion_rate": "75.0%", "approval_rate": "66.7%",
        "payout": "6.50", "upgrade_revenue": "15.25", "revenue": "21.75",
        "earnings_per_visitor": "5.44", "bounce_rate": "0.0%", "complaint_rate": "0.0%",
    }
    # Direct traffic: c3 and L3 (pending, so no approval rate yet).
    assert rows["(none)"]["visitors"] == "1"
    assert rows["(none)"]["approval_rate"] == "-"


def test_none_row_is_labelled_as_direct_traffic(owner, seeded):
    html = owner.get("/admin/sources?by=ref&period=all").get_data(as_text=True)
    assert '<tr data-key="(none)">' in html
    assert '(none)<span class="hint">direct</span>' in html
    assert "traffic without a ref" in html
    assert list(table(owner, "?by=ref&period=all&sort=name").rows) == ["(none)", "partner7"]


def test_tabs_and_period_selector_keep_the_other_choices(owner, seeded):
    html = owner.get("/admin/sources?by=campaign&period=7d&sort=leads&dir=asc"
                     ).get_data(as_text=True)
    assert ('href="/admin/sources?by=ref&amp;period=7d&amp;sort=leads&amp;dir=asc">'
            "Referrers</a>") in html
    assert ('href="/admin/sources?period=all&amp;by=campaign&amp;sort=leads&amp;dir=asc">'
            "All time</a>") in html
    assert ('<a href="/admin/sources?by=campaign&amp;period=7d&amp;sort=leads&amp;dir=asc" '
            'class="active" aria-current="page">Campaigns</a>') in html


def test_unknown_choices_fall_back_to_the_defaults(owner, seeded):
    default = table(owner, "?by=source&period=30d&sort=visitors&dir=desc")
    odd = table(owner, "?by=drop%20table&period=forever&sort=visitors;--&dir=sideways")
    assert list(odd.rows) == list(default.rows)
    assert odd.rows == default.rows


# --- sorting ----------------------------------------------------------------------------

@pytest.mark.parametrize("column", ordering.SORT_COLUMNS)
@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_every_column_sorts_like_the_metrics_rows(app, owner, seeded, column, direction):
    shown_order = list(table(owner, f"?by=source&period=all&sort={column}&dir={direction}").rows)
    with app.app_context():
        report = metrics.report(by="source")
    expected = ordering.sorted_rows(report.rows, column, descending=direction == "desc")
    assert shown_order == [key for key, _ in expected]
    if column != "name":
        values = [getattr(numbers, column) for _, numbers in expected]
        defined = [value for value in values if value is not None]
        assert defined == sorted(defined, reverse=direction == "desc")
        assert values[len(defined):] == [None] * (len(values) - len(defined))


def test_sorting_by_name_and_by_numbers(owner, seeded):
    query = "?by=source&period=7d"
    assert list(table(owner, query + "&sort=name&dir=asc").rows) == [
        "(none)", "facebook", "google", "newsletter"]
    assert list(table(owner, query + "&sort=name&dir=desc").rows) == [
        "newsletter", "google", "facebook", "(none)"]
    assert list(table(owner, query + "&sort=revenue&dir=desc").rows) == [
        "google", "newsletter", "(none)", "facebook"]
    assert list(table(owner, query + "&sort=revenue&dir=asc").rows) == [
        "(none)", "facebook", "newsletter", "google"]
    # A rate without a denominator ("-") goes last both ways.
    assert list(table(owner, query + "&sort=approval_rate&dir=desc").rows) == [
        "newsletter", "google", "facebook", "(none)"]
    assert list(table(owner, query + "&sort=approval_rate&dir=asc").rows) == [
        "facebook", "google", "newsletter", "(none)"]


def test_headings_link_to_the_other_direction_and_mark_the_sorted_column(owner, seeded):
    html = owner.get("/admin/sources?by=source&period=7d&sort=leads&dir=desc"
                     ).get_data(as_text=True)
    assert '<th class="num" aria-sort="descending" data-col="leads">' in html
    assert 'href="/admin/sources?by=source&amp;period=7d&amp;sort=leads&amp;dir=asc"' in html
    # Other columns start with their natural direction: names A-Z, numbers biggest first.
    assert 'href="/admin/sources?by=source&amp;period=7d&amp;sort=name&amp;dir=asc"' in html
    assert 'href="/admin/sources?by=source&amp;period=7d&amp;sort=revenue&amp;dir=desc"' in html
    assert html.count("aria-sort=") == 1


def test_sorted_rows_refuses_an_unknown_column():
    with pytest.raises(ValueError):
        ordering.sorted_rows({}, "payout; drop table leads")


# --- escaping -----------------------------------------------------------------------------

def test_attribution_values_with_html_are_shown_escaped(app, owner, make_page, clock):
    make_page(slug="guide", double_opt_in=False)
    visitor = app.test_client()
    response = optin(visitor, "guide",
                     query="?utm_source=%3Cscript%3Ealert(1)%3C/script%3E"
                           "&utm_campaign=%22%3E%3Cimg%20src=x%20onerror=alert(2)%3E"
                           "&ref=%3Cb%3Epartner%3C/b%3E",
                     email="eve@example.com", name="<script>alert(3)</script>")
    assert response.status_code == 303
    for by in ("source", "campaign", "ref"):
        html = owner.get(f"/admin/sources?by={by}&period=today").get_data(as_text=True)
        assert "<script>alert" not in html
        assert "<img src=x" not in html
        assert "<b>partner" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in owner.get(
        "/admin/sources?by=source").get_data(as_text=True)
    assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in owner.get(
        "/admin/sources?by=campaign").get_data(as_text=True)
    rows = table(owner, "?by=ref").rows
    assert rows["<b>partner</b>"]["leads"] == "1"


def test_traffic_older_than_the_period_is_left_out(app, owner, clock):
    with app.app_context():
        page = Page(slug="old", title="Old")
        db.session.add(page)
        db.session.flush()
        db.session.add(Visit(page_id=page.id, visitor_id="v1", utm_source="forum",
                             created_at=clock.now - timedelta(days=10)))
        db.session.add(Lead(email="old@example.com", public_ref="old1", page_id=page.id,
                            utm_source="forum", created_at=clock.now - timedelta(days=10)))
        db.session.commit()
    assert "No traffic in this period yet." in owner.get(
        "/admin/sources?period=7d").get_data(as_text=True)
    assert table(owner, "?period=30d").rows["forum"]["leads"] == "1"
