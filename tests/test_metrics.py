"""The metrics (`capture.numbers.metrics.report`) and `flask report`, against numbers worked
out by hand from a small data set inserted row by row.

The data set (see `seed` in tests/metrics_data.py): two pages, alpha (payout 2.50)
and beta (payout 4.00); two days in the period, D1 = 2026-03-01 and D2 = 2026-03-02
(the clock stands at D2 10:00); and one older day, 2026-02-01, that the period leaves
out.

    visits (cookie, page, day, source, campaign, ref)
      c1 alpha D1 google spring      (three views: D1 twice, D2 once)
      c2 alpha D1 facebook spring
      c3 alpha D2 -      -      partner7
      c6 alpha D1 google spring
      bot1 alpha D1 google spring    (is_bot)
      c4 beta D2 google summer
      c5 beta D2 newsletter - partner7
      c1 beta D2 google summer       (the same cookie on the other page)
      c7 beta D2 google summer
      bot2 beta D2 google summer     (is_bot)
      c9 alpha Feb google spring     (older)

    leads (page, day, source, campaign, ref, review, confirmed)
      L1 alpha D1 google spring -        approved  yes
      L2 alpha D1 facebook spring -      rejected  no
      L3 alpha D2 -  -  partner7         pending   yes
      L4 beta D2 google summer -         approved  yes
      L5 beta D2 newsletter - partner7   approved  yes
      L6 beta D2 google summer -         rejected  no
      L0 alpha Feb google spring -       approved  yes   (older)

    deliveries sent: L1 D1 and D2, L4 D2, L5 D2; L0 Feb
    opens:  L1 one machine + three human (D1, D1, D2); L4 one machine only (D2);
            L5 one human (D2); L0 one human (Feb)
    clicks: L1 one machine + one human (D1); L4 one machine (D2)
    unsubscribes: L1 once (D2), L5 twice (D2)
    duplicates: on L1 at beta D2 from facebook/retarget; on L4 at beta D2 with no
                attribution; on L0 at alpha Feb from google
    upgrades: L1 10.00 and 5.25 (D2), L5 7.50 (D2), L0 100.00 (Feb)
"""

from decimal import Decimal

import pytest

from capture.numbers import metrics
from capture.db import db
from tests.metrics_data import (
    ALPHA,
    BETA,
    D1,
    D2,
    END,
    OLD,
    START,
    add_delivery,
    add_event,
    add_lead,
    add_page,
    add_upgrade,
    add_visit,
    at,
    seed,
)

@pytest.fixture(autouse=True, params=["rollups", "tables"])
def source(request, monkeypatch):
    """Every test twice: whole-day periods read from the rollups (capture.numbers.rollups),
    and everything aggregated from the rows, which must agree number for number."""
    if request.param == "tables":
        monkeypatch.setattr(metrics, "uses_rollups", lambda start, end: False)
    return request.param


@pytest.fixture
def pages(app, clock):
    return seed(app)


def run_report(app, **arguments) -> metrics.Report:
    with app.app_context():
        return metrics.report(**arguments)


# --- the expected numbers -----------------------------------------------------------

COUNTS = ("visitors", "leads", "duplicates", "approved", "rejected", "pending", "confirmed",
          "delivered", "opened", "clicked", "opens_raw", "clicks_raw", "unsubscribes",
          "upgrades")


def expect(numbers: metrics.Numbers, *, payout=Decimal(0), upgrade_revenue=Decimal(0),
           **counts) -> None:
    """Check the counts (those not given must be 0), then every derived number against
    the spec's formula applied to the hand-counted values."""
    unknown = set(counts) - set(COUNTS)
    assert not unknown, unknown
    wanted = {name: counts.get(name, 0) for name in COUNTS}
    assert {name: getattr(numbers, name) for name in COUNTS} == wanted
    assert numbers.payout == payout
    assert numbers.upgrade_revenue == upgrade_revenue

    visitors, leads = wanted["visitors"], wanted["leads"]
    approved, rejected = wanted["approved"], wanted["rejected"]
    delivered = wanted["delivered"]
    revenue = payout + upgrade_revenue
    assert numbers.revenue == revenue
    assert numbers.conversion_rate == (pytest.approx(leads / visitors) if visitors else None)
    decided = approved + rejected
    assert numbers.approval_rate == (pytest.approx(approved / decided) if decided else None)
    assert numbers.open_rate == (
        pytest.approx(wanted["opened"] / delivered) if delivered else None)
    assert numbers.click_rate == (
        pytest.approx(wanted["clicked"] / delivered) if delivered else None)
    assert numbers.earnings_per_visitor == (
        (revenue / visitors).quantize(Decimal("0.0001")) if visitors else None)


