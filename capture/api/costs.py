"""API operations on ad spend (`capture.numbers.spend`): put cost rows, list them."""

from datetime import timedelta
from typing import Any

from flask import request
from sqlalchemy import select

from capture.api import bp
from capture.api.errors import ApiError, bad_parameters, invalid
from capture.api.inputs import json_body, query_date, refuse_unknown
from capture.db import db
from capture.models import Page
from capture.numbers import spend

# The most rows one call may put.
MAX_ROWS = 5000


@bp.put("/costs")
def put_costs():
    """A list of rows `{date, source, campaign, page, amount, currency}` (or
    `{"rows": [...]}`): each replaces a row of the same date, source, campaign and
    page. 200 `{"added", "replaced"}`; 422 naming every bad row (`rows[3].amount`),
    nothing saved."""
    body = json_body()
    if isinstance(body, dict):
        refuse_unknown(body, {"rows"}, body=True)
        body = body.get("rows")
    if not isinstance(body, list) or not body:
        raise invalid({"rows": "give a non-empty list of cost rows"})
    if len(body) > MAX_ROWS:
        raise ApiError(413, f"At most {MAX_ROWS} rows in one call.")
    pages = spend.Pages()
    rows, problems = [], {}
    for index, values in enumerate(body):
        if not isinstance(values, dict):
            problems[f"rows[{index}]"] = "must be an object"
            continue
        unknown = sorted(set(values) - set(spend.COLUMNS))
        if unknown:
            problems[f"rows[{index}].{unknown[0]}"] = (
                f"unknown; the keys are {', '.join(spend.COLUMNS)}")
            continue
        row, errors = spend.check_row(values, pages)
        for error in errors:
            name, _, message = error.partition(": ")
            problems.setdefault(f"rows[{index}].{name}", message)
        if row is not None:
            rows.append(row)
    if problems:
        raise invalid(problems)
    added, replaced = spend.save(rows)
    db.session.commit()
    return {"added": added, "replaced": replaced}


@bp.get("/costs")
def list_costs():
    """The cost rows of `from`/`to` (whole UTC days, both included; default: all)."""
    refuse_unknown(request.args, {"from", "to"}, body=False)
    first, last = query_date("from"), query_date("to")
    if first and last and first > last:
        raise bad_parameters({"from": "is after to: no day can match; swap the dates"})
    end = last + timedelta(days=1) if last and last.year < 9999 else None
    slugs = dict(db.session.execute(select(Page.id, Page.slug)).all())
    return {"rows": [_row_json(row, slugs) for row in spend.listing(first, end)]}


def _row_json(row, slugs: dict[int, str]) -> dict[str, Any]:
    return {"date": row.day.isoformat(), "source": row.source, "campaign": row.campaign,
            "page": slugs.get(row.page_id), "amount": f"{row.amount:.2f}",
            "currency": row.currency}
