"""Who gets which sequence and where each lead stands in it: enrol (a page's opt-in
and the `start_on` triggers), stop, move past a step."""

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from capture import clock, suppression
from capture.db import db
from capture.timeline import event_row, insert_events
from capture.mail import timing, trigger_checks
from capture.mail.library import Library
from capture.mail.sequences import Sequence, Step, step_order
from capture.mail.triggers import Trigger
from capture.models import Enrollment, Lead, LeadTag, Page, Upgrade


# The states an enrollment is left in by the scheduler for a lead it has stopped
# sending to because of its review: approved after all, it goes on from there.
_RESUMED_REVIEW = ("rejected", "pending")


def enroll(lead: Lead, page: Page | None = None, *, new: bool = False,
           again: bool = False) -> int:
    """Start an approved, subscribed lead on the sequences its opt-in starts: its
    page's `sequence`, the sequences with an `optin` trigger for the page, and those
    with a `tag` trigger for a tag it got while it could not be mailed yet.

    Called whenever a lead's state changes, with the lead's page when the caller has
    it and `new` for a lead just created; `again` for a fresh opt-in, which starts a
    finished `reenter: true` sequence over. A lead given as the plain row of a lead
    just inserted without the ORM (the opt-in) is read from the database like any
    other. Returns how many sequences it started; the caller commits."""
    if lead.review != "approved" or lead.subscription != "subscribed":
        return 0
    page = page or lead.page
    if isinstance(lead, Lead):
        db.session.flush()  # the lead's new state, which `start` reads
    connection = db.session.connection()
    now = clock.utcnow()
    if not new:
        # Approved after all: a lead stopped for its review goes on from where it stood.
        connection.execute(
            update(Enrollment)
            .where(Enrollment.lead_id == lead.id, Enrollment.state == "stopped",
                   Enrollment.stop_reason.in_(_RESUMED_REVIEW))
            .values(state="active", stop_reason="", next_due_at=now))
    ways_in: list[tuple[str, str, bool]] = []
    if page is not None and page.sequence:
        ways_in.append((page.sequence, f"optin:{page.slug}", again))
    armed = armed_triggers(connection)
    for sequence, trigger in armed:
        if trigger.kind == "optin" and page is not None and page.slug in trigger.value:
            ways_in.append((sequence.name, f"optin:{page.slug}", again))
    if new:
        # Its page's tags, given a moment ago, started their sequences then (on_tags).
        tagged = bool(page is not None and page.tags
                      and any(trigger.kind == "tag" for _, trigger in armed))
        return _start_new(lead, ways_in, connection, now, may_exist=tagged)
    held = (set(connection.execute(
        select(LeadTag.tag).where(LeadTag.lead_id == lead.id)).scalars())
        if any(trigger.kind == "tag" for _, trigger in armed) else set())
    for sequence, trigger in armed:
        if trigger.kind == "tag" and trigger.value in held:
            ways_in.append((sequence.name, f"tag:{trigger.value}", False))
    started, seen = 0, set()
    for name, label, reenter in ways_in:
        if name not in seen:
            seen.add(name)
            started += start([lead.id], name, label, connection=connection, now=now,
                             again=reenter)
    return started


def _start_new(lead, ways_in: list[tuple[str, str, bool]], connection,
               now: datetime, *, may_exist: bool) -> int:
    """The opt-in's (and the import's) way in for a lead inserted just now, approved
    and subscribed, whose address was checked against the suppression list by the
    caller: one INSERT of its enrolments and one of their events, without the reads
    `start` makes for leads it knows nothing of (the hottest path of all). None exist
    yet, unless (`may_exist`) its page tags' triggers made some a moment ago: those are
    kept."""
    labels: dict[str, str] = {}
    for name, label, _ in ways_in:
        labels.setdefault(name, label)
    if not labels:
        return 0
    rows = []
    for name in labels:
        sequence = Library.current().get(name)
        rows.append({"lead_id": lead.id, "sequence": name, "started_at": now,
                     "state": "active", "entry": 1,
                     "next_due_at": (timing.due_time(sequence, sequence.steps[0], now)
                                     if sequence is not None and sequence.steps else now)})
    if may_exist:
        inserted = connection.execute(_insert_ignoring_duplicates(connection).returning(
            Enrollment.__table__.c.sequence), rows).scalars().all()
    else:
        connection.execute(Enrollment.__table__.insert(), rows)
        inserted = list(labels)
    events = [event_row(lead.id, lead.page_id, "enroll", sequence=name, trigger=labels[name])
              for name in inserted]
    for event in events:
        event["created_at"] = now
    insert_events(events, connection)
    return len(events)


