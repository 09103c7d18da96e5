"""The segment language: a mapping of keys (pages, sources, tags, clicked …) checked
and turned into a `Segment`, with every problem said as `file:line: key: message`.

All given keys must hold (AND); a list inside a key means any of them (OR). Parsing is
pure: nothing here reads the database (`capture.segments.query.unknown_pages` checks
that page slugs exist, for the places that want it)."""

import difflib
import re
from collections.abc import Callable, Mapping
import dataclasses
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from typing import Any

from capture.models import REVIEW_STATES
from capture.tag_names import tag_problem

# The value of sources/mediums/campaigns/refs (and of a field) that means "without one".
NONE_VALUE = "(none)"
# How far back `{within_days: N}` may look: ten years.
MAX_WITHIN_DAYS = 3650

_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_NAME = re.compile(r"[a-z0-9_-]{1,100}")
_ORDER_PREFIX = re.compile(r"^(\d+(?:\.\d+)*)[-_. ]*")
_COUNTRY = re.compile(r"[A-Za-z]{2}")


class SegmentError(Exception):
    """A segment that cannot be used. `str()` gives every problem, one per line, each
    as `file:line: key: message` (the parts that are known); `.problems` holds one
    SegmentError per problem; `.key`, `.line` and `.message` are the first one's."""

    def __init__(self, message: str, *, key: str = "", line: int | None = None,
                 filename: str | None = None,
                 problems: "list[SegmentError] | None" = None) -> None:
        self.message, self.key, self.line, self.filename = message, key, line, filename
        self.problems = problems or [self]
        super().__init__("\n".join(p.located for p in self.problems))

    @property
    def located(self) -> str:
        """This one problem with its place: `file:line: key: message`."""
        where = ""
        if self.filename and self.line:
            where = f"{self.filename}:{self.line}: "
        elif self.line:
            where = f"line {self.line}: "
        elif self.filename:
            where = f"{self.filename}: "
        return f"{where}{self.key}: {self.message}" if self.key else f"{where}{self.message}"


class _Problem(Exception):
    """Raised by a key's reader: `subkey` narrows the place ("any" inside "tags")."""

    def __init__(self, message: str, subkey: str = "") -> None:
        super().__init__(message)
        self.message, self.subkey = message, subkey


@dataclass(frozen=True)
class Tags:
    """`tags: {any: [...], all: [...], none: [...]}`."""

    any: tuple[str, ...] = ()
    all: tuple[str, ...] = ()
    none: tuple[str, ...] = ()


@dataclass(frozen=True)
class Engagement:
    """`opened` / `clicked`: whether a human open (click) happened, optionally only
    within the last `within_days`, only of these steps ("sequence", "step key") or
    only of these broadcasts."""

    happened: bool = True
    within_days: int | None = None
    steps: tuple[tuple[str, str], ...] = ()
    broadcasts: tuple[str, ...] = ()


FieldValue = str | bool


@dataclass(frozen=True)
class Segment:
    """A parsed segment; a key left out (None or empty) does not narrow anything."""

    pages: tuple[str, ...] | None = None
    sources: tuple[str, ...] | None = None
    mediums: tuple[str, ...] | None = None
    campaigns: tuple[str, ...] | None = None
    refs: tuple[str, ...] | None = None
    review: tuple[str, ...] | None = None
    tags: Tags | None = None
    fields: tuple[tuple[str, tuple[FieldValue, ...]], ...] = ()
    upgraded: bool | None = None
    opened: Engagement | None = None
    clicked: Engagement | None = None
    joined_after: datetime | None = None
    joined_before: datetime | None = None
    in_sequence: tuple[str, ...] | None = None
    finished_sequence: tuple[str, ...] | None = None

    @property
    def everyone(self) -> bool:
        """True when no key narrows the segment (every lead is a member)."""
        return not self.as_mapping()

    def as_mapping(self) -> dict[str, Any]:
        """The segment as plain JSON values (dates as ISO text), for storing it (a
        broadcast freezes this); `parse` of it gives the same segment back."""
        return {f.name: _canonical(f.name, getattr(self, f.name))
                for f in dataclasses.fields(self)
                if getattr(self, f.name) not in (None, ())}


# --- the readers of each key ------------------------------------------------------------

