"""Sending broadcasts inside the scheduler's tick: start the due ones, take their
recipients, send their queued emails after confirmations and sequence steps, finish them.

A broadcast's recipients are its segment's audience when sending starts. They are
taken in chunks by lead id (`Broadcast.taken_through` is the cursor), each chunk one
INSERT … SELECT of `queued` delivery rows that skips a lead who already has one (the
unique (lead, sequence, step) key, with sequence "" and step = the broadcast's name),
so a crash, a restart, a second process or a second `send` never gives a lead two.
Each chunk is bounded by lead ids found beforehand by a read, so it holds SQLite's
write lock only for its own rows. Queued rows are then claimed like any other work
(`capture.claims`), within the shared rate cap, and handed over by `capture.mail.
handover` exactly as sequence emails are: rendered with pixel, tracked links, footer
and list headers, marked `sending` before the backend call (a crash leaves `unknown`,
never a second email), the outcome recorded after. A subject test draws each chunk's
subjects as it is taken; with a `test`, the recipients outside its share are `held`
until the winner is picked (`capture.mail.broadcast_tests`).
"""

import logging
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import func, insert, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import raiseload

from capture import claims, clock
from capture.db import db
from capture import suppression
from capture.mail import (
    backends,
    broadcast_tests,
    connections,
    handover,
    recipients,
    subject_tests,
    time_values,
    timing,
    work_queue,
)
from capture.mail.broadcasts import Content
from capture.mail.outcomes import Outgoing, Summary
from capture.models import Broadcast, Delivery, Lead
from capture.segments import language, query

log = logging.getLogger(__name__)

# Delivery states of a broadcast's email that are not settled yet; `held`: the rest of
# a subject test's recipients, waiting for the winner (`capture.mail.broadcast_tests`).
OPEN = ("queued", "claimed", "sending", "retry")
UNSETTLED = (*OPEN, "held")
CHUNK = 100
# The pause between two chunks of a take, as a share of the time the chunk took.
TAKE_PAUSE = 0.5


def content_of(broadcast: Broadcast) -> Content:
    """The frozen content of a broadcast row, as the composer renders it."""
    return Content(broadcast.name, broadcast.subject, broadcast.body, broadcast.preheader,
                   broadcast.sender, subjects=tuple(broadcast.subjects or ()),
                   language=broadcast.language)


