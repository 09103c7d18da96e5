"""The order of a grouped report's rows: by name or by any number, undefined ones last."""

from capture.numbers import metrics

# Columns a grouped report can be ordered by: "name" (the group) or a Numbers value.
SORT_COLUMNS = ("name", "visitors", "leads", "imported", "conversion_rate", "approval_rate",
                "payout", "upgrade_revenue", "revenue", "earnings_per_visitor", "spend",
                "cost_per_approved_lead", "profit", "roi", "bounce_rate", "complaint_rate")


def sorted_rows(rows: dict[str, metrics.Numbers], column: str = "name",
                descending: bool = False) -> list[tuple[str, metrics.Numbers]]:
    """The groups of a report ordered by one column. Undefined values (a rate
    without a denominator) go last either way; ties keep the name order."""
    if column not in SORT_COLUMNS:
        raise ValueError(f"column must be one of {', '.join(SORT_COLUMNS)}")
    by_name = sorted(rows.items(), key=lambda item: item[0].casefold())
    if column == "name":
        return by_name[::-1] if descending else by_name
    defined = [item for item in by_name if getattr(item[1], column) is not None]
    undefined = [item for item in by_name if getattr(item[1], column) is None]
    defined.sort(key=lambda item: getattr(item[1], column), reverse=descending)
    return defined + undefined
