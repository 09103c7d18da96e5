"""Ad spend: cost rows checked and saved with the replace rule, and spend, cost per
lead, profit and ROI in the reports by page, source, campaign and day."""

from datetime import datetime
from decimal import Decimal

from sqlalchemy import select

from capture.db import db
from capture.models import Cost
from capture.numbers import metrics, spend
from capture.numbers.figures import Numbers
from tests.conftest import create_page, optin

CSV = """date,source,campaign,page,amount,currency
2026-03-01,ads,spring,guide,30.00,USD
2026-03-02,ads,spring,guide,10,USD
2026-03-02,news,,guide,5.50,USD
"""


def imported(app, text):
    with app.app_context():
        checked = spend.read_csv(text)
        if not checked.problems:
            result = spend.save(checked.rows)
            db.session.commit()
            return result, []
        return None, checked.problems


def rows(app):
    with app.app_context():
        return [(c.day.isoformat(), c.source, c.campaign, c.amount) for c in
                db.session.scalars(select(Cost).order_by(Cost.day, Cost.source))]


def test_a_cost_file_is_saved_and_importing_it_again_replaces_each_row(app):
    create_page(app, slug="guide")
    assert imported(app, CSV) == ((3, 0), [])
    changed = CSV.replace("2026-03-02,ads,spring,guide,10,USD",
                          "2026-03-02,ads,spring,guide,12,USD")
    assert imported(app, changed) == ((0, 3), [])
    assert rows(app) == [("2026-03-01", "ads", "spring", Decimal("30.00")),
                         ("2026-03-02", "ads", "spring", Decimal("12.00")),
                         ("2026-03-02", "news", "", Decimal("5.50"))]


def test_a_row_replaces_only_the_row_of_its_own_day_source_campaign_and_page(app):
    create_page(app, slug="guide")
    create_page(app, slug="other")
    assert imported(app, "date,source,campaign,page,amount,currency\n"
                    "2026-03-01,ads,spring,guide,1,USD\n2026-03-01,ads,spring,other,2,USD\n"
                    "2026-03-01,ads,spring,,3,USD\n2026-03-05,ads,spring,guide,4,USD\n") \
        == ((4, 0), [])
    # Between the first and the last day, only the row of no page changes; a new day
    # within the range is added.
    assert imported(app, "date,source,campaign,page,amount,currency\n"
                    "2026-03-01,ads,spring,,9,USD\n2026-03-03,ads,spring,,7,USD\n"
                    "2026-03-05,ads,autumn,guide,8,USD\n") == ((2, 1), [])
    with app.app_context():
        assert sorted((c.day.day, c.campaign, c.page_id is None, int(c.amount))
                      for c in db.session.scalars(select(Cost))) == [
            (1, "spring", False, 1), (1, "spring", False, 2), (1, "spring", True, 9),
            (3, "spring", True, 7), (5, "autumn", False, 8), (5, "spring", False, 4)]


def test_every_bad_line_is_reported_and_nothing_is_saved(app):
    create_page(app, slug="guide")
    bad = CSV + ("2026-02-30,ads,,guide,1,USD\n" "2026-03-03,ads,,guide,-4,USD\n"
                 "2026-03-03,ads,,guide,1.234,USD\n" "2026-03-03,ads,,nowhere,1,USD\n"
                 "2026-03-03,ads,,guide,1,EUR\n" "2026-03-03,ads,,guide,1,US\n")
    result, problems = imported(app, bad)
    assert result is None
    assert problems == [
        "line 5: date: '2026-02-30' is no date like 2026-03-01",
        "line 6: amount: must be 0 or more (at most 999999999999.99)",
        "line 7: amount: at most two decimals",
        "line 8: page: no page with slug 'nowhere'",
        "line 9: currency: EUR is not the page's currency (USD); Capture converts nothing",
        "line 10: currency: 'US' is no ISO 4217 code like USD"]
    assert rows(app) == []


def test_a_file_without_the_needed_columns_says_which(app):
    _, problems = imported(app, "day,cost\n2026-03-01,3\n")
    assert problems == ["line 1: missing column date, amount, currency; unknown column "
                        "day, cost (columns: date, source, campaign, page, amount, currency)"]


