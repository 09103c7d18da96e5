"""What the owner does with broadcasts: check the files, see their state and audience,
preview, test, send (freeze and schedule) and cancel. Every door (the commands, the
dashboard, the API) calls these.

Decisions (docs/use/broadcasts.md): `send` freezes the file into a Broadcast row and
the row is what goes out; `send` again on a scheduled broadcast only moves its time,
on a sending or sent one it changes nothing; a cancelled broadcast is never sent again
under its name; a file edited after `send` is reported by `check`, never sent.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from capture import clock
from capture.db import db
from capture.mail import actions, broadcasts, compose, mime
from capture.mail.broadcast_sending import UNSETTLED, content_of
from capture.mail.broadcasts import BroadcastFile, Content
from capture.models import Broadcast, Delivery, Lead
from capture.segments import language, query

STATES = ("draft", "scheduled", "sending", "sent", "cancelled")
# A time given for "now" may be this far in the past (a form filled in slowly).
PAST_GRACE = timedelta(minutes=5)


class Refused(Exception):
    """The owner's request cannot be done; the message says why (one line each)."""


@dataclass
class Outcome:
    """What an owner's action did: a sentence, and whether anything changed."""

    message: str
    changed: bool = True


@dataclass
class Status:
    """One broadcast as the list shows it: its file and row (either may be missing)."""

    name: str
    file: BroadcastFile | None
    row: Broadcast | None

    @property
    def state(self) -> str:
        return self.row.state if self.row is not None else "draft"

    @property
    def phase(self) -> str | None:
        """Where a sending broadcast's subject test is: testing, waiting or picked
        (None without a test, or once it is no longer sending)."""
        return self.row.test_phase if self.row is not None and self.state == "sending" else None

    @property
    def label(self) -> str:
        """The state as `broadcasts list` shows it: `sending (waiting)` during a test."""
        return f"{self.state} ({self.phase})" if self.phase else self.state

    @property
    def differs(self) -> bool:
        """The file was edited after `send` (or removed): the frozen content is sent."""
        return self.row is not None and (self.file is None
                                         or self.file.file_hash != self.row.file_hash)


def rows() -> dict[str, Broadcast]:
    """Every Broadcast row, by name."""
    return {row.name: row for row in db.session.scalars(select(Broadcast))}


def statuses() -> list[Status]:
    """Every broadcast, a file or a row: scheduled and sending first, then drafts, then
    the finished ones, newest first within each."""
    files = {file.name: file for file in broadcasts.load_all()}
    known = rows()
    found = [Status(name, files.get(name), known.get(name)) for name in {*files, *known}]
    order = {"sending": 0, "scheduled": 1, "draft": 2, "sent": 3, "cancelled": 4}
    return sorted(found, key=lambda s: (order[s.state], -(s.row.send_at.timestamp()
                                                          if s.row else 0), s.name))


def status(name: str) -> Status:
    """One broadcast by name; Refused when there is neither a file nor a row."""
    row = db.session.scalar(select(Broadcast).where(Broadcast.name == name))
    file = broadcasts.find(name)
    if row is None and file is None:
        raise Refused(f"no broadcast {name!r}: no file {name}.md in {broadcasts.folder()}")
    return Status(name, file, row)


def check() -> tuple[list[str], list[str]]:
    """(problems, notes): every problem of every file as `file:line: message`, and a
    note for each file that differs from what was frozen when it was sent."""
    problems, notes = [], []
    known = rows()
    for file in broadcasts.load_all():
        row = known.get(file.name)
        problems += [str(p) for p in file.problems]
        if row is None:
            problems += [str(p) for p in _draft_problems(file, clock.utcnow())]
        elif file.file_hash != row.file_hash:
            notes.append(f"{file.filename}:1: differs from what was frozen at `send` "
                         f"({row.created_at:%Y-%m-%d %H:%M} UTC): the frozen content is "
                         "what is sent; to send the new text, copy it to a new name")
    return problems, notes


