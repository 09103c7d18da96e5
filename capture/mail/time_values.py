"""The time values of sequence and broadcast files: delays, times of day, send windows
and time zones, read from what the owner wrote."""

import re
from datetime import time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DELAY = re.compile(r"^(\d+)\s*(m|min|h|d|w)?$")
_DELAY_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_delay(value: Any) -> timedelta | None:
    """`0`, `30m`, `2h`, `3d`, `1w` as a timedelta; None when unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return timedelta(0) if value == 0 else None
    match = _DELAY.match(str(value).strip().lower())
    if not match:
        return None
    amount, unit = int(match.group(1)), match.group(2)
    if unit is None:
        return timedelta(0) if amount == 0 else None
    return timedelta(**{_DELAY_UNITS[unit]: amount})


def parse_clock(value: Any) -> time | None:
    """`09:00` as a time of day; None when unreadable."""
    match = _CLOCK.match(str(value).strip())
    return time(int(match.group(1)), int(match.group(2))) if match else None


def parse_window(value: Any) -> tuple[time, time] | None:
    """`"09:00-18:00"` (or across midnight, `"22:00-06:00"`) as (start, end); None when
    unreadable or empty."""
    parts = str(value).split("-")
    if len(parts) != 2:
        return None
    start, end = parse_clock(parts[0]), parse_clock(parts[1])
    if start is None or end is None or start == end:
        return None
    return start, end


def read_send_window(data: dict) -> tuple[tuple[time, time] | None, ZoneInfo | None,
                                          list[tuple[str, str]]]:
    """`send_window:` and `timezone:` of a sequence.yml or a broadcast's front matter:
    (window or None, zone or None, [(key, message)] for the wrong ones)."""
    window = zone = None
    wrong = []
    value = data.get("send_window")
    if value is not None:
        window = parse_window(value)
        if window is None:
            wrong.append(("send_window",
                          'send_window: expected "HH:MM-HH:MM", like "09:00-18:00"'))
    name = data.get("timezone")
    if name is not None:
        try:
            zone = ZoneInfo(str(name))
        except (ZoneInfoNotFoundError, ValueError):
            wrong.append(("timezone", f"timezone: unknown zone {name!r} (use e.g. Europe/Berlin)"))
    return window, zone, wrong