def money(value: str) -> Decimal:
    return Decimal(value)


# --- totals --------------------------------------------------------------------------

def test_totals_for_the_period_follow_the_spec_formulas(app, pages):
    report = run_report(app, start=START, end=END)
    assert report.rows == {}
    expect(
        report.total,
        visitors=7,  # c1..c7; c1's repeat views, bot1, bot2 and c9 (older) left out
        leads=6, approved=3, rejected=2, pending=1, confirmed=4,
        payout=1 * ALPHA + 2 * BETA,  # L1 on alpha; L4, L5 on beta
        duplicates=2,
        delivered=3,  # L1 (two emails), L4, L5
        opened=2,  # L1, L5; L4 opened only by a machine
        opens_raw=6,  # L1: 1 machine + 3 human; L4: 1 machine; L5: 1
        clicked=1,  # L1
        clicks_raw=3,  # L1: machine + human; L4: machine
        unsubscribes=2,  # L1, L5 (twice)
        upgrades=3, upgrade_revenue=money("10.00") + money("5.25") + money("7.50"),
    )


def test_totals_without_a_period_include_every_row(app, pages):
    expect(
        run_report(app).total,
        visitors=8, leads=7, approved=4, rejected=2, pending=1, confirmed=5,
        payout=2 * ALPHA + 2 * BETA, duplicates=3, delivered=4, opened=3, opens_raw=7,
        clicked=1, clicks_raw=3, unsubscribes=2,
        upgrades=4, upgrade_revenue=money("122.75"),
    )


def test_visitors_are_distinct_cookies_without_bots(app, clock):
    with app.app_context():
        page = add_page("alpha", ALPHA)
        for cookie in ("a", "a", "a", "b"):
            add_visit(page, cookie, at(D1, 9))
        add_visit(page, "crawler", at(D1, 9), bot=True)
        add_visit(page, "crawler", at(D1, 10), bot=True)
        db.session.commit()
    assert run_report(app).total.visitors == 2


def test_conversion_rate_is_leads_over_visitors(app, clock):
    with app.app_context():
        page = add_page("alpha", ALPHA)
        for cookie in ("a", "b", "c", "d"):
            add_visit(page, cookie, at(D1, 9))
        add_lead(page, "x@example.com", at(D1, 9), "pending")
        add_lead(page, "y@example.com", at(D1, 9), "pending")
        db.session.commit()
    total = run_report(app).total
    assert (total.leads, total.visitors) == (2, 4)
    assert total.conversion_rate == 0.5


def test_approval_rate_leaves_pending_leads_out(app, clock):
    with app.app_context():
        page = add_page("alpha", ALPHA)
        for number, review in enumerate(("approved", "approved", "approved", "rejected",
                                          "pending", "pending")):
            add_lead(page, f"{number}@example.com", at(D1, 9), review)
        db.session.commit()
    total = run_report(app).total
    assert total.approval_rate == 3 / 4


def test_payout_is_approved_leads_times_their_page_payout(app, clock):
    with app.app_context():
        alpha, beta = add_page("alpha", ALPHA), add_page("beta", BETA)
        add_lead(alpha, "a1@example.com", at(D1, 9), "approved")
        add_lead(alpha, "a2@example.com", at(D1, 9), "approved")
        add_lead(alpha, "a3@example.com", at(D1, 9), "rejected")
        add_lead(beta, "b1@example.com", at(D1, 9), "approved")
        add_lead(beta, "b2@example.com", at(D1, 9), "pending")
        db.session.commit()
    total = run_report(app).total
    assert total.payout == 2 * ALPHA + 1 * BETA == money("9.00")
    assert total.revenue == total.payout