def _texts(value: Any, *, check: Callable[[str], str | None] | None = None,
           limit: int = 200) -> tuple[str, ...]:
    """A text or a list of texts (numbers taken as their text), none empty."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise _Problem("give at least one value (or leave the key out)")
    texts = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise _Problem(f"{item!r} is not a text; write a text or a list of texts")
        text = str(item).strip()
        if not text:
            raise _Problem("an empty text matches nothing")
        if len(text) > limit:
            raise _Problem(f"{text[:40]!r}… is longer than {limit} characters")
        problem = check(text) if check else None
        if problem:
            raise _Problem(problem)
        texts.append(text)
    return tuple(dict.fromkeys(texts))


def _read_pages(value: Any) -> tuple[str, ...]:
    return _texts(value, limit=64, check=lambda s: None if _SLUG.fullmatch(s) else
                  f"{s!r} is not a page slug (lowercase letters, digits and dashes)")


def _read_review(value: Any) -> tuple[str, ...]:
    return _texts(value, check=lambda s: None if s in REVIEW_STATES else
                  f"{s!r} is not a review state; use {', '.join(REVIEW_STATES)}")


def _read_tag_list(value: Any, subkey: str) -> tuple[str, ...]:
    try:
        return _texts(value, limit=1000, check=tag_problem)
    except _Problem as problem:
        raise _Problem(problem.message, subkey) from None


def _read_tags(value: Any) -> Tags:
    if isinstance(value, str | list):
        # A plain list is the common case: any of these tags.
        return Tags(any=_read_tag_list(value, "any"))
    if not isinstance(value, dict) or not value:
        raise _Problem("write {any: [...], all: [...], none: [...]} (or a list: any of them)")
    unknown = [k for k in value if k not in ("any", "all", "none")]
    if unknown:
        raise _Problem(f"unknown part {unknown[0]!r}; use any, all, none")
    return Tags(**{k: _read_tag_list(v, k) for k, v in value.items()})


def _field_value(item: Any, name: str) -> FieldValue:
    if isinstance(item, bool) and name == "country":
        raise _Problem(f"{item!r} is not a two-letter country code like DE", name)
    if isinstance(item, bool):
        return item
    if item is None:
        return NONE_VALUE
    if isinstance(item, str | int | float):
        text = str(item).strip()
        if name == "country" and text != NONE_VALUE:
            if not _COUNTRY.fullmatch(text):
                raise _Problem(f"{text!r} is not a two-letter country code like DE", name)
            return text.upper()
        return text
    raise _Problem(f"{item!r} is not a text, a number, true or false", name)


def _read_fields(value: Any) -> tuple[tuple[str, tuple[FieldValue, ...]], ...]:
    if not isinstance(value, dict) or not value:
        raise _Problem("write {field name: value or [values]}")
    read = []
    for name, wanted in value.items():
        if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
            raise _Problem(f"{name!r} is not a field name (lowercase, like plan or "
                           f"company_size)")
        items = wanted if isinstance(wanted, list) else [wanted]
        if not items:
            raise _Problem("give at least one value", name)
        read.append((name, tuple(dict.fromkeys(_field_value(i, name) for i in items))))
    return tuple(read)


def _read_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Problem(f"{value!r}: write true or false")
    return value


def _step_ref(text: str) -> tuple[str, str]:
    sequence, slash, step = text.partition("/")
    step = _ORDER_PREFIX.sub("", step.removesuffix(".md")).lower()
    if not slash or not sequence or not step:
        raise _Problem(f"{text!r}: write the step as \"<sequence>/<step>\", like "
                       f"\"course/tips\"", "step")
    return sequence, step


def _read_engagement(value: Any) -> Engagement:
    if isinstance(value, bool):
        return Engagement(happened=value)
    if not isinstance(value, dict) or not value:
        raise _Problem("write true, false, {within_days: N}, {step: \"<sequence>/<step>\"} "
                       "or {broadcast: NAME}")
    unknown = [k for k in value if k not in ("within_days", "step", "broadcast")]
    if unknown:
        raise _Problem(f"unknown part {unknown[0]!r}; use within_days, step, broadcast")
    if "step" in value and "broadcast" in value:
        raise _Problem("an email is a step or a broadcast: give one of step, broadcast")
    days = value.get("within_days")
    if days is not None and (isinstance(days, bool) or not isinstance(days, int)
                             or not 1 <= days <= MAX_WITHIN_DAYS):
        raise _Problem(f"{days!r}: write a whole number of days from 1 to "
                       f"{MAX_WITHIN_DAYS}", "within_days")
    steps: tuple[tuple[str, str], ...] = ()
    if "step" in value:
        try:
            steps = tuple(_step_ref(t) for t in _texts(value["step"]))
        except _Problem as problem:
            raise _Problem(problem.message, "step") from None
    broadcasts: tuple[str, ...] = ()
    if "broadcast" in value:
        try:
            broadcasts = _texts(value["broadcast"], limit=100, check=lambda s: None if
                                _NAME.fullmatch(s) else f"{s!r} is not a broadcast name "
                                "(lowercase letters, digits, _ and -)")
        except _Problem as problem:
            raise _Problem(problem.message, "broadcast") from None
    return Engagement(within_days=days, steps=steps, broadcasts=broadcasts)


def _read_time(value: Any) -> datetime:
    """A date (the start of that day, UTC) or an ISO time (with an offset: converted
    to UTC; without one: taken as UTC), as the naive UTC the tables hold."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time())
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise _Problem(f"{value!r} is not a date like 2026-03-01 or a time like "
                           "2026-03-01T09:00:00+01:00") from None
    else:
        raise _Problem(f"{value!r} is not a date like 2026-03-01")
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def _read_sequences(value: Any) -> tuple[str, ...]:
    return _texts(value, limit=100)


