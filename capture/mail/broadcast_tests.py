"""A broadcast's subject test, phase by phase: the share drawn as the recipients are
taken, the wait once it is sent, the rest released with the winner, and the phases in
words for the owner.

Phases (`Broadcast.test_phase`): `testing` from `send` (the share goes out; the other
recipients' deliveries are `held`, which nothing sends) → `waiting` once the share is
taken and none of its emails is queued, claimed or being handed over (a 4xx retry does
not hold the test back), until `test_until` = then + wait_hours → `picked`: the winner
is stored with the numbers it was picked on, and the held deliveries become `queued`
with the winner's subject, in one transaction that only one process can make (the
phase is the guard). Each lead still has one delivery row, so nobody gets two emails;
every step is a row in the database, so a restart between phases changes nothing.
The winner itself is worked out from the numbers (`capture.numbers.subject_winners`).
"""

import logging
import random
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update

from capture.db import db
from capture.mail.subject_tests import label
from capture.models import Broadcast, Delivery

log = logging.getLogger(__name__)

# A share email that is still on its way: the wait starts once none is.
GOING = ("queued", "claimed", "sending")

_DELIVERIES = Delivery.__table__
_DRAWN = (update(_DELIVERIES).where(_DELIVERIES.c.id == bindparam("b_id"))
          .values(status="queued", subject_index=bindparam("b_index")))


def in_share(recipients: int, share: int) -> int:
    """How many of the first `recipients` taken belong to a share of `share` percent
    (rounded half up, so a share of a small list is never empty by rounding down)."""
    return (recipients * share * 2 + 100) // 200


def assign(broadcast_id: int, name: str, subjects: list[str], test: dict[str, Any] | None,
           taken_before: int, cursor: int, top: int) -> None:
    """Draw the subjects of one chunk of a broadcast's recipients (leads after `cursor`
    up to `top`, just queued or held by the take, inside its transaction).

    Without a test every recipient gets a subject; with one, the chunk's part of the
    share does (the others stay held) so that the share of everyone taken so far is
    `share` percent. Who is drawn comes from a generator seeded with the broadcast and
    the chunk, so taking the same chunk again draws the same leads; the subjects go
    round in turn after a shuffle, so each has as many emails as the others, give or
    take one."""
    ids = db.session.scalars(
        select(Delivery.id).where(Delivery.lead_id > cursor, Delivery.lead_id <= top,
                                  Delivery.sequence == "", Delivery.step == name,
                                  Delivery.broadcast_id == broadcast_id)
        .order_by(Delivery.lead_id)).all()
    share = test["share"] if test else 100
    before = in_share(taken_before, share)
    count = in_share(taken_before + len(ids), share) - before
    drawn = random.Random(f"{broadcast_id}:{cursor}").sample(ids, count)
    if drawn:
        db.session.execute(_DRAWN, [{"b_id": delivery_id,
                                     "b_index": (before + turn) % len(subjects)}
                                    for turn, delivery_id in enumerate(drawn)])


def share_sent(now: datetime) -> int:
    """Testing broadcasts whose share is out start waiting: test_until = now +
    wait_hours. A read first: a tick with no test to move writes nothing."""
    going = (select(Delivery.id).where(Delivery.broadcast_id == Broadcast.id,
                                       Delivery.status.in_(GOING)).exists())
    ready = (Broadcast.state == "sending", Broadcast.test_phase == "testing",
             Broadcast.taken_at.is_not(None), ~going)
    rows = db.session.execute(select(Broadcast.id, Broadcast.name, Broadcast.test)
                              .where(*ready)).all()
    db.session.rollback()
    moved = 0
    for row in rows:
        until = now + timedelta(hours=row.test["wait_hours"])
        done = db.session.execute(
            update(Broadcast).where(Broadcast.id == row.id, *ready)
            .values(test_phase="waiting", test_until=until)
            .execution_options(synchronize_session=False)).rowcount
        db.session.commit()
        if done:
            log.info("broadcast %s: test share sent; the winner is picked at %s UTC",
                     row.name, f"{until:%Y-%m-%d %H:%M}")
            moved += 1
    return moved