def test_revenue_adds_upgrade_amounts_to_payout_and_epv_divides_by_visitors(app, clock):
    with app.app_context():
        page = add_page("alpha", ALPHA)
        for cookie in ("a", "b", "c", "d"):
            add_visit(page, cookie, at(D1, 9))
        lead = add_lead(page, "x@example.com", at(D1, 9), "approved")
        add_upgrade(lead, "19.99", at(D1, 10))
        add_upgrade(lead, "0.01", at(D1, 11))
        db.session.commit()
    total = run_report(app).total
    assert total.upgrades == 2
    assert total.upgrade_revenue == money("20.00")
    assert total.revenue == ALPHA + money("20.00") == money("22.50")
    assert total.earnings_per_visitor == money("22.50") / 4 == money("5.625")


def test_delivered_counts_leads_with_a_sent_email_only(app, clock):
    with app.app_context():
        page = add_page("alpha", ALPHA)
        sent = add_lead(page, "sent@example.com", at(D1, 9), "approved")
        add_delivery(sent, "01", at(D1, 10))
        add_delivery(sent, "02", at(D1, 11))
        failed = add_lead(page, "failed@example.com", at(D1, 9), "approved")
        add_delivery(failed, "01", None, status="failed")
        unknown = add_lead(page, "unknown@example.com", at(D1, 9), "approved")
        add_delivery(unknown, "01", None, status="unknown")
        db.session.commit()
    assert run_report(app).total.delivered == 1


# --- opens and clicks ---------------------------------------------------------------

def test_machine_opens_are_left_out_of_rates_but_counted_in_opens_raw(app, clock):
    with app.app_context():
        page = add_page("alpha", ALPHA)
        person = add_lead(page, "person@example.com", at(D1, 9), "approved")
        scanned = add_lead(page, "scanned@example.com", at(D1, 9), "approved")
        first = add_delivery(person, "01", at(D1, 10))
        second = add_delivery(scanned, "01", at(D1, 10))
        add_event(person, "open", at(D1, 10, 0, 2), delivery=first, machine=True)
        add_event(person, "open", at(D1, 11), delivery=first)
        add_event(scanned, "open", at(D1, 10, 0, 2), delivery=second, machine=True)
        add_event(scanned, "open", at(D1, 10, 0, 3), delivery=second, machine=True)
        add_event(scanned, "click", at(D1, 10, 0, 4), delivery=second, machine=True)
        db.session.commit()
    total = run_report(app).total
    assert (total.delivered, total.opened, total.opens_raw) == (2, 1, 4)
    assert (total.clicked, total.clicks_raw) == (0, 1)
    assert total.open_rate == 1 / 2
    assert total.click_rate == 0


def test_repeat_opens_and_clicks_by_one_lead_count_once(app, clock):
    with app.app_context():
        page = add_page("alpha", ALPHA)
        lead = add_lead(page, "reader@example.com", at(D1, 9), "approved")
        idle = add_lead(page, "idle@example.com", at(D1, 9), "approved")
        first = add_delivery(lead, "01", at(D1, 10))
        second = add_delivery(lead, "02", at(D2, 8))
        add_delivery(idle, "01", at(D1, 10))
        for when, delivery in ((at(D1, 11), first), (at(D1, 12), first),
                               (at(D2, 9), second)):
            add_event(lead, "open", when, delivery=delivery)
            add_event(lead, "click", when, delivery=delivery)
        db.session.commit()
    total = run_report(app).total
    assert (total.delivered, total.opened, total.opens_raw) == (2, 1, 3)
    assert (total.clicked, total.clicks_raw) == (1, 3)
    assert total.open_rate == total.click_rate == 1 / 2


