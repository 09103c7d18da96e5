"""The numbers of a page test per variant (capture.numbers.variants), against numbers
worked out by hand from rows inserted one by one, and the probability of being the
best against known cases.

    page offer (payout 2.50): variants b (live) and c (paused); "old" was a variant
    of an earlier test; (none) is traffic outside a test. Period: D1–D2.

    visitors   a: v1 (twice), v2, v3 (+ a bot)   b: v4, v5, v6, v7   c: v8
               old: v9   (none): v10   a, before the period: v0
    opt-ins    a: L1 approved, L2 rejected       b: L3 approved, L4 approved,
               L5 pending, L7 approved (a later opt-in; L7 came first on "other")
               (none): L6 approved; an imported lead (left out); a: L0 before the period
    upgrades   L1 4.00; L3 10.00 and 5.00; L7 50.00 (credited to "other", its first page)
"""

from decimal import Decimal

import pytest

from capture.db import db
from capture.models import Optin, Page
from capture.numbers import variants as page_tests
from capture.numbers.variants import Posterior, probability_best
from tests.metrics_data import D1, D2, END, OLD, START, add_lead, add_upgrade, add_visit, at


@pytest.fixture
def tested(app):
    with app.app_context():
        page = Page(slug="offer", title="Offer", payout=Decimal("2.50"), variant_a_weight=50,
                    variants=[{"key": "b", "weight": 30, "paused": False},
                              {"key": "c", "weight": 20, "paused": True}])
        other = Page(slug="other", title="Other", payout=Decimal("1.00"))
        db.session.add_all([page, other])
        db.session.flush()
        for cookie, variant, when in (
                ("v1", "a", D1), ("v1", "a", D2), ("v2", "a", D1), ("v3", "a", D2),
                ("v4", "b", D1), ("v5", "b", D1), ("v6", "b", D2), ("v7", "b", D2),
                ("v8", "c", D2), ("v9", "old", D1), ("v10", None, D2), ("v0", "a", OLD)):
            add_visit(page, cookie, at(when, 9), variant=variant)
        add_visit(page, "bot", at(D1, 9), bot=True, variant="a")
        leads = {}
        for name, variant, review, when in (
                ("L1", "a", "approved", D1), ("L2", "a", "rejected", D1),
                ("L3", "b", "approved", D1), ("L4", "b", "approved", D2),
                ("L5", "b", "pending", D2), ("L6", None, "approved", D2),
                ("L0", "a", "approved", OLD)):
            leads[name] = add_lead(page, f"{name.lower()}@example.com", at(when, 10), review,
                                   variant=variant)
        leads["L7"] = add_lead(other, "l7@example.com", at(D1, 8), "approved")
        add_lead(page, "imported@example.com", at(D1, 10), "approved", imported=True)
        db.session.flush()
        db.session.add(Optin(lead_id=leads["L7"].id, page_id=page.id, first=False,
                             review="approved", variant="b", created_at=at(D2, 11)))
        for name, amount in (("L1", "4.00"), ("L3", "10.00"), ("L3", "5.00"),
                             ("L7", "50.00")):
            add_upgrade(leads[name], amount, at(D2, 12))
        db.session.commit()
    return "offer"


def report(app, **period):
    with app.app_context():
        page = db.session.query(Page).filter_by(slug="offer").one()
        return page_tests.test_report(page, **period)


def test_numbers_per_variant_from_the_rows(app, tested):
    result = report(app, start=START, end=END)
    rows = {row.key: row for row in result.rows}
    assert list(rows) == ["a", "b", "c", "old", "(none)"]
    a, b, c = rows["a"], rows["b"], rows["c"]
    assert (a.state, b.state, c.state, rows["old"].state, rows["(none)"].state) == (
        "live", "live", "paused", "ended", "outside")
    assert (a.share, b.share, c.share) == (pytest.approx(50 / 80), pytest.approx(30 / 80), 0.0)
    assert (a.visitors, a.leads, a.approved, a.rejected, a.pending) == (3, 2, 1, 1, 0)
    assert (b.visitors, b.leads, b.approved, b.rejected, b.pending) == (4, 4, 3, 0, 1)
    assert (c.visitors, c.leads, rows["old"].visitors) == (1, 0, 1)
    assert (rows["(none)"].visitors, rows["(none)"].leads) == (1, 1)
    assert a.conversion_rate == pytest.approx(2 / 3) and a.approval_rate == 0.5
    assert b.conversion_rate == 1.0 and b.approval_rate == 1.0
    assert (a.payout, a.upgrade_revenue, a.revenue) == (
        Decimal("2.50"), Decimal("4.00"), Decimal("6.50"))
    # L7's upgrade is credited to its first page, as in every other report.
    assert (b.payout, b.upgrade_revenue, b.revenue, b.buyers) == (
        Decimal("7.50"), Decimal("15.00"), Decimal("22.50"), 1)
    assert a.earnings_per_visitor == Decimal("2.1667")
    assert b.earnings_per_visitor == Decimal("5.6250")
    assert c.earnings_per_visitor == Decimal("0.0000")
    assert rows["old"].probability_best is None and rows["(none)"].probability_best is None
    assert a.probability_best + b.probability_best + c.probability_best == pytest.approx(1)
    assert b.probability_best > a.probability_best > c.probability_best


