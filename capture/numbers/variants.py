"""The numbers of a page test, per variant: visitors, leads, conversion and approval
rates, revenue and earnings per visitor, and the probability that each variant is
the best on earnings per visitor (Bayesian, by Monte Carlo with a fixed seed).

The definitions are those of `capture.numbers.metrics` for one page, split by the
variant each visit and opt-in was made on:

- visitors: distinct visitor cookies that viewed the page as the variant (bots left
  out; a visitor moved to another variant counts in both)
- leads: opt-ins on the page made on the variant (imported leads have no variant)
- approved, rejected, pending: those opt-ins' reviews
- payout = approved × the page's payout; upgrade revenue: the upgrades, whenever
  made, of the leads whose first opt-in (the one upgrades are credited to) was on
  the variant; revenue = payout + upgrade revenue
- earnings per visitor = revenue / visitors

The method behind `probability_best` is written out in docs/use/pages.md (Page
tests, "The numbers").
"""

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import case, distinct, func, select

from capture.db import db
from capture.models import Optin, Page, Upgrade, Visit
from capture.numbers.figures import Funnel
from capture.numbers.metrics import in_period
from capture.pages import variants
from capture.wording import counted

# Below this many leads on a variant, its numbers come with a warning.
MIN_LEADS = 100
# Draws of the Monte Carlo estimate (its standard error is at most 0.0035) and its
# seed: the same data always gives the same probabilities.
DRAWS = 20_000
SEED = 20_260_302
# The row of visits and opt-ins made outside a test (before it, after it, the
# embedded form, the API).
NO_TEST = "(none)"
_CENT = Decimal("0.01")


@dataclass
class VariantNumbers(Funnel):
    """The numbers of one variant of a page (or of what was outside a test); its
    rates and earnings per visitor are the report's (`figures.Funnel`): imported
    leads have no variant, so all of its revenue is the opt-ins'."""

    key: str
    # live, paused (no new visitors), or ended (no longer on the page)
    state: str = "ended"
    share: float | None = None  # of new visitors, for a live or paused variant
    visitors: int = 0
    leads: int = 0
    approved: int = 0
    rejected: int = 0
    pending: int = 0
    buyers: int = 0  # leads with at least one upgrade
    payout: Decimal = field(default_factory=Decimal)
    upgrade_revenue: Decimal = field(default_factory=Decimal)
    probability_best: float | None = None

    @property
    def few_leads(self) -> bool:
        """Too few leads to trust the comparison yet (a warning goes with it)."""
        return self.key != NO_TEST and self.leads < MIN_LEADS


@dataclass
class TestReport:
    """A page's numbers per variant: "a" first, then its variants in order, then
    variants no longer on the page, then what was outside a test."""

    page: str
    currency: str
    rows: list[VariantNumbers]

    @property
    def compared(self) -> list[VariantNumbers]:
        return [row for row in self.rows if row.key != NO_TEST]

    @property
    def warnings(self) -> list[str]:
        """One line per variant with fewer than MIN_LEADS leads."""
        return [f"Variant {row.key} has {counted(row.leads, 'lead')}, "
                f"fewer than {MIN_LEADS}: its numbers and the probabilities can still "
                "change a lot." for row in self.compared if row.few_leads]


