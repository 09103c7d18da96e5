"""Dashboard area: sources — the numbers per utm_source, utm_campaign and ref."""

from flask import render_template, request

from capture.numbers import metrics, ordering, periods, reasons
from capture.admin import bp

# The groupings offered, as metrics dimensions: ?by= -> (tab label, column heading).
GROUPINGS = {"source": ("Sources", "Source"), "campaign": ("Campaigns", "Campaign"),
             "ref": ("Referrers", "Ref (partner or lead)")}
# The table's columns: metrics sort key, heading, how the value is shown.
COLUMNS = (
    ("visitors", "Visitors", "count"), ("leads", "Leads", "count"),
    ("imported", "Imported", "count"),
    ("conversion_rate", "Conversion", "percent"), ("approval_rate", "Approval", "percent"),
    ("payout", "Payout", "money"), ("upgrade_revenue", "Upgrade revenue", "money"),
    ("revenue", "Revenue", "money"), ("earnings_per_visitor", "Earnings per visitor", "money"),
    ("spend", "Ad spend", "money"), ("cost_per_approved_lead", "Cost per approved lead", "money"),
    ("profit", "Profit", "money"), ("roi", "ROI", "percent"),
    ("bounce_rate", "Bounce rate", "percent"), ("complaint_rate", "Complaint rate", "percent"),
)
DEFAULT_SORT = "visitors"


@bp.get("/sources")
def sources():
    """One row per source, campaign or ref for the period, sortable by any column."""
    by = request.args.get("by")
    by = by if by in GROUPINGS else "source"
    period = periods.period(request.args.get("period"))
    sort = request.args.get("sort")
    sort = sort if sort in ordering.SORT_COLUMNS else DEFAULT_SORT
    direction = request.args.get("dir")
    if direction not in ("asc", "desc"):
        direction = default_direction(sort)
    report = metrics.report(start=period.start, end=period.end, by=by)
    return render_template(
        "admin/sources.html",
        by=by, groupings=GROUPINGS, columns=COLUMNS, period=period, periods=periods.PERIODS,
        sort=sort, direction=direction, default_direction=default_direction,
        rows=ordering.sorted_rows(report.rows, sort, descending=direction == "desc"),
        total=report.total, currency=metrics.currency_label(),
        reasons=reasons.rejection_reasons(period.start, period.end),
    )


def default_direction(column: str) -> str:
    """Names sort A to Z first; numbers biggest first."""
    return "asc" if column == "name" else "desc"
