"""When a step is due: its delay, its `at` time of day and the sequence's send window,
in the sequence's timezone. Times in and out are naive UTC, as stored."""

from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from capture.mail.timing import due_time, into_send_window
from capture.mail.sequences import Sequence, Step

MONDAY_10_UTC = datetime(2026, 3, 2, 10, 0)


def sequence(timezone="UTC", window=None) -> Sequence:
    """A sequence with these settings, built as the loader builds one."""
    if window is not None:
        start, end = window.split("-")
        window = (time.fromisoformat(start), time.fromisoformat(end))
    return Sequence(name="course", folder=Path("course"), timezone=ZoneInfo(timezone),
                    send_window=window)


def step(delay=timedelta(0), at=None) -> Step:
    return Step(key="tips", filename="02-tips.md", subject="Tips", delay=delay,
                at=time.fromisoformat(at) if at else None, body="Body.\n")


# --- delay ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("delay", "due"),
    [
        (timedelta(0), datetime(2026, 3, 2, 10, 0)),
        (timedelta(minutes=30), datetime(2026, 3, 2, 10, 30)),
        (timedelta(hours=20), datetime(2026, 3, 3, 6, 0)),
        (timedelta(days=3), datetime(2026, 3, 5, 10, 0)),
        (timedelta(weeks=1), datetime(2026, 3, 9, 10, 0)),
    ],
)
def test_without_at_or_window_a_step_is_due_its_delay_after(delay, due):
    assert due_time(sequence(), step(delay), MONDAY_10_UTC) == due


def test_delay_alone_ignores_the_timezone():
    assert due_time(sequence("America/New_York"), step(timedelta(days=2)),
                    MONDAY_10_UTC) == datetime(2026, 3, 4, 10, 0)


# --- at ---------------------------------------------------------------------------

def test_at_later_today_is_due_today_at_that_time():
    assert due_time(sequence(), step(at="15:30"), MONDAY_10_UTC) == datetime(2026, 3, 2, 15, 30)


def test_at_already_past_today_is_due_tomorrow_at_that_time():
    assert due_time(sequence(), step(at="09:00"), MONDAY_10_UTC) == datetime(2026, 3, 3, 9, 0)


def test_at_exactly_now_is_due_now():
    assert due_time(sequence(), step(at="10:00"), MONDAY_10_UTC) == MONDAY_10_UTC


def test_at_with_a_delay_in_days_is_that_many_days_later_at_that_time():
    assert due_time(sequence(), step(timedelta(days=2), at="15:00"),
                    MONDAY_10_UTC) == datetime(2026, 3, 4, 15, 0)
    assert due_time(sequence(), step(timedelta(days=2), at="09:00"),
                    MONDAY_10_UTC) == datetime(2026, 3, 4, 9, 0)


def test_a_daily_step_sent_just_after_its_at_time_is_due_the_next_day_not_the_one_after():
    sent_at = datetime(2026, 3, 3, 9, 0, 7)  # the tick ran a few seconds after 09:00
    assert due_time(sequence(), step(timedelta(days=1), at="09:00"),
                    sent_at) == datetime(2026, 3, 4, 9, 0)


def test_at_with_a_delay_in_hours_is_the_first_such_time_after_the_delay():
    two_hours = step(timedelta(hours=2), at="09:00")
    assert due_time(sequence(), two_hours, datetime(2026, 3, 2, 6, 0)) == datetime(2026, 3, 2, 9, 0)
    assert due_time(sequence(), two_hours, datetime(2026, 3, 2, 8, 0)) == datetime(2026, 3, 3, 9, 0)


def test_at_is_a_time_of_day_in_the_sequences_timezone():
    # 10:00 UTC is 05:00 in New York (EST, UTC-5): 09:00 there is 14:00 UTC today.
    assert due_time(sequence("America/New_York"), step(at="09:00"),
                    MONDAY_10_UTC) == datetime(2026, 3, 2, 14, 0)


def test_at_past_in_the_sequences_timezone_is_due_the_next_local_day():
    # 15:00 UTC is 10:00 in New York: 09:00 there has passed, so tomorrow 09:00 EST.
    assert due_time(sequence("America/New_York"), step(at="09:00"),
                    datetime(2026, 3, 2, 15, 0)) == datetime(2026, 3, 3, 14, 0)


def test_at_uses_the_local_date_not_the_utc_date():
    # 20:00 UTC on Monday is already 05:00 on Tuesday in Tokyo (UTC+9).
    assert due_time(sequence("Asia/Tokyo"), step(at="09:00"),
                    datetime(2026, 3, 2, 20, 0)) == datetime(2026, 3, 3, 0, 0)


def test_at_on_the_day_clocks_spring_forward_uses_the_summer_offset():
    # Saturday 10:00 EST; Sunday 2026-03-08 is the change to EDT (UTC-4).
    assert due_time(sequence("America/New_York"), step(at="09:00"),
                    datetime(2026, 3, 7, 15, 0)) == datetime(2026, 3, 8, 13, 0)


