"""The dashboard's first page: the numbers of a period."""

from flask import render_template

from capture import metrics
from capture.admin import bp


@bp.get("/")
def overview():
    """The metrics of all time (periods, chart and warnings come with the overview)."""
    return render_template("admin/overview.html", numbers=metrics.report().total)
