"""The winner of a broadcast's subject test, from its numbers per subject, and the
scheduler's part that picks it once the wait is over and sends it to the rest.

The rule (docs/use/broadcasts.md): `pick_by: clicks` compares the people who clicked
over the emails delivered, per subject; `pick_by: revenue` the revenue credited by
last click (`capture.numbers.attribution`) per email delivered, so a group one email
larger does not win by its size. A tie goes to the lower subject; when no subject has
any (nothing delivered, no click, no revenue) the first subject goes, and the result
says so. The numbers it was picked on are kept with the winner (`Broadcast.test_result`).
"""

import logging
from datetime import datetime
from typing import Any

from capture import clock
from capture.db import db
from capture.mail import broadcast_tests
from capture.numbers.broadcasts import SubjectNumbers, broadcast_subjects

log = logging.getLogger(__name__)


def value(numbers: SubjectNumbers, pick_by: str) -> float:
    """What a subject is compared on: its click rate, or its revenue per email
    delivered (0 before anything is delivered)."""
    if not numbers.delivered:
        return 0.0
    if pick_by == "clicks":
        return numbers.clicks / numbers.delivered
    return float(numbers.revenue) / numbers.delivered


def decide(subjects: list[SubjectNumbers], pick_by: str) -> dict[str, Any]:
    """The winner and what it was picked on: {pick_by, winner, runner_up (the best of
    the others), no_data, delivered, subjects: [{index, subject, delivered, clicks,
    revenue, value}]} (indexes 0-based)."""
    rows = [{"index": n.index, "subject": n.subject, "delivered": n.delivered,
             "clicks": n.clicks, "revenue": f"{n.revenue:.2f}", "value": value(n, pick_by)}
            for n in subjects]
    # The highest value; on a tie the lower index (sorted is stable).
    ranked = sorted(rows, key=lambda row: (-row["value"], row["index"]))
    no_data = ranked[0]["value"] == 0
    winner = min(row["index"] for row in rows) if no_data else ranked[0]["index"]
    runner_up = next(row["index"] for row in ranked if row["index"] != winner)
    return {"pick_by": pick_by, "winner": winner, "runner_up": runner_up,
            "no_data": no_data, "delivered": sum(row["delivered"] for row in rows),
            "subjects": rows, "picked_at": clock.utcnow().isoformat(timespec="seconds")}


def pick_due(now: datetime | None = None) -> int:
    """Pick the winner of every broadcast whose test wait is over and release its
    other recipients with it (one process does each: `broadcast_tests.release`).
    Returns how many winners were picked. A read first: nothing to pick writes
    nothing."""
    due = broadcast_tests.waiting_due(now or clock.utcnow())
    if not due:
        db.session.rollback()
        return 0
    numbers = broadcast_subjects(due)
    picked = 0
    for row in due:
        broadcast_id, name = row.id, row.name
        result = decide(numbers[broadcast_id], row.test["pick_by"])
        released = broadcast_tests.release(broadcast_id, result["winner"], result)
        if released is not None:
            picked += 1
            log.info("broadcast %s: %s; %s recipients get it", name,
                     broadcast_tests.outcome(result), released)
    return picked

