"""The numbers of one group of a report (`Numbers`): the counts and money a report
adds up, and the rates, profit and returns derived from them, each with its one
definition (listed in `capture.numbers.metrics`)."""

from dataclasses import dataclass, field
from decimal import Decimal

# The Numbers values that are money (two decimals).
MONEY = ("payout", "upgrade_revenue", "imported_payout", "imported_upgrade_revenue", "spend")


def rate(part: int, whole: int) -> float | None:
    """part / whole, None when there is no whole (a rate of nothing is no 0 %)."""
    return part / whole if whole else None


class Funnel:
    """The rates and money a table of visitors, leads and their reviews derives, one
    definition for the report's groups (`Numbers`) and a page test's variants
    (`capture.numbers.variants`)."""

    visitors: int
    leads: int
    approved: int
    rejected: int
    payout: Decimal
    upgrade_revenue: Decimal

    @property
    def conversion_rate(self) -> float | None:
        return rate(self.leads, self.visitors)

    @property
    def approval_rate(self) -> float | None:
        return rate(self.approved, self.approved + self.rejected)

    @property
    def revenue(self) -> Decimal:
        return self.payout + self.upgrade_revenue

    @property
    def optin_revenue(self) -> Decimal:
        """The revenue of the leads that opted in (those who came as visitors)."""
        return self.revenue

    @property
    def earnings_per_visitor(self) -> Decimal | None:
        if not self.visitors:
            return None
        return (self.optin_revenue / self.visitors).quantize(Decimal("0.0001"))


@dataclass
class Numbers(Funnel):
    """The metrics of one group (or of everything)."""

    visitors: int = 0
    leads: int = 0
    optins: int = 0
    imported: int = 0
    duplicates: int = 0
    approved: int = 0
    rejected: int = 0
    pending: int = 0
    confirmed: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    opens_raw: int = 0
    clicks_raw: int = 0
    unsubscribes: int = 0
    # Leads with a `bounce` / `complaint` event (capture.numbers.deliverability).
    bounces: int = 0
    complaints: int = 0
    upgrades: int = 0
    upgrade_revenue: Decimal = field(default_factory=Decimal)
    payout: Decimal = field(default_factory=Decimal)
    # The imported leads' part of payout and upgrade_revenue (left out per visitor).
    imported_payout: Decimal = field(default_factory=Decimal)
    imported_upgrade_revenue: Decimal = field(default_factory=Decimal)
    # Ad spend of the period (capture.numbers.spend), by the day it was spent.
    spend: Decimal = field(default_factory=Decimal)

    @property
    def open_rate(self) -> float | None:
        return rate(self.opened, self.delivered)

    @property
    def click_rate(self) -> float | None:
        return rate(self.clicked, self.delivered)

    @property
    def bounce_rate(self) -> float | None:
        return rate(self.bounces, self.delivered)

    @property
    def complaint_rate(self) -> float | None:
        return rate(self.complaints, self.delivered)

    @property
    def optin_revenue(self) -> Decimal:
        """The revenue of the leads that opted in (imported leads had no visit)."""
        return self.revenue - self.imported_payout - self.imported_upgrade_revenue

    @property
    def cost_per_lead(self) -> Decimal | None:
        """Spend / leads (None without spend or without leads)."""
        return _per(self.spend, self.leads)

    @property
    def cost_per_approved_lead(self) -> Decimal | None:
        """Spend / approved (None without spend or without an approved lead)."""
        return _per(self.spend, self.approved)

    @property
    def profit(self) -> Decimal:
        """Revenue − spend."""
        return self.revenue - self.spend

    @property
    def roi(self) -> float | None:
        """Profit / spend (None without spend): 0.5 is 50 % back on top of the spend."""
        return float(self.profit / self.spend) if self.spend else None

    @property
    def loses_money(self) -> bool:
        """Spend above what it brought: the cost of an approved lead is more than the
        payout and upgrades per approved lead (or nothing was approved)."""
        return bool(self.spend) and self.profit < 0


def _per(money: Decimal, count: int) -> Decimal | None:
    if not money or not count:
        return None
    return (money / count).quantize(Decimal("0.01"))


def lead_revenue(review: str, payout, upgrade_amount) -> Decimal:
    """One lead's revenue, by the same definition: its page's payout if approved,
    plus its upgrades."""
    revenue = Decimal(upgrade_amount or 0)
    if review == "approved" and payout:
        revenue += Decimal(payout)
    return revenue


