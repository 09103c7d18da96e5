"""Dashboard area: deliveries that need the owner (unknown, failed, waiting to retry),
each with a button to resend it on purpose."""

from flask import abort, flash, redirect, render_template, request, url_for

from capture.mail import actions
from capture.admin import bp
from capture.db import db
from capture.models import Delivery

PER_PAGE = 50
# The filter tabs: status (None: all three) and label.
FILTERS = {"": "All", "unknown": "Unknown", "failed": "Failed", "retry": "Waiting to retry"}


@bp.get("/deliveries")
def deliveries():
    """Emails that may not have arrived, failed or wait for their next try."""
    status = request.args.get("status", "")
    status = status if status in FILTERS else ""
    page = min(max(request.args.get("page", 1, type=int) or 1, 1), 10**9)
    rows, total = actions.needing_owner(status or None, offset=(page - 1) * PER_PAGE,
                                        limit=PER_PAGE)
    pages = max((total + PER_PAGE - 1) // PER_PAGE, 1)
    if page > pages:
        return redirect(url_for("admin.deliveries", status=status or None, page=pages))
    return render_template("admin/deliveries/index.html", rows=rows, total=total,
                           status=status, filters=FILTERS, page=page, pages=pages)


@bp.post("/deliveries/<int:delivery_id>/resend")
def deliveries_resend(delivery_id: int):
    """Resend one email on purpose: it goes out once, on the next scheduler run."""
    delivery = db.session.get(Delivery, delivery_id)
    if delivery is None:
        abort(404)
    try:
        actions.resend(delivery)
    except ValueError as error:
        flash(f"Not resent: {error}", "error")
    else:
        flash(f"{delivery.step} ({delivery.sequence}) to {delivery.lead.email} is queued: "
              "it goes out on the next scheduler run.", "success")
    status = request.form.get("status", "")
    return redirect(url_for("admin.deliveries", status=status if status in FILTERS and status
                            else None))