def test_at_on_the_day_clocks_fall_back_uses_the_winter_offset():
    # Saturday 10:00 EDT; Sunday 2026-11-01 is the change back to EST (UTC-5).
    assert due_time(sequence("America/New_York"), step(at="09:00"),
                    datetime(2026, 10, 31, 14, 0)) == datetime(2026, 11, 1, 14, 0)


def test_at_with_a_delay_across_the_clock_change_keeps_the_local_time():
    # One week after Monday 09:00 EST is the Monday after the change: 09:00 EDT.
    weekly = step(timedelta(weeks=1), at="09:00")
    assert due_time(sequence("America/New_York"), weekly,
                    datetime(2026, 3, 2, 14, 0)) == datetime(2026, 3, 9, 13, 0)


def test_a_daily_step_at_a_time_of_day_keeps_its_day_across_the_clock_change():
    # Sent Saturday 09:00 EST (14:00 UTC); the clocks spring forward that night.
    daily = step(timedelta(days=1), at="09:00")
    assert due_time(sequence("America/New_York"), daily,
                    datetime(2026, 3, 7, 14, 0, 5)) == datetime(2026, 3, 8, 13, 0)


# --- send window ------------------------------------------------------------------

def test_a_due_time_inside_the_window_is_kept():
    office = sequence(window="09:00-18:00")
    assert into_send_window(office, datetime(2026, 3, 2, 12, 0)) == datetime(2026, 3, 2, 12, 0)
    assert into_send_window(office, datetime(2026, 3, 2, 9, 0)) == datetime(2026, 3, 2, 9, 0)


def test_a_due_time_after_the_window_moves_to_its_start_the_next_day():
    office = sequence(window="09:00-18:00")
    assert into_send_window(office, datetime(2026, 3, 2, 20, 0)) == datetime(2026, 3, 3, 9, 0)


def test_the_end_of_the_window_is_already_outside_it():
    office = sequence(window="09:00-18:00")
    assert into_send_window(office, datetime(2026, 3, 2, 18, 0)) == datetime(2026, 3, 3, 9, 0)


def test_a_due_time_before_the_window_moves_to_its_start_the_same_day():
    office = sequence(window="09:00-18:00")
    assert into_send_window(office, datetime(2026, 3, 2, 7, 0)) == datetime(2026, 3, 2, 9, 0)


def test_without_a_window_any_time_is_kept():
    assert into_send_window(sequence(), datetime(2026, 3, 2, 3, 0)) == datetime(2026, 3, 2, 3, 0)


@pytest.mark.parametrize("due", [datetime(2026, 3, 2, 23, 0), datetime(2026, 3, 2, 22, 0),
                                 datetime(2026, 3, 3, 3, 0), datetime(2026, 3, 3, 5, 59)])
def test_an_overnight_window_keeps_times_inside_it(due):
    assert into_send_window(sequence(window="22:00-06:00"), due) == due


@pytest.mark.parametrize("due", [datetime(2026, 3, 2, 12, 0), datetime(2026, 3, 2, 6, 0),
                                 datetime(2026, 3, 2, 21, 59)])
def test_an_overnight_window_moves_a_daytime_due_to_that_evening(due):
    assert into_send_window(sequence(window="22:00-06:00"), due) == datetime(2026, 3, 2, 22, 0)


def test_the_window_is_in_the_sequences_timezone():
    office = sequence("America/New_York", window="09:00-18:00")
    # 12:00 UTC is 07:00 EST: wait until 09:00 EST, 14:00 UTC.
    assert into_send_window(office, datetime(2026, 3, 2, 12, 0)) == datetime(2026, 3, 2, 14, 0)
    # 20:00 UTC is 15:00 EST: inside.
    assert into_send_window(office, datetime(2026, 3, 2, 20, 0)) == datetime(2026, 3, 2, 20, 0)
    # 23:30 UTC is 18:30 EST: the next local morning.
    assert into_send_window(office, datetime(2026, 3, 2, 23, 30)) == datetime(2026, 3, 3, 14, 0)


def test_the_window_opens_at_the_summer_offset_after_the_clock_change():
    office = sequence("America/New_York", window="09:00-18:00")
    # Saturday 18:30 EST; the window opens on Sunday 2026-03-08 at 09:00 EDT.
    assert into_send_window(office, datetime(2026, 3, 7, 23, 30)) == datetime(2026, 3, 8, 13, 0)


def test_a_delay_ending_after_the_window_is_moved_into_the_next_one():
    office = sequence(window="09:00-18:00")
    assert due_time(office, step(timedelta(hours=10)), MONDAY_10_UTC) == datetime(2026, 3, 3, 9, 0)


def test_an_at_outside_the_window_is_moved_into_it():
    office = sequence(window="09:00-18:00")
    assert due_time(office, step(at="20:00"), MONDAY_10_UTC) == datetime(2026, 3, 3, 9, 0)
    assert due_time(office, step(at="07:30"), MONDAY_10_UTC) == datetime(2026, 3, 3, 9, 0)
