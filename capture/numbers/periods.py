"""The dashboard's periods (today, 7 days, 30 days, all time) and a report's day series."""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from capture import clock
from capture.numbers import metrics

# The periods the dashboard offers: key -> (label, whole UTC days ending today).
PERIODS = {"today": ("Today", 1), "7d": ("Last 7 days", 7), "30d": ("Last 30 days", 30),
           "all": ("All time", None)}
DEFAULT_PERIOD = "30d"


@dataclass(frozen=True)
class Period:
    """A span of whole UTC days ending with today, or everything (no bounds)."""

    key: str
    label: str
    start: datetime | None
    end: datetime | None

    @property
    def first_day(self) -> date | None:
        return self.start.date() if self.start is not None else None

    @property
    def last_day(self) -> date | None:
        return (self.end - timedelta(microseconds=1)).date() if self.end is not None else None


def period(key: str | None = None, now: datetime | None = None) -> Period:
    """The period named `key` (today, 7d, 30d, all); an unknown key gives the default.

    "7d" is today and the six days before it; the end is the coming midnight, so
    everything of today counts."""
    key = key if key in PERIODS else DEFAULT_PERIOD
    label, days = PERIODS[key]
    if days is None:
        return Period(key, label, None, None)
    today = (now or clock.utcnow()).date()
    end = datetime.combine(today + timedelta(days=1), time())
    return Period(key, label, end - timedelta(days=days), end)


def days_of(day_report: metrics.Report, start: datetime | None = None,
            end: datetime | None = None) -> list[tuple[date, metrics.Numbers]]:
    """The rows of a report(by="day") as one (day, Numbers) per calendar day from
    start to end, quiet days filled in with zeros. Without a start the series begins
    on the first day with any activity; without an end it runs to today."""
    if day_report.by != "day":
        raise ValueError('days_of needs a report(by="day")')
    found = {date.fromisoformat(key[:10]): numbers for key, numbers in day_report.rows.items()
             if key != "(none)"}
    first = start.date() if start is not None else min(found, default=None)
    if end is not None:
        last = (end - timedelta(microseconds=1)).date()
    else:
        last = max([clock.utcnow().date(), *found])
    if first is None or last < first:
        return []
    return [(first + timedelta(days=offset),
             found.get(first + timedelta(days=offset), metrics.Numbers()))
            for offset in range((last - first).days + 1)]


def daily(*, start: datetime | None = None, end: datetime | None = None,
          page_id: int | None = None) -> list[tuple[date, metrics.Numbers]]:
    """The numbers of each day of a period (report(by="day"), zeros on quiet days)."""
    return days_of(metrics.report(start=start, end=end, page_id=page_id, by="day"), start, end)