def test_unsubscribes_count_leads_once(app, clock):
    with app.app_context():
        page = add_page("alpha", ALPHA)
        lead = add_lead(page, "gone@example.com", at(D1, 9), "approved")
        add_event(lead, "unsubscribe", at(D1, 10))
        add_event(lead, "unsubscribe", at(D1, 10, 1))
        db.session.commit()
    assert run_report(app).total.unsubscribes == 1


# --- groups --------------------------------------------------------------------------

def test_by_page_gives_one_row_per_page_slug(app, pages):
    report = run_report(app, start=START, end=END, by="page")
    assert report.by == "page"
    assert list(report.rows) == ["alpha", "beta"]
    expect(
        report.rows["alpha"],
        visitors=4,  # c1, c2, c3, c6
        leads=3, approved=1, rejected=1, pending=1, confirmed=2, payout=1 * ALPHA,
        delivered=1, opened=1, opens_raw=4, clicked=1, clicks_raw=2, unsubscribes=1,
        upgrades=2, upgrade_revenue=money("15.25"),
    )
    expect(
        report.rows["beta"],
        visitors=4,  # c4, c5, c1, c7
        leads=3, approved=2, rejected=1, confirmed=2, payout=2 * BETA,
        duplicates=2,  # both repeat opt-ins happened on beta
        delivered=2, opened=1, opens_raw=2, clicked=0, clicks_raw=1, unsubscribes=1,
        upgrades=1, upgrade_revenue=money("7.50"),
    )


def test_by_page_puts_leads_of_a_deleted_page_under_none_without_payout(app, clock):
    with app.app_context():
        page = add_page("alpha", ALPHA)
        add_lead(page, "kept@example.com", at(D1, 9), "approved")
        orphan = add_lead(page, "orphan@example.com", at(D1, 9), "approved")
        orphan.page_id = None
        db.session.commit()
    report = run_report(app, by="page")
    assert list(report.rows) == ["(none)", "alpha"]
    expect(report.rows["(none)"], leads=1, approved=1)
    expect(report.rows["alpha"], leads=1, approved=1, payout=ALPHA)


def test_grouped_total_counts_a_visitor_of_two_groups_once(app, pages):
    report = run_report(app, start=START, end=END, by="page")
    # c1 visited both pages: 4 + 4 in the rows, 7 people in all.
    assert sum(row.visitors for row in report.rows.values()) == 8
    assert report.total == run_report(app, start=START, end=END).total
    assert report.total.visitors == 7


def test_by_source_puts_leads_without_utm_source_under_none(app, pages):
    report = run_report(app, start=START, end=END, by="source")
    assert list(report.rows) == ["(none)", "facebook", "google", "newsletter"]
    expect(
        report.rows["(none)"],
        visitors=1,  # c3
        leads=1, pending=1, confirmed=1,  # L3
        duplicates=1,  # L4's repeat opt-in carried no source
    )
    expect(
        report.rows["facebook"],
        visitors=1, leads=1, rejected=1,  # c2, L2
        duplicates=1,  # L1's repeat opt-in came from facebook
    )
    expect(
        report.rows["google"],
        visitors=4,  # c1, c6, c4, c7 (bot1, bot2 left out)
        leads=3, approved=2, rejected=1, confirmed=2,  # L1, L4, L6
        payout=1 * ALPHA + 1 * BETA,
        delivered=2, opened=1, opens_raw=5, clicked=1, clicks_raw=3, unsubscribes=1,
        upgrades=2, upgrade_revenue=money("15.25"),
    )
    expect(
        report.rows["newsletter"],
        visitors=1, leads=1, approved=1, confirmed=1, payout=1 * BETA,  # c5, L5
        delivered=1, opened=1, opens_raw=1, unsubscribes=1,
        upgrades=1, upgrade_revenue=money("7.50"),
    )