def test_report(page: Page, *, start: datetime | None = None,
                end: datetime | None = None) -> TestReport:
    """The numbers of `page` per variant in [start, end) (open bounds: all time)."""
    rows: dict[str, VariantNumbers] = {}
    test = variants.test_of(page)
    if test is not None:
        shares = test.shares()
        for arm in test.arms:
            rows[arm.key] = VariantNumbers(arm.key, "paused" if arm.paused else "live",
                                           shares[arm.key])

    def row(key: str | None) -> VariantNumbers:
        key = NO_TEST if key is None else key
        return rows.setdefault(key, VariantNumbers(key, "outside" if key == NO_TEST
                                                   else "ended"))

    stmt = (select(Visit.variant, func.count(distinct(Visit.visitor_id)))
            .where(Visit.page_id == page.id, Visit.is_bot.is_(False)).group_by(Visit.variant))
    for key, visitors in db.session.execute(in_period(stmt, Visit.created_at, start, end)):
        row(key).visitors = visitors

    stmt = (select(Optin.variant, func.count(),
                   *(func.count(case((Optin.review == state, 1)))
                     for state in ("approved", "rejected", "pending")))
            .where(Optin.page_id == page.id, Optin.imported.is_(False))
            .group_by(Optin.variant))
    for key, leads, approved, rejected, pending in db.session.execute(
            in_period(stmt, Optin.created_at, start, end)):
        numbers = row(key)
        numbers.leads, numbers.approved = leads, approved
        numbers.rejected, numbers.pending = rejected, pending
        numbers.payout = (approved * Decimal(page.payout or 0)).quantize(_CENT)

    stmt = (select(Optin.variant, func.count(distinct(Upgrade.lead_id)),
                   func.coalesce(func.sum(Upgrade.amount), 0))
            .join(Upgrade, Upgrade.lead_id == Optin.lead_id)
            .where(Optin.page_id == page.id, Optin.first.is_(True), Optin.imported.is_(False))
            .group_by(Optin.variant))
    for key, buyers, amount in db.session.execute(
            in_period(stmt, Optin.created_at, start, end)):
        numbers = row(key)
        numbers.buyers = buyers
        numbers.upgrade_revenue = Decimal(str(amount)).quantize(_CENT)

    order = list(test.keys) if test is not None else []
    ordered = sorted(rows.values(), key=lambda n: (
        n.key == NO_TEST, order.index(n.key) if n.key in order else len(order), n.key))
    # Compared: the variants of the running test, else (after it) those it had.
    compared = [n for n in ordered if n.key != NO_TEST and n.visitors
                and (test is None or n.key in test.keys)]
    buyers = sum(n.buyers for n in compared)
    per_buyer = sum(n.upgrade_revenue for n in compared) / buyers if buyers else 0
    posteriors = [Posterior(max(n.visitors, n.approved, n.buyers), n.approved, n.buyers,
                            float(page.payout or 0), float(per_buyer)) for n in compared]
    for numbers, probability in zip(compared, probability_best(posteriors), strict=True):
        numbers.probability_best = probability
    return TestReport(page.slug, page.currency, ordered)


@dataclass(frozen=True)
class Posterior:
    """What one variant's data says about its earnings per visitor: a visitor becomes
    an approved lead with probability p ~ Beta(1 + approved, 1 + visitors - approved),
    worth `payout`, and a buying lead with probability q ~ Beta(1 + buyers,
    1 + visitors - buyers), worth `per_buyer` (the mean upgrade revenue per buying
    lead of all variants together, taken as known). `visitors` is at least the
    approved leads and buyers (an opt-in through the API has no visit)."""

    visitors: int
    approved: int
    buyers: int
    payout: float
    per_buyer: float


def probability_best(posteriors: Sequence[Posterior], draws: int = DRAWS,
                     seed: int = SEED) -> list[float | None]:
    """For each variant, the probability that its earnings per visitor are the
    highest: the share of `draws` joint draws from the posteriors in which it is
    (a tie is shared). None for every variant when there are fewer than two, or
    when none can earn anything (no payout and no upgrade)."""
    if len(posteriors) < 2 or not any(p.payout or p.per_buyer for p in posteriors):
        return [None] * len(posteriors)
    rng = random.Random(seed)
    wins = [0.0] * len(posteriors)
    for _ in range(draws):
        values = [_draw(rng, p) for p in posteriors]
        best = max(values)
        winners = [i for i, value in enumerate(values) if value == best]
        for i in winners:
            wins[i] += 1 / len(winners)
    return [win / draws for win in wins]


def _draw(rng: random.Random, p: Posterior) -> float:
    """One draw of a variant's earnings per visitor from its posterior."""
    value = 0.0
    if p.payout:
        value += p.payout * rng.betavariate(1 + p.approved, 1 + p.visitors - p.approved)
    if p.per_buyer:
        value += p.per_buyer * rng.betavariate(1 + p.buyers, 1 + p.visitors - p.buyers)
    return value