def armed_triggers(connection=None) -> list[tuple[Sequence, Trigger]]:
    """Every trigger that may start leads now, with its sequence: not of a sequence
    whose triggers are held (an unknown page, a tag loop, a broken settings file)."""
    sequences = [s for s in Library.current().all() if s.start_on]
    if not sequences:
        return []
    checked = trigger_checks.status(sequences, connection)
    return [(sequence, trigger) for sequence in sequences if checked.may_fire(sequence)
            for trigger in sequence.start_on]


def on_tags(pairs: Iterable[tuple[int, str]], connection=None) -> int:
    """Start the sequences whose `tag` trigger names a tag just given to a lead."""
    pairs = list(pairs)
    if not pairs:
        return 0
    started = 0
    for sequence, trigger in armed_triggers(connection):
        if trigger.kind == "tag":
            ids = [lead_id for lead_id, tag in pairs if tag == trigger.value]
            if ids:
                started += start(ids, sequence.name, trigger.label, connection=connection)
    return started


def on_click(lead_id: int, url: str, connection=None) -> int:
    """Start the sequences whose `click` trigger is part of a link a person clicked."""
    return sum(start([lead_id], sequence.name, trigger.label, connection=connection)
               for sequence, trigger in armed_triggers(connection)
               if trigger.kind == "click" and trigger.value in url)


def on_upgrade(lead_id: int, connection=None) -> int:
    """Start the sequences with an `upgrade` trigger for a lead who just bought."""
    return sum(start([lead_id], sequence.name, trigger.label, connection=connection)
               for sequence, trigger in armed_triggers(connection)
               if trigger.kind == "upgrade")


def finished(sequence: Sequence | None, state: str, last_step: str | None,
             last_filename: str | None) -> bool:
    """True when an enrollment has had every step of its sequence (as the folder is
    now) and waits for more: what `reenter: true` starts over. A stopped enrollment
    (unsubscribed, bounced, an upgrade with `stop_on: upgrade`) is not finished."""
    return (sequence is not None and state == "waiting" and last_step is not None
            and not sequence.steps_after(last_step, last_filename))


def start(lead_ids: Iterable[int], name: str, trigger: str, *, connection=None,
          now: datetime | None = None, again: bool = True) -> int:
    """Start the leads on sequence `name`, named in their `enroll` event as started by
    `trigger` ("optin:launch", "tag:vip" …). Only approved, subscribed leads whose
    address is not suppressed; a lead already in the sequence, in any state, is left
    where it is, unless `again`, the sequence says `reenter: true` and the lead has
    finished it: then it starts over from the first step (a new entry). A few
    statements per call, on `connection` (else the session's); the caller commits.
    Returns how many leads started."""
    ids = sorted({int(lead_id) for lead_id in lead_ids})
    if not ids:
        return 0
    connection = connection or db.session.connection()
    now = now or clock.utcnow()
    sequence = Library.current().get(name)
    first_due = (timing.due_time(sequence, sequence.steps[0], now)
                 if sequence is not None and sequence.steps else now)
    leads = dict(connection.execute(
        select(Lead.id, Lead.page_id)
        .where(Lead.id.in_(ids), Lead.review == "approved",
               Lead.subscription == "subscribed", suppression.lead_not_suppressed())).all())
    if not leads:
        return 0
    existing = connection.execute(
        select(Enrollment.id, Enrollment.lead_id, Enrollment.state, Enrollment.last_step,
               Enrollment.last_filename, Enrollment.entry)
        .where(Enrollment.sequence == name, Enrollment.lead_id.in_(list(leads)))).all()
    events = []
    rows = [{"lead_id": lead_id, "sequence": name, "started_at": now, "state": "active",
             "next_due_at": first_due, "entry": 1}
            for lead_id in leads if lead_id not in {row.lead_id for row in existing}]
    if rows:
        # Two triggers at the same moment start a lead once: the second row is dropped.
        inserted = connection.execute(
            _insert_ignoring_duplicates(connection).returning(
                Enrollment.__table__.c.lead_id), rows).scalars().all()
        events += [event_row(lead_id, leads[lead_id], "enroll", sequence=name,
                             trigger=trigger) for lead_id in inserted]
    if again and sequence is not None and sequence.reenter:
        for row in existing:
            if not finished(sequence, row.state, row.last_step, row.last_filename):
                continue
            # Conditional on the entry it had: two triggers at once start it over once.
            over = connection.execute(
                update(Enrollment)
                .where(Enrollment.id == row.id, Enrollment.entry == row.entry,
                       Enrollment.state == "waiting")
                .values(state="active", entry=row.entry + 1, started_at=now,
                        next_due_at=first_due, last_step=None, last_filename=None,
                        last_sent_at=None, claimed_at=None, stop_reason=""))
            if over.rowcount:
                events.append(event_row(row.lead_id, leads[row.lead_id], "enroll",
                                        sequence=name, trigger=trigger, entry=row.entry + 1))
    for event in events:
        event["created_at"] = now
    insert_events(events, connection)
    return len(events)