def _draft_problems(file: BroadcastFile, now: datetime) -> list[str]:
    """What only a draft can have wrong: a send_at in the past, a template that fails."""
    problems = []
    if file.ok and file.send_at is not None and file.send_at < now - PAST_GRACE:
        problems.append(f"{file.filename}:{file.send_at_line}: send_at "
                        f"{file.send_at:%Y-%m-%d %H:%M} UTC is in the past")
    if file.ok:
        for slug in query.unknown_pages(file.segment):
            problems.append(f"{file.filename}:{file.segment_line}: segment.pages: no page "
                            f"{slug!r} (see `pages list`)")
        try:
            render(file.content(), actions.sample_lead())
        except compose.RenderError as error:
            problems.append(f"{file.filename}:1: template error: {error}")
    return problems


def segment_of(item: BroadcastFile | Broadcast):
    """The parsed segment of a file or of a frozen row."""
    if isinstance(item, BroadcastFile):
        return item.segment
    return language.parse(item.segment or {})


def audience(name: str) -> int:
    """How many leads the broadcast would reach now: its segment's subscribed,
    unsuppressed members (the frozen segment once sent)."""
    found = status(name)
    if found.row is not None:
        return query.count_audience(segment_of(found.row))
    if not found.file.ok:
        raise Refused("; ".join(str(p) for p in found.file.problems))
    return query.count_audience(found.file.segment)


def content(name: str) -> Content:
    """What the broadcast sends: the frozen content once sent, else the file's."""
    found = status(name)
    if found.row is not None:
        return content_of(found.row)
    if not found.file.ok:
        raise Refused("; ".join(str(p) for p in found.file.problems))
    return found.file.content()


def render(content: Content, lead) -> dict[str, str]:
    """Subject, preheader, text and HTML of the broadcast for `lead` (a preview:
    untracked links, an unsubscribe link that unsubscribes nobody)."""
    return compose.render_step(content, content, lead, getattr(lead, "page", None),
                               unsubscribe_url=actions.preview_unsubscribe_url())


def preview(name: str, lead: Lead | None = None) -> dict[str, str]:
    """The broadcast rendered for `lead` (a sample lead when None)."""
    try:
        return render(content(name), lead or actions.sample_lead())
    except compose.RenderError as error:
        raise Refused(f"{name}.md: template error: {error}") from None


def send_test(name: str, to: str) -> mime.Email:
    """One copy to `to`, for the sample lead, "[Test]" in the subject: not counted,
    nothing recorded. Raises Refused, compose.RenderError, backends.MailError."""
    mailed = content(name)
    return actions.send_test(mailed, mailed, to)


def send(name: str, at: datetime | None = None) -> Outcome:
    """Freeze the file into a Broadcast row and schedule it at `at`, the file's
    send_at, or now. Again on a scheduled broadcast: its time moves (the content
    stays as frozen); on a sending or sent one: nothing changes. Refused with every
    problem of the file (nothing is frozen then)."""
    now = clock.utcnow()
    row = db.session.scalar(select(Broadcast).where(Broadcast.name == name))
    if row is not None:
        return _send_again(row, at, now)
    file = broadcasts.find(name)
    if file is None:
        raise Refused(f"no broadcast file {name}.md in {broadcasts.folder()}")
    problems = [str(p) for p in file.problems] or _draft_problems(file, now)
    if problems:
        raise Refused("\n".join(problems))
    if at is not None and at < now - PAST_GRACE:
        raise Refused(f"the time {at:%Y-%m-%d %H:%M} UTC is in the past")
    when = max(at or file.send_at or now, now)
    db.session.add(Broadcast(
        name=name, state="scheduled", subject=file.subject, preheader=file.preheader,
        sender=file.sender, language=file.language, body=file.body, segment=file.segment_data,
        file_hash=file.file_hash, send_at=when, send_window=file.send_window,
        timezone=file.timezone, created_at=now, subjects=file.subjects,
        **({"test": file.test, "test_phase": "testing"} if file.test else {})))
    try:
        db.session.commit()
    except IntegrityError:  # sent at the same moment by another door
        db.session.rollback()
        return Outcome(f"{name} was just sent by someone else: nothing changed", False)
    if when <= now:
        return Outcome(f"{name}: content frozen; sending starts with the scheduler's next run")
    return Outcome(f"{name}: content frozen; scheduled for {when:%Y-%m-%d %H:%M} UTC")