def test_by_campaign_groups_on_utm_campaign(app, pages):
    report = run_report(app, start=START, end=END, by="campaign")
    assert list(report.rows) == ["(none)", "retarget", "spring", "summer"]
    expect(
        report.rows["(none)"],
        visitors=2,  # c3, c5
        leads=2, approved=1, pending=1, confirmed=2, payout=1 * BETA,  # L3, L5
        duplicates=1, delivered=1, opened=1, opens_raw=1, unsubscribes=1,
        upgrades=1, upgrade_revenue=money("7.50"),
    )
    expect(report.rows["retarget"], duplicates=1)
    expect(
        report.rows["spring"],
        visitors=3,  # c1, c2, c6
        leads=2, approved=1, rejected=1, confirmed=1, payout=1 * ALPHA,  # L1, L2
        delivered=1, opened=1, opens_raw=4, clicked=1, clicks_raw=2, unsubscribes=1,
        upgrades=2, upgrade_revenue=money("15.25"),
    )
    expect(
        report.rows["summer"],
        visitors=3,  # c4, c1, c7
        leads=2, approved=1, rejected=1, confirmed=1, payout=1 * BETA,  # L4, L6
        delivered=1, opened=0, opens_raw=1, clicks_raw=1,
    )


def test_by_ref_groups_on_the_partner_code(app, pages):
    report = run_report(app, start=START, end=END, by="ref")
    assert list(report.rows) == ["(none)", "partner7"]
    expect(
        report.rows["(none)"],
        visitors=5,  # c1, c2, c6, c4, c7
        leads=4, approved=2, rejected=2, confirmed=2,  # L1, L2, L4, L6
        payout=1 * ALPHA + 1 * BETA, duplicates=2,
        delivered=2, opened=1, opens_raw=5, clicked=1, clicks_raw=3, unsubscribes=1,
        upgrades=2, upgrade_revenue=money("15.25"),
    )
    expect(
        report.rows["partner7"],
        visitors=2,  # c3, c5
        leads=2, approved=1, pending=1, confirmed=2, payout=1 * BETA,  # L3, L5
        delivered=1, opened=1, opens_raw=1, unsubscribes=1,
        upgrades=1, upgrade_revenue=money("7.50"),
    )


def test_by_day_groups_on_the_date_each_thing_happened(app, pages):
    report = run_report(app, start=START, end=END, by="day")
    assert list(report.rows) == ["2026-03-01", "2026-03-02"]
    expect(
        report.rows["2026-03-01"],
        visitors=3,  # c1 (twice), c2, c6
        leads=2, approved=1, rejected=1, confirmed=1, payout=1 * ALPHA,  # L1, L2
        delivered=1, opened=1, opens_raw=3, clicked=1, clicks_raw=2,
    )
    expect(
        report.rows["2026-03-02"],
        visitors=5,  # c1, c3, c4, c5, c7
        leads=4, approved=2, rejected=1, pending=1, confirmed=3,  # L3..L6
        payout=2 * BETA, duplicates=2,
        delivered=3,  # L1's second email, L4, L5
        opened=2, opens_raw=3, clicked=0, clicks_raw=1, unsubscribes=2,
        upgrades=3, upgrade_revenue=money("22.75"),
    )


@pytest.mark.parametrize("by", metrics.DIMENSIONS)
def test_grouped_report_total_is_the_ungrouped_total(app, pages, by):
    grouped = run_report(app, start=START, end=END, by=by)
    assert grouped.total == run_report(app, start=START, end=END).total


def test_unknown_dimension_is_refused(app):
    with pytest.raises(ValueError, match="by must be one of"):
        run_report(app, by="country")


# --- filters -------------------------------------------------------------------------

def test_page_filter_keeps_one_page(app, pages):
    report = run_report(app, start=START, end=END, page_id=pages["beta"])
    expect(
        report.total,
        visitors=4, leads=3, approved=2, rejected=1, confirmed=2, payout=2 * BETA,
        duplicates=2, delivered=2, opened=1, opens_raw=2, clicks_raw=1, unsubscribes=1,
        upgrades=1, upgrade_revenue=money("7.50"),
    )