# Every key, in the order the docs list them, with its reader.
READERS: dict[str, Callable[[Any], Any]] = {
    "pages": _read_pages,
    "sources": _texts,
    "mediums": _texts,
    "campaigns": _texts,
    "refs": _texts,
    "review": _read_review,
    "tags": _read_tags,
    "fields": _read_fields,
    "upgraded": _read_bool,
    "opened": _read_engagement,
    "clicked": _read_engagement,
    "joined_after": _read_time,
    "joined_before": _read_time,
    "in_sequence": _read_sequences,
    "finished_sequence": _read_sequences,
}
KEYS = tuple(READERS)


def _canonical(key: str, value: Any) -> Any:
    """The parsed value of a key as plain JSON values, for `Segment.as_mapping`."""
    if isinstance(value, tuple) and key != "fields":
        return list(value)
    if isinstance(value, Tags):
        return {k: list(v) for k, v in vars(value).items() if v}
    if key == "fields":
        return {name: list(values) if len(values) > 1 else values[0]
                for name, values in value}
    if isinstance(value, Engagement):
        if not (value.within_days or value.steps or value.broadcasts):
            return value.happened
        out: dict[str, Any] = {}
        if value.within_days:
            out["within_days"] = value.within_days
        if value.steps:
            out["step"] = [f"{s}/{k}" for s, k in value.steps]
        if value.broadcasts:
            out["broadcast"] = list(value.broadcasts)
        return out
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def parse(mapping: Mapping[str, Any] | None, *, lines: Mapping[str, int] | None = None,
          filename: str | None = None, prefix: str = "") -> Segment:
    """Check a segment mapping and return the Segment; raise SegmentError naming every
    bad key. `lines` maps dotted key paths ("segment.tags", "segment.tags.any") to
    1-based lines of `filename`; `prefix` is the path of the mapping itself there."""
    lines = lines or {}
    where = prefix or "segment"

    def problem(message: str, *path: str) -> SegmentError:
        dotted = ".".join(p for p in (prefix, *path) if p)
        line = None
        for depth in range(len(path), -1, -1):
            line = lines.get(".".join(p for p in (prefix, *path[:depth]) if p))
            if line:
                break
        return SegmentError(message, key=dotted or where, line=line, filename=filename)

    if mapping is None:
        return Segment()
    if not isinstance(mapping, Mapping):
        raise problem("write the segment as keys and values (like `pages: [webinar]`), "
                      f"not {type(mapping).__name__}")
    found: dict[str, Any] = {}
    problems: list[SegmentError] = []
    for key, value in mapping.items():
        if key not in READERS:
            close = difflib.get_close_matches(str(key), KEYS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(problem(f"unknown key{hint}; the keys are: {', '.join(KEYS)}",
                                    str(key)))
            continue
        try:
            found[key] = READERS[key](value)
        except _Problem as bad:
            problems.append(problem(bad.message, key, *([bad.subkey] if bad.subkey else [])))
    after, before = found.get("joined_after"), found.get("joined_before")
    if after is not None and before is not None and after >= before:
        problems.append(problem("is not after joined_after: no lead can match",
                                "joined_before"))
    if problems:
        raise SegmentError(problems[0].message, key=problems[0].key, line=problems[0].line,
                           filename=filename, problems=problems)
    return Segment(**found)