def _send_again(row: Broadcast, at: datetime | None, now: datetime) -> Outcome:
    if row.state in ("sending", "sent"):
        return Outcome(f"{row.name} is already {row.state} (started "
                       f"{row.started_at:%Y-%m-%d %H:%M} UTC): nothing changed, nobody gets "
                       "it twice", False)
    if row.state == "cancelled":
        raise Refused(f"{row.name} was cancelled: a cancelled broadcast is not sent again; "
                      "copy the file to a new name to send it")
    if at is not None and at < now - PAST_GRACE:
        raise Refused(f"the time {at:%Y-%m-%d %H:%M} UTC is in the past")
    when = max(at, now) if at is not None else now
    if when == row.send_at or (at is None and row.send_at <= now):
        return Outcome(f"{row.name} is already scheduled for {row.send_at:%Y-%m-%d %H:%M} UTC: "
                       "nothing changed", False)
    moved = db.session.execute(
        update(Broadcast).where(Broadcast.id == row.id, Broadcast.state == "scheduled")
        .values(send_at=when).execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    if not moved:
        return Outcome(f"{row.name} started sending meanwhile: nothing changed", False)
    return Outcome(f"{row.name}: moved to {when:%Y-%m-%d %H:%M} UTC (the content stays as "
                   "frozen at the first send)")


def cancel(name: str) -> Outcome:
    """Stop what is not sent yet: a scheduled broadcast is cancelled whole, a sending
    one keeps what went out and drops its queued emails (an email being handed to the
    mail server right now still goes). After the last email: nothing changes."""
    found = status(name)
    row = found.row
    if row is None:
        return Outcome(f"{name} is a draft (never sent): nothing to cancel", False)
    if row.state in ("sent", "cancelled"):
        return Outcome(f"{name} is already {row.state}: nothing changed", False)
    now = clock.utcnow()
    stopped = db.session.execute(
        update(Broadcast).where(Broadcast.id == row.id,
                                Broadcast.state.in_(("scheduled", "sending")))
        .values(state="cancelled", cancelled_at=now)
        .execution_options(synchronize_session=False)).rowcount
    if not stopped:
        db.session.rollback()
        return Outcome(f"{name} finished meanwhile: nothing changed", False)
    # Queued (and held: waiting for a test's winner) and claimed-but-not-started
    # emails are dropped (a claimed one is only sent after it is marked `sending`,
    # which its status no longer allows); a retry fails with the reason.
    dropped = db.session.execute(
        update(Delivery).where(Delivery.broadcast_id == row.id,
                               (Delivery.status.in_(("queued", "held")))
                               | ((Delivery.status.in_(("claimed", "retry")))
                                  & (Delivery.attempts == 0)))
        .values(status="cancelled", error="not sent: the broadcast was cancelled")
        .execution_options(synchronize_session=False)).rowcount or 0
    dropped += db.session.execute(
        update(Delivery).where(Delivery.broadcast_id == row.id, Delivery.status == "retry")
        .values(status="failed", error="not sent: the broadcast was cancelled", retry_at=None)
        .execution_options(synchronize_session=False)).rowcount or 0
    db.session.commit()
    sent = db.session.scalar(select(func.count()).select_from(Delivery).where(
        Delivery.broadcast_id == row.id, Delivery.status == "sent")) or 0
    return Outcome(f"{name} cancelled: {dropped} email(s) not sent, {sent} already sent")


def progress(row: Broadcast) -> dict[str, int]:
    """How far a broadcast is: its deliveries by status, and how many are settled (an
    email held for a test's winner is not)."""
    counts = dict(db.session.execute(
        select(Delivery.status, func.count()).where(Delivery.broadcast_id == row.id)
        .group_by(Delivery.status)).all())
    settled = sum(number for state, number in counts.items() if state not in UNSETTLED)
    return {**counts, "settled": settled, "total": sum(counts.values())}