def test_page_filter_applies_to_every_group(app, pages):
    report = run_report(app, start=START, end=END, page_id=pages["alpha"], by="source")
    assert list(report.rows) == ["(none)", "facebook", "google"]
    expect(report.rows["(none)"], visitors=1, leads=1, pending=1, confirmed=1)
    expect(report.rows["facebook"], visitors=1, leads=1, rejected=1)
    expect(
        report.rows["google"],
        visitors=2, leads=1, approved=1, confirmed=1, payout=ALPHA,  # c1, c6; L1
        delivered=1, opened=1, opens_raw=4, clicked=1, clicks_raw=2, unsubscribes=1,
        upgrades=2, upgrade_revenue=money("15.25"),
    )


def test_period_leaves_out_older_rows(app, pages):
    everything = run_report(app).total
    period = run_report(app, start=START, end=END).total
    assert (everything.visitors, period.visitors) == (8, 7)
    assert (everything.leads, period.leads) == (7, 6)
    assert (everything.duplicates, period.duplicates) == (3, 2)
    assert (everything.delivered, period.delivered) == (4, 3)
    assert (everything.opens_raw, period.opens_raw) == (7, 6)
    assert (everything.upgrade_revenue, period.upgrade_revenue) == (
        money("122.75"), money("22.75"))


def test_period_end_is_exclusive(app, pages):
    # [2026-02-01, 2026-03-01): only the older rows, nothing from D1.
    expect(
        run_report(app, start=OLD, end=START).total,
        visitors=1, leads=1, approved=1, confirmed=1, payout=ALPHA, duplicates=1,
        delivered=1, opened=1, opens_raw=1, upgrades=1, upgrade_revenue=money("100.00"),
    )


def test_period_includes_its_start_and_excludes_its_end(app, clock):
    with app.app_context():
        page = add_page("alpha", ALPHA)
        add_visit(page, "at-start", START)
        add_visit(page, "at-end", END)
        add_lead(page, "start@example.com", START, "approved")
        add_lead(page, "end@example.com", END, "approved")
        db.session.commit()
    total = run_report(app, start=START, end=END).total
    assert (total.visitors, total.leads, total.payout) == (1, 1, ALPHA)


def test_activity_in_the_period_counts_for_leads_that_opted_in_before_it(app, clock):
    with app.app_context():
        page = add_page("alpha", ALPHA)
        lead = add_lead(page, "old@example.com", at(OLD, 9), "approved")
        delivery = add_delivery(lead, "05", at(D1, 10))
        add_event(lead, "open", at(D1, 11), delivery=delivery)
        add_upgrade(lead, "9.00", at(D1, 12))
        db.session.commit()
    expect(run_report(app, start=START, end=END).total, delivered=1, opened=1,
           opens_raw=1, upgrades=1, upgrade_revenue=money("9.00"))


# --- no data -------------------------------------------------------------------------

def test_empty_database_gives_zeros_and_no_rates(app):
    total = run_report(app).total
    expect(total)
    assert total.payout == total.revenue == Decimal("0")
    assert total.conversion_rate is None
    assert total.approval_rate is None
    assert total.open_rate is None
    assert total.click_rate is None
    assert total.earnings_per_visitor is None


@pytest.mark.parametrize("by", metrics.DIMENSIONS)
def test_empty_database_grouped_has_no_rows(app, by):
    report = run_report(app, by=by)
    assert report.rows == {}
    expect(report.total)


def test_visitors_without_leads_give_zero_rates_not_none(app, clock):
    with app.app_context():
        add_visit(add_page("alpha", ALPHA), "a", at(D1, 9))
        db.session.commit()
    total = run_report(app).total
    assert total.conversion_rate == 0
    assert total.earnings_per_visitor == Decimal("0")
    assert total.approval_rate is None


# --- flask report -------------------------------------------------------------------

HEADER = ["visitors", "leads", "optins", "imported", "conv", "approved", "rejected", "appr",
          "delivered", "open", "click", "unsubs", "bounce", "complaint", "upgrades", "revenue",
          "per", "visitor", "spend", "per", "appr", "profit", "roi"]


