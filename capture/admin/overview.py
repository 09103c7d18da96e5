"""The dashboard's first page: the numbers of a period, a chart over time, and the
warnings that need the owner.

Every number comes from `capture.numbers.metrics`; this module only lays the daily series
out as an SVG chart (positions and axis ticks, no metric formula).
"""

import math
from dataclasses import dataclass, field
from datetime import date

from flask import current_app, render_template, request, url_for

from capture.numbers import metrics, periods
from capture.numbers import attention
from capture.admin import bp

# The chart's drawing area, in SVG user units (the SVG scales to its container).
CHART_WIDTH, LEFT, RIGHT = 760, 56, 16
COUNTS_TOP, COUNTS_HEIGHT = 44, 170
MONEY_TOP, MONEY_HEIGHT = 268, 90
CHART_HEIGHT = MONEY_TOP + MONEY_HEIGHT + 34
# Point markers (with their hover titles) only while they stay readable.
MAX_MARKERS = 92
MAX_X_LABELS = 8


@bp.get("/")
def overview():
    """The spec's metrics for the chosen period, its chart and the owner's warnings."""
    period = periods.period(request.args.get("period"))
    day_report = metrics.report(start=period.start, end=period.end, by="day")
    days = periods.days_of(day_report, period.start, period.end)
    return render_template(
        "admin/overview.html",
        period=period, periods=periods.PERIODS, numbers=day_report.total,
        currency=metrics.currency_label(),
        chart=build_chart(days) if _has_activity(day_report.total) else None,
        warnings=[(warning, _link(warning.endpoint, warning.params))
                  for warning in attention.for_owner()],
        pages_link=_link("admin.pages"),
    )


def _has_activity(numbers: metrics.Numbers) -> bool:
    return bool(numbers.visitors or numbers.leads or numbers.imported or numbers.upgrades
                or numbers.revenue or numbers.spend)


def _link(endpoint: str | None, params: dict[str, str] | None = None) -> str | None:
    """The URL of a dashboard area (with its query `params`), when this app has it."""
    if endpoint and endpoint in current_app.view_functions:
        return url_for(endpoint, **(params or {}))
    return None


# --- the chart -----------------------------------------------------------------------

@dataclass
class Axis:
    """A value axis: its top value and the labelled ticks (value, y, label)."""

    top: float
    ticks: list[tuple[float, float, str]] = field(default_factory=list)


@dataclass
class ChartDay:
    """One day of the chart, already placed."""

    day: date
    label: str
    numbers: metrics.Numbers
    x: float
    visitors_y: float
    leads_y: float
    bar_x: float
    bar_y: float
    bar_height: float
    # The day's ad spend, a bar beside revenue's (profit is the difference).
    spend_x: float = 0.0
    spend_y: float = 0.0
    spend_height: float = 0.0


@dataclass
class Chart:
    """Everything the template needs to draw the SVG."""

    days: list[ChartDay]
    counts_axis: Axis
    money_axis: Axis
    bar_width: float
    x_labels: list[tuple[float, str]]
    # Whether any day had ad spend: then each day has a spend bar beside revenue.
    has_spend: bool = False
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT
    left: int = LEFT
    right: int = CHART_WIDTH - RIGHT
    counts_top: int = COUNTS_TOP
    counts_bottom: int = COUNTS_TOP + COUNTS_HEIGHT
    money_top: int = MONEY_TOP
    money_bottom: int = MONEY_TOP + MONEY_HEIGHT

    @property
    def markers(self) -> bool:
        return len(self.days) <= MAX_MARKERS

    @property
    def visitors_points(self) -> str:
        return " ".join(f"{d.x:.1f},{d.visitors_y:.1f}" for d in self.days)

    @property
    def leads_points(self) -> str:
        return " ".join(f"{d.x:.1f},{d.leads_y:.1f}" for d in self.days)

    @property
    def first(self) -> date:
        return self.days[0].day

    @property
    def last(self) -> date:
        return self.days[-1].day


def nice_axis(maximum: float, *, whole: bool, top: float, height: float) -> Axis:
    """About four evenly spaced round ticks from 0 to at least `maximum`."""
    maximum = max(float(maximum), 1.0 if whole else 0.01)
    raw = maximum / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    if whole:
        step = max(1.0, math.ceil(step))
    count = math.ceil(maximum / step - 1e-9)
    axis = Axis(top=step * count)
    for index in range(count + 1):
        value = step * index
        label = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
        axis.ticks.append((value, top + height - height * value / axis.top, label))
    return axis


def _day_label(day: date, span_days: int) -> str:
    if span_days > 366:
        return day.strftime("%b %Y")
    return f"{day:%b} {day.day}"


def build_chart(days: list[tuple[date, metrics.Numbers]]) -> Chart:
    """Place each day's visitors and leads (lines), revenue and ad spend (bars side by
    side when there is spend: profit is the difference)."""
    count = len(days)
    counts = nice_axis(max(max(n.visitors, n.leads) for _, n in days), whole=True,
                       top=COUNTS_TOP, height=COUNTS_HEIGHT)
    money = nice_axis(max(max(n.revenue, n.spend) for _, n in days), whole=False,
                      top=MONEY_TOP, height=MONEY_HEIGHT)
    slot = (CHART_WIDTH - LEFT - RIGHT) / count
    has_spend = any(n.spend for _, n in days)
    bar_width = max(1.0, min(slot * 0.6, 40.0)) / (2 if has_spend else 1)

    def counts_y(value: int) -> float:
        return COUNTS_TOP + COUNTS_HEIGHT - COUNTS_HEIGHT * value / counts.top

    placed = []
    for index, (day, numbers) in enumerate(days):
        x = LEFT + slot * (index + 0.5)
        height = MONEY_HEIGHT * float(numbers.revenue) / money.top
        spent = MONEY_HEIGHT * float(numbers.spend) / money.top
        placed.append(ChartDay(
            day=day, label=_day_label(day, count), numbers=numbers, x=x,
            visitors_y=counts_y(numbers.visitors), leads_y=counts_y(numbers.leads),
            bar_x=x - bar_width if has_spend else x - bar_width / 2,
            bar_y=MONEY_TOP + MONEY_HEIGHT - height, bar_height=height,
            spend_x=x, spend_y=MONEY_TOP + MONEY_HEIGHT - spent, spend_height=spent,
        ))
    every = math.ceil(count / MAX_X_LABELS)
    x_labels = [(d.x, d.label) for d in placed[::every]]
    return Chart(days=placed, counts_axis=counts, money_axis=money, bar_width=bar_width,
                 x_labels=x_labels, has_spend=has_spend)

