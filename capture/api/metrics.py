"""API operation: the metrics report of `capture.numbers.metrics`, as JSON."""

from datetime import datetime, time, timedelta

from flask import request
from sqlalchemy import select

from capture.numbers import broadcasts, metrics, reasons
from capture.numbers import variants as page_tests
from capture.api import bp
from capture.api.errors import bad_parameters
from capture.api.inputs import query_choice, query_date, query_text, refuse_unknown
from capture.api.shapes import iso, numbers_json, variant_json
from capture.db import db
from capture.models import Page


@bp.get("/metrics")
def read_metrics():
    """Totals for a period (`from`/`to`, whole UTC days, both included), optionally
    for one page and grouped `by` page, source, campaign, ref or day; or `by=broadcast`:
    one row per broadcast that started sending in the period, with its own numbers;
    `by=reason`: one row per rejection reason, with its pages and sources; or
    `by=variant` (with `page`): one row per variant of the page's test."""
    refuse_unknown(request.args, {"from", "to", "page", "by"}, body=False)
    first, last = query_date("from"), query_date("to")
    if first and last and first > last:
        raise bad_parameters({"from": "is after to: no day can match; swap the dates"})
    by = query_choice("by", (*metrics.DIMENSIONS, "broadcast", "reason", "variant")) or None
    slug = query_text("page", 64)
    if slug and by == "broadcast":
        raise bad_parameters({"page": "cannot be combined with by=broadcast: a broadcast "
                                      "goes to the leads of every page"})
    if by == "variant" and not slug:
        raise bad_parameters({"page": "required with by=variant: the page whose test to show"})
    page_id = None
    if slug:
        page_id = db.session.scalar(select(Page.id).where(Page.slug == slug))
        if page_id is None:
            raise bad_parameters({"page": f"no page with slug {slug!r}"})
    start = datetime.combine(first, time()) if first else None
    end = datetime.combine(last + timedelta(days=1), time()) if last and last.year < 9999 else None
    report = metrics.report(start=start, end=end, page_id=page_id,
                            by=None if by in ("broadcast", "reason", "variant") else by)
    extra = {}
    if by == "reason":
        rows = [reason.as_json() for reason in reasons.rejection_reasons(start, end, page_id)]
    elif by == "variant":
        test = page_tests.test_report(db.session.get(Page, page_id), start=start, end=end)
        rows = [variant_json(numbers) for numbers in test.rows]
        extra["warnings"] = test.warnings
    elif by == "broadcast":
        rows = [{"group": numbers.name, "state": numbers.state,
                 "started_at": iso(numbers.started_at), **numbers.as_json()}
                for numbers in broadcasts.started_in(start, end)]
    else:
        rows = [{"group": group, **numbers_json(numbers)}
                for group, numbers in report.rows.items()]
    return {
        "from": first.isoformat() if first else None,
        "to": last.isoformat() if last else None,
        "page": slug or None,
        "by": by,
        "currency": metrics.currency_label() or None,
        "total": numbers_json(report.total),
        "rows": rows,
        **extra,
    }