def test_the_whole_history_without_a_period(app, tested):
    rows = {row.key: row for row in report(app).rows}
    assert (rows["a"].visitors, rows["a"].leads, rows["a"].approved) == (4, 3, 2)


def test_a_warning_for_each_variant_under_100_leads(app, tested):
    assert report(app).warnings == [
        "Variant a has 3 leads, fewer than 100: its numbers and the probabilities can "
        "still change a lot.",
        "Variant b has 4 leads, fewer than 100: its numbers and the probabilities can "
        "still change a lot.",
        "Variant c has 0 leads, fewer than 100: its numbers and the probabilities can "
        "still change a lot.",
        "Variant old has 0 leads, fewer than 100: its numbers and the probabilities can "
        "still change a lot."]


def test_a_page_without_visits_or_a_test_has_no_rows(app, make_page):
    make_page(slug="offer")
    result = report(app)
    assert result.rows == [] and result.warnings == []


# --- the probability of being the best -----------------------------------------------

def test_a_clearly_better_variant_is_almost_surely_the_best():
    # 1,000 visitors each, 100 vs 150 approved, the same payout: the normal
    # approximation gives P = Phi(0.05 / sqrt(0.1*0.9/1000 + 0.15*0.85/1000)) = 0.9997.
    a, b = probability_best([Posterior(1000, 100, 0, 2.0, 0.0),
                             Posterior(1000, 150, 0, 2.0, 0.0)])
    assert b > 0.99 and b == pytest.approx(0.9997, abs=0.002)
    assert a + b == pytest.approx(1)


def test_identical_data_gives_even_chances():
    same = Posterior(1000, 100, 0, 2.0, 0.0)
    a, b = probability_best([same, same])
    assert a == pytest.approx(0.5, abs=0.03) and b == pytest.approx(0.5, abs=0.03)
    three = probability_best([same, same, same])
    assert all(p == pytest.approx(1 / 3, abs=0.03) for p in three)


def test_a_small_difference_on_little_data_is_uncertain():
    # 20 vs 25 approved of 200 visitors each: P = Phi(0.025 / 0.0312) = 0.79.
    a, b = probability_best([Posterior(200, 20, 0, 1.0, 0.0), Posterior(200, 25, 0, 1.0, 0.0)])
    assert b == pytest.approx(0.79, abs=0.02)


def test_upgrades_count_in_the_earnings():
    # The same approvals; b's visitors buy twice as often, at 30.00 a buyer.
    a, b = probability_best([Posterior(2000, 100, 20, 1.0, 30.0),
                             Posterior(2000, 100, 40, 1.0, 30.0)])
    assert b > 0.98


def test_the_same_data_always_gives_the_same_probabilities():
    posteriors = [Posterior(300, 30, 0, 1.0, 0.0), Posterior(300, 36, 0, 1.0, 0.0)]
    assert probability_best(posteriors) == probability_best(posteriors)


def test_no_probability_with_one_variant_or_nothing_to_earn():
    assert probability_best([Posterior(100, 10, 0, 1.0, 0.0)]) == [None]
    assert probability_best([Posterior(100, 10, 0, 0.0, 0.0)] * 2) == [None, None]



# --- flask report --by variant ---------------------------------------------------------

def test_report_by_variant_prints_one_row_per_variant_and_the_warnings(app, runner, tested):
    result = runner.invoke(args=["report", "--page", "offer", "--by", "variant"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["variant", "state", "share", "visitors", "leads", "conv",
                                "approved", "rejected", "appr", "revenue", "per", "visitor",
                                "P(best)"]
    cells = {line.split()[0]: line.split() for line in lines[1:6]}
    assert list(cells) == ["a", "b", "c", "old", "(none)"]
    assert cells["b"][:10] == ["b", "live", "37.5%", "4", "4", "100.0%", "3", "0", "100.0%",
                               "22.50"]
    assert cells["b"][10] == "5.6250" and cells["old"][-1] == "-"
    assert sum(1 for line in lines if line.startswith("Warning: Variant ")) == 4
    assert lines[-1].startswith("Money in USD.")


def test_report_by_variant_needs_a_page(runner, tested):
    result = runner.invoke(args=["report", "--by", "variant"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: --by variant shows one page's test: add --page SLUG"]