def waiting_due(now: datetime) -> list[Broadcast]:
    """The sending broadcasts whose wait is over: their winner is to be picked."""
    rows = db.session.scalars(
        select(Broadcast).where(Broadcast.state == "sending", Broadcast.test_phase == "waiting",
                                Broadcast.test_until <= now).order_by(Broadcast.id)).all()
    return list(rows)


def release(broadcast_id: int, winner: int, result: dict[str, Any]) -> int | None:
    """Store the winner and the numbers it was picked on, and give the held recipients
    the winner's subject: they are queued, sent by the next claims. None when another
    process did it first (or the broadcast was cancelled meanwhile); else how many
    recipients were released."""
    picked = db.session.execute(
        update(Broadcast).where(Broadcast.id == broadcast_id, Broadcast.state == "sending",
                                Broadcast.test_phase == "waiting")
        .values(test_phase="picked", winner=winner, test_result=result)
        .execution_options(synchronize_session=False)).rowcount
    if not picked:
        db.session.rollback()
        return None
    released = db.session.execute(
        update(Delivery).where(Delivery.broadcast_id == broadcast_id, Delivery.status == "held")
        .values(status="queued", subject_index=winner)
        .execution_options(synchronize_session=False)).rowcount or 0
    db.session.commit()
    return released


def describe(row) -> str:
    """Where a broadcast's subject test is, in one sentence for the owner ('' without
    a test). `row`: a Broadcast, or a draft's file (capture.mail.broadcasts)."""
    if row is None or not row.test:
        return ""
    test, phase = row.test, getattr(row, "test_phase", None)
    by = "clicks" if test["pick_by"] == "clicks" else "revenue credited"
    if phase == "picked" and row.test_result:
        return outcome(row.test_result)
    hours = f"{test['wait_hours']:g} hour{'' if test['wait_hours'] == 1 else 's'}"
    if phase == "waiting" and row.test_until is not None:
        return (f"Subject test: the {test['share']} % share is sent; the winner by {by} is "
                f"picked at {row.test_until:%Y-%m-%d %H:%M} UTC and goes to the rest.")
    return (f"Subject test: {test['share']} % of the recipients get one of the "
            f"{len(row.subjects)} subjects first; {hours} after that share is sent, the "
            f"subject with the most {by} per email delivered goes to the rest.")


def outcome(result: dict[str, Any]) -> str:
    """The winner in words: "Subject 2 won on clicks: 6.1 % vs 4.0 % (+2.1 points) over
    1,200 delivered" (against the best of the others)."""
    delivered = f"{result['delivered']:,} delivered"
    winner = label(result["winner"]).capitalize()
    if result.get("no_data"):
        what = "email delivered" if not result["delivered"] else (
            "click" if result["pick_by"] == "clicks" else "revenue credited")
        return (f"No {what} in the test ({delivered}): {label(result['winner'])}, the "
                "first, went to the rest.")
    rows = {row["index"]: row for row in result["subjects"]}
    best, next_best = rows[result["winner"]]["value"], rows[result["runner_up"]]["value"]
    if best == next_best:
        tied = " and ".join(label(row["index"]) for row in result["subjects"]
                            if row["value"] == best)
        each = (f"{best * 100:.1f} %" if result["pick_by"] == "clicks"
                else f"{best:,.2f} per email delivered")
        return (f"{tied[0].upper()}{tied[1:]} tied on {result['pick_by']} ({each} each, "
                f"over {delivered}): {label(result['winner'])}, the first, went to the rest.")
    if result["pick_by"] == "clicks":
        margin = (best - next_best) * 100
        return (f"{winner} won on clicks: {best * 100:.1f} % vs {next_best * 100:.1f} % "
                f"(+{margin:.1f} points) over {delivered}.")
    return (f"{winner} won on revenue: {best:,.2f} vs {next_best:,.2f} per email delivered "
            f"(+{best - next_best:,.2f}) over {delivered}.")