_INSERTS = {
    name: dialect.insert(Enrollment.__table__).on_conflict_do_nothing(
        index_elements=["lead_id", "sequence"])
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))}


def _insert_ignoring_duplicates(connection):
    """INSERT … ON CONFLICT DO NOTHING for enrollments, in the connection's dialect
    (built once: the opt-in uses it)."""
    return _INSERTS["postgresql" if connection.dialect.name == "postgresql" else "sqlite"]


def stop(lead: Lead, reason: str) -> None:
    """Stop every sequence of a lead (unsubscribed, bounced, rejected …)."""
    db.session.execute(
        update(Enrollment)
        .where(Enrollment.lead_id == lead.id,
               Enrollment.state.in_(("active", "waiting", "sending")))
        .values(state="stopped", stop_reason=reason, next_due_at=None)
    )


def stop_sequence(lead_id: int, name: str, reason: str) -> None:
    """Stop one sequence of a lead (a later opt-in rejected: its page's sequence)."""
    db.session.execute(
        update(Enrollment)
        .where(Enrollment.lead_id == lead_id, Enrollment.sequence == name,
               Enrollment.state.in_(("active", "waiting", "sending")))
        .values(state="stopped", stop_reason=reason, next_due_at=None)
        .execution_options(synchronize_session=False))


def resume_sequence(lead_id: int, name: str, reason: str) -> None:
    """Let one sequence stopped for `reason` go on from where it stood."""
    db.session.execute(
        update(Enrollment)
        .where(Enrollment.lead_id == lead_id, Enrollment.sequence == name,
               Enrollment.state == "stopped", Enrollment.stop_reason == reason)
        .values(state="active", stop_reason="", next_due_at=clock.utcnow())
        .execution_options(synchronize_session=False))


def should_stop(lead: Lead, sequence: Sequence, upgraded: set[int] | None = None,
                tagged: dict[int, set[str]] | None = None) -> str:
    """Why this lead must get nothing more from the sequence, or ''. `upgraded`: the
    leads known to have bought an upgrade; `tagged`: the leads' tags among the
    stop_on tags (`condition_checks.stop_tags_of`); else the database is asked."""
    if lead.subscription != "subscribed":
        return lead.subscription
    if lead.review != "approved":
        return lead.review
    if "upgrade" in sequence.stop_on:
        if upgraded is not None:
            if lead.id in upgraded:
                return "upgrade"
        elif db.session.scalar(select(Upgrade.id).where(Upgrade.lead_id == lead.id).limit(1)):
            return "upgrade"
    names = sequence.stop_tags
    if names:
        has = tagged.get(lead.id, set()) if tagged is not None else set(db.session.scalars(
            select(LeadTag.tag).where(LeadTag.lead_id == lead.id, LeadTag.tag.in_(names))))
        for name in names:
            if name in has:
                return f"tag:{name}"
    return ""


def move_past(enrollment: Enrollment, step: Step | None, sent_at: datetime, *,
              sequence: Sequence | None = None, key: str | None = None,
              filename: str | None = None) -> None:
    """Record the step as done and schedule the next one (or wait for new steps).
    A stopped enrollment stays stopped; an enrollment already at or past the step
    (the owner resent an earlier email) is left where it is, never moved back."""
    sequence = sequence or Library.current().get(enrollment.sequence)
    key, filename = (step.key, step.filename) if step else (key, filename)
    if is_past(enrollment, key, filename, sequence):
        return
    enrollment.last_step, enrollment.last_filename = key, filename
    enrollment.last_sent_at = sent_at
    if enrollment.state == "stopped":
        return
    remaining = (sequence.steps_after(enrollment.last_step, enrollment.last_filename)
                 if sequence else [])
    if remaining:
        enrollment.state = "active"
        enrollment.next_due_at = timing.due_time(sequence, remaining[0], sent_at)
    else:
        enrollment.state, enrollment.next_due_at = "waiting", None


def is_past(enrollment: Enrollment, key: str | None, filename: str | None,
            sequence: Sequence | None) -> bool:
    """True when the enrollment already stands at or after this step."""
    if enrollment.last_step is None or key is None:
        return False
    if key == enrollment.last_step:
        return True
    if sequence is not None:
        ahead = sequence.steps_after(enrollment.last_step, enrollment.last_filename)
        if any(step.key == key for step in ahead):
            return False
        if sequence.step(key) is not None:
            return True
    # The step is gone from the folder: its file name tells where it stood.
    return bool(filename and enrollment.last_filename
                and step_order(filename) <= step_order(enrollment.last_filename))