def table(output: str) -> tuple[list[str], dict[str, list[str]], str]:
    """The header words, the rows by their first cell, and the closing line."""
    lines = output.strip().splitlines()
    header, *body, closing = lines
    rows = {}
    for line in body:
        name, cells = line[:24].strip(), line[24:].split()
        assert name not in rows, name
        rows[name] = cells
    return header.split(), rows, closing


def invoke(runner, *args):
    result = runner.invoke(args=["report", *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_report_command_prints_one_row_per_page_and_a_total(runner, pages):
    header, rows, closing = table(invoke(runner, "--by", "page", "--days", "7"))
    assert header == ["page", *HEADER]
    assert list(rows) == ["alpha", "beta", "total"]
    # visitors leads optins imported conv approved rejected appr delivered open click
    # unsubs bounce complaint upgrades revenue per-visitor
    # … spend, cost per approved lead, profit, roi (no spend entered: profit = revenue)
    assert rows["alpha"] == ["4", "3", "3", "0", "75.0%", "1", "1", "50.0%", "1", "100.0%",
                             "100.0%", "1", "0.0%", "0.0%", "2", "17.75", "4.4375", "0.00",
                             "-", "17.75", "-"]
    assert rows["beta"] == ["4", "3", "3", "0", "75.0%", "2", "1", "66.7%", "2", "50.0%",
                            "0.0%", "1", "0.0%", "0.0%", "1", "15.50", "3.8750", "0.00", "-",
                            "15.50", "-"]
    assert rows["total"] == ["7", "6", "6", "0", "85.7%", "3", "2", "60.0%", "3", "66.7%",
                             "33.3%", "2", "0.0%", "0.0%", "3", "33.25", "4.7500", "0.00",
                             "-", "33.25", "-"]
    assert closing == ("Raw opens 6, raw clicks 3 (machine-made included); "
                       "duplicates 2; payout 10.50.")


def test_report_command_without_days_covers_everything(runner, pages):
    header, rows, _ = table(invoke(runner))
    assert header == HEADER
    assert list(rows) == ["total"]
    assert rows["total"][:5] == ["8", "7", "7", "0", "87.5%"]
    assert rows["total"][15] == "135.75"  # 2 × 2.50 + 2 × 4.00 + 122.75


def test_report_command_by_source_with_a_page_filter(runner, pages):
    _, rows, closing = table(invoke(runner, "--page", "alpha", "--by", "source",
                                    "--days", "7"))
    assert list(rows) == ["(none)", "facebook", "google", "total"]
    assert rows["(none)"] == ["1", "1", "1", "0", "100.0%", "0", "0", "-", "0", "-", "-", "0",
                              "-", "-", "0", "0.00", "0.0000", "0.00", "-", "0.00", "-"]
    assert rows["google"] == ["2", "1", "1", "0", "50.0%", "1", "0", "100.0%", "1", "100.0%",
                              "100.0%", "1", "0.0%", "0.0%", "2", "17.75", "8.8750", "0.00",
                              "-", "17.75", "-"]
    assert rows["total"][:5] == ["4", "3", "3", "0", "75.0%"]
    assert closing.endswith("duplicates 0; payout 2.50.")


def test_report_command_on_an_empty_database_shows_dashes(runner):
    header, rows, closing = table(invoke(runner, "--by", "day"))
    assert header == ["day", *HEADER]
    assert rows == {"total": ["0", "0", "0", "0", "-", "0", "0", "-", "0", "-", "-", "0",
                              "-", "-", "0", "0.00", "-", "0.00", "-", "0.00", "-"]}
    assert closing.endswith("duplicates 0; payout 0.00.")


def test_report_command_unknown_page_is_an_error(runner, pages):
    result = runner.invoke(args=["report", "--page", "nope"])
    assert result.exit_code != 0
    assert "no page with slug 'nope'" in result.output


def test_report_command_unknown_dimension_is_an_error(runner):
    result = runner.invoke(args=["report", "--by", "country"])
    assert result.exit_code == 2
    assert "country" in result.output
