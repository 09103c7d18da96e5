"""When a step is due: its delay, time of day and send window, in the sequence's timezone.

Pure functions over a Sequence: the scheduler sends by them and `sequences plan` shows
them."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from capture.mail.sequences import Sequence, Step


def _local(moment: datetime, sequence: Sequence) -> datetime:
    return moment.replace(tzinfo=UTC).astimezone(sequence.timezone)


def _utc(local: datetime) -> datetime:
    return local.astimezone(UTC).replace(tzinfo=None)


def due_time(sequence: Sequence, step: Step, after: datetime) -> datetime:
    """When a step is due: `after` plus its delay, moved to its `at` time of day and
    then into the sequence's send window (both in the sequence's timezone)."""
    due = after + step.delay
    if step.at is not None:
        # A delay in whole days counts days of the local calendar: `delay: 1d, at: 09:00`
        # after a step sent at 09:00:05 is the next day at 09:00, also across a clock
        # change (not the day after, as "first 09:00 after 24 hours" would make it).
        days, rest = divmod(step.delay, timedelta(days=1))
        local = _local(due if rest else after, sequence)
        day = local.date() + timedelta(days=0 if rest else days)
        candidate = datetime.combine(day, step.at, tzinfo=sequence.timezone)
        if candidate < local:
            candidate = datetime.combine(day + timedelta(days=1), step.at,
                                         tzinfo=sequence.timezone)
        due = _utc(candidate)
    return into_send_window(sequence, due)


def into_send_window(sequence: Sequence, due: datetime) -> datetime:
    """The first moment at or after `due` inside the send window (if there is one)."""
    return window_opening(sequence.send_window, sequence.timezone, due)


def window_opening(window: tuple[time, time] | None, zone: ZoneInfo,
                   due: datetime) -> datetime:
    """The first moment (naive UTC) at or after `due` inside the send window (start,
    end) of `zone`; `due` itself when there is no window."""
    if window is None or inside_window(window, zone, due):
        return due
    start, end = window
    local = due.replace(tzinfo=UTC).astimezone(zone)
    day = local.date()
    if start < end and local.time() >= end:
        day += timedelta(days=1)
    return _utc(datetime.combine(day, start, tzinfo=zone))


def inside_window(window: tuple[time, time], zone: ZoneInfo, moment: datetime) -> bool:
    """Whether `moment` (naive UTC) falls inside the send window (start, end) of `zone`
    ("22:00-06:00" runs across midnight)."""
    start, end = window
    now = moment.replace(tzinfo=UTC).astimezone(zone).time()
    return start <= now < end if start < end else (now >= start or now < end)


def next_step(sequence: Sequence, last_step: str | None, last_filename: str | None,
              since: datetime, now: datetime) -> tuple[Step | None, datetime | None]:
    """The step a lead gets next and when a tick at `now` or later sends it: the
    step after the one it had last (`since` is when; for a lead that had none, when
    it was enrolled), `delay` after `since`, or at once if that moment has passed,
    always inside the send window. (None, None) when the lead had every step;
    (step, None) when that step or the folder's settings are broken (it is held).

    The one rule of timing: the scheduler sends by it and `sequences plan` shows it.
    A step added before a lead's last email is never sent to that lead."""
    remaining = sequence.steps_after(last_step, last_filename)
    if not remaining:
        return None, None
    step = remaining[0]
    if not step.ok or sequence.problems:
        return step, None
    due = due_time(sequence, step, since)
    # Overdue (the scheduler was down, or a step was added): still only inside the
    # send window.
    return step, (due if due > now else into_send_window(sequence, now))