def start_due(now: datetime) -> int:
    """Scheduled broadcasts whose time has come start sending (one process wins each).
    A read first: a tick with nothing to start writes nothing (no SQLite lock)."""
    due = (Broadcast.state == "scheduled", Broadcast.send_at <= now)
    if db.session.scalar(select(Broadcast.id).where(*due).limit(1)) is None:
        db.session.rollback()
        return 0
    started = db.session.execute(
        update(Broadcast).where(*due).values(state="sending", started_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return started or 0


def take_all(now: datetime, seconds: float) -> int:
    """Take the recipients of every sending broadcast whose take is not done, chunk by
    chunk, for at most about `seconds` (the next tick goes on). Returns how many
    recipients were taken."""
    deadline = time.monotonic() + seconds
    taken = 0
    pending = db.session.scalars(
        select(Broadcast.id).where(Broadcast.state == "sending", Broadcast.taken_at.is_(None))
        .order_by(Broadcast.send_at)).all()
    for broadcast_id in pending:
        while time.monotonic() < deadline:
            started = time.monotonic()
            added = take_chunk(broadcast_id, now)
            if added is None:
                break
            taken += added
            # A pause as long as half the chunk took: writers waiting for SQLite's
            # lock (an opt-in, a click) get it between two chunks, instead of
            # retrying into the next one.
            time.sleep((time.monotonic() - started) * TAKE_PAUSE)
    return taken


def take_chunk(broadcast_id: int, now: datetime) -> int | None:
    """Queue one chunk of the broadcast's recipients (BROADCAST_TAKE_ROWS leads by id
    after the cursor). Returns how many were queued, or None when the take is done
    (or not this process's to do: cancelled, or another process moved the cursor)."""
    row = db.session.execute(
        select(Broadcast.name, Broadcast.state, Broadcast.segment, Broadcast.taken_through,
               Broadcast.taken_at, Broadcast.recipients, Broadcast.subjects, Broadcast.test,
               Broadcast.test_phase).where(Broadcast.id == broadcast_id)).one_or_none()
    db.session.rollback()
    if row is None or row.state != "sending" or row.taken_at is not None:
        return None
    # Checked per lead: the chunk's leads come by id, each probed for the segment's
    # keys (no walk of every lead, or every event, for each chunk).
    audience = query.audience_ids(language.parse(row.segment or {}), per_lead=True)
    cursor = row.taken_through or 0
    # A read first: the chunk's last lead id, outside any transaction (no lock).
    window = (audience.where(Lead.id > cursor).order_by(Lead.id)
              .limit(current_app.config["BROADCAST_TAKE_ROWS"]).subquery())
    top = db.session.scalar(select(func.max(window.c.id)))
    db.session.rollback()
    moved = (update(Broadcast)
             .where(Broadcast.id == broadcast_id, Broadcast.state == "sending",
                    Broadcast.taken_through == cursor, Broadcast.taken_at.is_(None))
             .execution_options(synchronize_session=False))
    if top is None:
        done = db.session.execute(moved.values(taken_at=now)).rowcount
        db.session.commit()
        if done:
            log.info("broadcast %s: recipients taken", row.name)
        return None
    # A subject test's recipients wait (`held`) but for its share, drawn below.
    testing = bool(row.test) and row.test_phase == "testing"
    chosen = (audience.add_columns(
        literal(broadcast_id), literal(""), literal(row.name), literal(f"{row.name}.md"),
        literal("held" if testing else "queued"), literal(0), literal(now), literal(""),
        literal(""))
        .where(Lead.id > cursor, Lead.id <= top))
    statement = _insert_ignoring_duplicates().from_select(
        ["lead_id", "broadcast_id", "sequence", "step", "filename", "status", "attempts",
         "created_at", "subject", "error"], chosen)
    added = db.session.execute(statement).rowcount or 0
    if row.subjects:
        broadcast_tests.assign(broadcast_id, row.name, row.subjects,
                               row.test if testing else None, row.recipients, cursor, top)
    if not db.session.execute(moved.values(taken_through=top,
                                           recipients=Broadcast.recipients + added)).rowcount:
        db.session.rollback()  # cancelled, or another process took this chunk
        return None
    db.session.commit()
    return added


def _insert_ignoring_duplicates():
    """INSERT into deliveries that skips rows the unique key already has."""
    if db.engine.dialect.name == "postgresql":
        return postgresql.insert(Delivery.__table__).on_conflict_do_nothing()
    if db.engine.dialect.name == "sqlite":
        return sqlite.insert(Delivery.__table__).on_conflict_do_nothing()
    return insert(Delivery.__table__).prefix_with("IGNORE")


def claim_queued(now: datetime, limit: int) -> list[int]:
    """Take up to `limit` queued broadcast emails (their delivery ids, oldest first)."""
    if limit <= 0:
        return []
    wanted = select(Delivery.id).where(Delivery.status == "queued")
    shut = shut_windows(now)
    if shut:
        wanted = wanted.where(Delivery.broadcast_id.not_in(shut))
    wanted = (wanted
              .order_by(Delivery.status, Delivery.retry_at, Delivery.id).limit(limit))
    return claims.claim(Delivery, wanted, Delivery.status, "queued",
                        {"status": "claimed", "claimed_at": now})


def shut_windows(now: datetime) -> list[int]:
    """The sending broadcasts whose send window is shut at `now`: their queued emails
    wait for it to open, as a sequence's do."""
    rows = db.session.execute(
        select(Broadcast.id, Broadcast.send_window, Broadcast.timezone)
        .where(Broadcast.state == "sending", Broadcast.send_window.is_not(None))).all()
    return [row.id for row in rows
            if not timing.inside_window(time_values.parse_window(row.send_window),
                                        ZoneInfo(row.timezone), now)]


def send_claimed(ids: list[int], sender: connections.Sender, summary: Summary) -> None:
    """Send claimed broadcast emails, CHUNK at a time. StopBatch when the mail server
    failed (the unsent ones are back in the queue)."""
    for start in range(0, len(ids), CHUNK):
        try:
            _send_chunk(ids[start:start + CHUNK], sender, summary)
        except handover.StopBatch:
            work_queue.give_back(unsent=ids[start + CHUNK:])
            raise


def _send_chunk(ids: list[int], sender: connections.Sender, summary: Summary) -> None:
    """Check each recipient again (still subscribed, not suppressed), render and hand
    the emails over, as a sequence step's are."""
    try:
        deliveries = db.session.scalars(
            select(Delivery).where(Delivery.id.in_(ids), Delivery.status == "claimed")
            .options(raiseload("*"))).all()
        recipients_by_id = recipients.load(d.lead_id for d in deliveries)
        contents = {row.id: content_of(row) for row in db.session.scalars(
            select(Broadcast).where(Broadcast.id.in_({d.broadcast_id for d in deliveries})))}
        suppressed = suppression.suppressed_among(lead.email
                                                  for lead in recipients_by_id.values())
        emails, leads = [], {}
        for delivery in deliveries:
            lead = recipients_by_id[delivery.lead_id]
            reason = why_not(lead, suppressed)
            if reason:
                delivery.status, delivery.error = "skipped", f"not sent: {reason}"
                continue
            content = subject_tests.chosen(contents[delivery.broadcast_id],
                                           delivery.subject_index)
            emails.append(Outgoing(delivery.id, None, delivery.lead_id, lead.page_id,
                                   content, content))
            leads[delivery.id] = lead
        db.session.flush()
    except Exception:  # a bug must not strand the chunk: held, looked at again later
        log.exception("sending: broadcast deliveries %s failed", ids)
        db.session.rollback()
        work_queue.give_back(unsent=ids, hold=True)
        return
    db.session.expunge_all()
    db.session.commit()
    sender.submit(handover.render_all(emails, leads, summary, between=sender.pump))


def why_not(lead: Lead | recipients.Recipient, suppressed: set[str]) -> str:
    """Why a lead taken as a recipient must not get the broadcast now, or ''."""
    if lead.subscription != "subscribed":
        return lead.subscription
    if lead.email in suppressed:
        return "suppressed"
    return ""


def retry(delivery: Delivery, backend: backends.Backend, summary: Summary) -> None:
    """Try a broadcast email again after a temporary failure (or the owner's resend)."""
    broadcast = db.session.get(Broadcast, delivery.broadcast_id)
    suppressed = suppression.suppressed_among([delivery.lead.email])
    reason = ("the broadcast was cancelled" if broadcast.state == "cancelled"
              else why_not(delivery.lead, suppressed))
    if reason:
        delivery.status, delivery.error = "failed", f"not sent: {reason}"
        summary.failed += 1
        db.session.commit()
        return
    window = (time_values.parse_window(broadcast.send_window)
              if broadcast.send_window else None)
    now = clock.utcnow()
    opens = timing.window_opening(window, ZoneInfo(broadcast.timezone or "UTC"), now)
    if opens > now:
        # As a sequence's retry: it waits for the broadcast's send window to open.
        delivery.status, delivery.retry_at = "retry", opens
        db.session.commit()
        return
    content = subject_tests.chosen(content_of(broadcast), delivery.subject_index)
    handover.deliver(delivery, None, content, content, backend, summary)


def finish(now: datetime) -> int:
    """Broadcasts whose take is done, whose subject test (if any) picked its winner
    and whose emails are all settled are `sent` (read first, so a tick with none to
    finish writes nothing)."""
    unsettled = (select(Delivery.id).where(Delivery.broadcast_id == Broadcast.id,
                                           Delivery.status.in_(UNSETTLED)).exists())
    done = (Broadcast.state == "sending", Broadcast.taken_at.is_not(None), ~unsettled,
            or_(Broadcast.test_phase.is_(None), Broadcast.test_phase == "picked"))
    if db.session.scalar(select(Broadcast.id).where(*done).limit(1)) is None:
        db.session.rollback()
        return 0
    finished = db.session.execute(
        update(Broadcast).where(*done).values(state="sent", finished_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return finished or 0