def test_spend_of_no_page_needs_the_pages_one_currency(app):
    create_page(app, slug="guide")
    create_page(app, slug="euro", currency="EUR")
    _, problems = imported(app, "date,source,amount,currency\n2026-03-01,ads,3,USD\n")
    assert problems == ["line 2: page: required while your pages use different currencies "
                        "(or there is no page yet): spend must be in its page's currency"]


def test_profit_and_roi_follow_their_definitions():
    numbers = Numbers(leads=4, approved=2, payout=Decimal("10.00"),
                      upgrade_revenue=Decimal("5.00"), spend=Decimal("20.00"))
    assert numbers.cost_per_lead == Decimal("5.00")
    assert numbers.cost_per_approved_lead == Decimal("10.00")
    assert numbers.profit == Decimal("-5.00")
    assert numbers.roi == -0.25
    assert numbers.loses_money
    assert Numbers().roi is None and Numbers().cost_per_lead is None


def test_reports_carry_spend_by_page_source_campaign_and_day(app, clock):
    create_page(app, slug="guide", double_opt_in=False, payout="20.00")
    optin(app.test_client(), "guide", query="?utm_source=ads&utm_campaign=spring",
          email="ann@example.com")
    imported(app, CSV)
    with app.app_context():
        start, end = datetime(2026, 3, 1), datetime(2026, 3, 3)
        total = metrics.report(start=start, end=end).total
        assert (total.spend, total.profit, total.roi) == (
            Decimal("45.50"), Decimal("-25.50"), float(Decimal("-25.50") / Decimal("45.50")))
        by_source = metrics.report(start=start, end=end, by="source").rows
        assert by_source["ads"].spend == Decimal("40.00")
        assert by_source["ads"].cost_per_approved_lead == Decimal("40.00")
        assert by_source["ads"].loses_money
        assert by_source["news"].spend == Decimal("5.50") and by_source["news"].leads == 0
        by_campaign = metrics.report(start=start, end=end, by="campaign").rows
        assert (by_campaign["spring"].spend, by_campaign["(none)"].spend) == (
            Decimal("40.00"), Decimal("5.50"))
        by_day = metrics.report(start=start, end=end, by="day").rows
        assert (by_day["2026-03-01"].spend, by_day["2026-03-02"].spend) == (
            Decimal("30.00"), Decimal("15.50"))
        assert metrics.report(start=start, end=end, by="page").rows["guide"].spend == \
            Decimal("45.50")
        assert all(not n.spend for n in metrics.report(start=start, end=end, by="ref")
                   .rows.values())
        one_day = metrics.report(start=datetime(2026, 3, 2), end=end).total
        assert one_day.spend == Decimal("15.50")


def test_costs_import_names_each_bad_line_and_imports_nothing(app, tmp_path):
    create_page(app, slug="guide")
    path = tmp_path / "spend.csv"
    path.write_text(CSV + "2026-03-03,ads,,guide,abc,USD\n", encoding="utf-8")
    result = app.test_cli_runner().invoke(args=["costs", "import", str(path)])
    assert result.exit_code == 1
    assert f"{path}:5: amount: 'abc' is no amount like 120.50" in result.output
    assert "nothing imported: 1 problem(s) above; fix them, or import the good lines " \
           "with --skip-bad" in result.output
    assert rows(app) == []
    result = app.test_cli_runner().invoke(args=["costs", "import", str(path), "--skip-bad"])
    assert result.exit_code == 0
    assert "Imported 3 cost row(s): 3 added, 0 replaced, skipped 1 bad line(s)." in result.output


def test_costs_list_shows_the_rows_and_an_empty_state(app, clock):
    create_page(app, slug="guide")
    runner = app.test_cli_runner()
    assert "No ad spend in the last 30 days." in runner.invoke(args=["costs", "list"]).output
    imported(app, CSV)
    lines = runner.invoke(args=["costs", "list"]).output.splitlines()
    assert lines[1].split() == ["2026-03-02", "ads", "spring", "guide", "10.00", "USD"]
    assert lines[-1] == "3 row(s), 45.50 in total"
