"""The plan: what the coming ticks will send, by the scheduler's own rules. Reads only.

Shown by `flask --app wsgi sequences plan`."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from capture.db import db
from capture.mail import condition_checks, membership, timing, trigger_checks, triggers, work_queue
from capture.mail.library import Library
from capture.mail.sequences import Sequence, Step
from capture.models import Delivery, Enrollment, Page, Upgrade


@dataclass(frozen=True, order=True)
class Planned:
    """One email the scheduler will send: when (the minute of the tick that sends it
    is at or after it), to whom, which step; `retry` for a delivery tried again."""

    when: datetime
    email: str
    sequence: str
    step: str
    retry: bool = False
    # Not sent: why the step is skipped (its `when:` does not hold for the lead now)
    # or held (its `when:` names what does not exist).
    skip: str = ""
    held: str = ""


class _Conditions:
    """Whether each step's `when:` holds, asked once per step for all the plan's leads
    (as the scheduler asks once per step for a chunk), and looked up per lead."""

    def __init__(self, lead_ids: list[int]) -> None:
        self.lead_ids = lead_ids
        self.holding: dict[tuple[str, str], set[int]] = {}
        self.broken: dict[tuple[str, str], str] = {}

    def verdict(self, sequence: Sequence, step: Step, lead_id: int) -> tuple[str, str]:
        """('', '') when the step is sent; (reason, '') when skipped; ('', why) when held."""
        if step.when is None:
            return "", ""
        key = (sequence.name, step.key)
        if key not in self.holding:
            problems = condition_checks.reference_problems(sequence, step)
            self.broken[key] = problems[0].message if problems else ""
            self.holding[key] = (set() if problems
                                 else condition_checks.matching(step, self.lead_ids))
        if self.broken[key]:
            return "", self.broken[key]
        return ("", "") if lead_id in self.holding[key] else ("when: not matched now", "")


@dataclass(frozen=True)
class Entry:
    """One of a lead's enrolments as the plan shows it."""

    sequence: str
    state: str
    entry: int
    last_step: str | None
    next_due_at: datetime | None
    stop_reason: str


def ways_in(name: str | None = None) -> list[tuple[str, str, list[str]]]:
    """Each sequence's triggers in words (its pages' opt-ins, `start_on`, `reenter`)
    and what holds them (problems; empty when they fire), as the scheduler sees them."""
    sequences = [s for s in Library.current().all() if name is None or s.name == name]
    pages: dict[str, list[str]] = {}
    for sequence_name, slug in db.session.execute(
            select(Page.sequence, Page.slug).where(Page.sequence.is_not(None))
            .order_by(Page.slug)):
        pages.setdefault(sequence_name, []).append(slug)
    checked = trigger_checks.status(sequences)
    return [(sequence.name,
             triggers.describe(sequence.start_on, pages.get(sequence.name, []),
                               sequence.reenter),
             [str(p) for p in checked.held.get(sequence.name, [])]
             + ([f"{sequence.name}: its files have problems (sequences check)"]
                if sequence.problems and sequence.start_on else []))
            for sequence in sequences]


def entries(lead_id: int) -> list[Entry]:
    """Every enrolment of one lead, each its own row with its own position."""
    return [Entry(row.sequence, row.state, row.entry, row.last_step, row.next_due_at,
                  row.stop_reason)
            for row in db.session.scalars(select(Enrollment).where(
                Enrollment.lead_id == lead_id).order_by(Enrollment.sequence))]


def plan(now: datetime, horizon: datetime, name: str | None = None,
         limit: int = 200) -> list[Planned]:
    """The emails the ticks from `now` to `horizon` will send, by the scheduler's
    own rules (next_step, the send window, the stored due times, stop_on), as if
    every email were accepted and the rate cap never reached. Reads only."""
    sequences = {s.name: s for s in Library.current().all() if name is None or s.name == name}
    woken = {n for n, sequence in sequences.items() if work_queue.wake_pending(sequence)}
    enrollments = db.session.scalars(
        select(Enrollment).options(joinedload(Enrollment.lead))
        .where(Enrollment.sequence.in_(list(sequences)),
               # A changed folder may make any of its leads due sooner than stored.
               Enrollment.sequence.in_(list(woken))
               | ((Enrollment.state == "active") & (Enrollment.next_due_at <= horizon)),
               Enrollment.state.in_(("active", "waiting")))
        .order_by(Enrollment.next_due_at).limit(limit)
    ).all()
    retries = db.session.scalars(
        select(Delivery).options(joinedload(Delivery.lead))
        .where(Delivery.sequence.in_(list(sequences)), Delivery.status == "retry",
               Delivery.retry_at <= horizon)
        .order_by(Delivery.retry_at).limit(limit)
    ).all()
    lead_ids = [row.lead_id for row in [*enrollments, *retries]]
    upgraded = set(db.session.scalars(select(Upgrade.lead_id).where(Upgrade.lead_id.in_(
        lead_ids))))
    tagged = condition_checks.stop_tags_of(
        lead_ids, {tag for sequence in sequences.values() for tag in sequence.stop_tags})
    conditions = _Conditions(lead_ids)
    rows: list[Planned] = []
    for enrollment in enrollments:
        sequence = sequences[enrollment.sequence]
        if membership.should_stop(enrollment.lead, sequence, upgraded, tagged):
            continue
        # The scheduler looks at a lead at its due time; a change of the folder
        # makes it work that time out again at the next tick.
        look = now if enrollment.sequence in woken else max(now, enrollment.next_due_at or now)
        rows += _planned_steps(enrollment.lead, sequence, enrollment.last_step,
                               enrollment.last_filename,
                               enrollment.last_sent_at or enrollment.started_at, look, horizon,
                               conditions)
    for delivery in retries:
        sequence = sequences[delivery.sequence]
        step = sequence.step(delivery.step)
        if step is None or not step.ok or sequence.problems or membership.should_stop(
                delivery.lead, sequence, upgraded, tagged):
            continue
        when = timing.into_send_window(sequence, max(now, delivery.retry_at))
        rows.append(Planned(when, delivery.lead.email, sequence.name, step.key, retry=True))
        enrollment = (db.session.get(Enrollment, delivery.enrollment_id)
                      if delivery.enrollment_id else None)
        if (enrollment is not None and enrollment.state == "sending"
                and not membership.is_past(enrollment, step.key, step.filename, sequence)):
            rows += _planned_steps(delivery.lead, sequence, step.key, step.filename,
                                   when, when, horizon, conditions)
    return sorted(row for row in rows if row.when <= horizon)[:limit]


def _planned_steps(lead, sequence: Sequence, last_step: str | None,
                   last_filename: str | None, since: datetime, look: datetime,
                   horizon: datetime, conditions: _Conditions) -> list[Planned]:
    """The steps one lead gets by `horizon`, each sent when next_step says; a step
    whose `when:` does not hold for the lead now is skipped when due (the next step
    counting from then), one whose `when:` names what does not exist holds it."""
    rows = []
    while True:
        step, due = timing.next_step(sequence, last_step, last_filename, since, look)
        if due is None or due > horizon:
            return rows
        skip, held = conditions.verdict(sequence, step, lead.id)
        rows.append(Planned(due, lead.email, sequence.name, step.key, skip=skip, held=held))
        if held:
            return rows
        last_step, last_filename, since = step.key, step.filename, due
        look = due
