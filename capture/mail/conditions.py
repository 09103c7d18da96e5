"""Reading a sequence's conditions from its files: a step's `when:` (a segment) and the
values of `stop_on` (`upgrade`, `unsubscribe`, `tag:NAME`). Pure: nothing here reads
the database (`capture.mail.condition_checks` does what needs it).

Problems are returned as (line, message); the sequence reader makes them file:line."""

from typing import Any

from capture.segments import language, text as segment_text
from capture.tag_names import tag_problem

STOP_CONDITIONS = ("upgrade", "unsubscribe")
STOP_TAG = "tag:"


def read_when(value: Any, front: list[str], key_line: int) -> tuple[
        language.Segment | None, list[tuple[int, str]]]:
    """A step's `when:` as a Segment (None when the key is absent), with every problem
    at the line of its key (`front` is the front matter, which starts on line 2)."""
    if value is None:
        return None, []
    if not isinstance(value, dict) or not value:
        return None, [(key_line, "when: expected segment keys like tags:, clicked: "
                                 "(see docs/use/segments.md)")]
    try:
        _, lines = segment_text.load_yaml("\n".join(front), first_line=2)
        return language.parse(value, lines=lines, prefix="when"), []
    except language.SegmentError as error:
        return None, [(problem.line or key_line,
                       f"{problem.key}: {problem.message}" if problem.key else problem.message)
                      for problem in error.problems]


def read_stop_on(value: Any) -> tuple[tuple[str, ...], list[str]]:
    """The stop conditions of `stop_on` (unsubscribe always among them) and what is
    wrong with the others."""
    values = value if isinstance(value, list) else [value]
    found, problems = ["unsubscribe"], []
    for item in values:
        if isinstance(item, str) and item.startswith(STOP_TAG):
            problem = tag_problem(item[len(STOP_TAG):])
            if problem:
                problems.append(f"stop_on: {item!r}: {problem}")
                continue
        elif item not in STOP_CONDITIONS:
            problems.append(f"stop_on: {item!r} is not one of upgrade, unsubscribe, "
                            "tag:NAME")
            continue
        if item not in found:
            found.append(item)
    return tuple(found), problems


def stop_tags(stop_on: tuple[str, ...]) -> tuple[str, ...]:
    """The tag names among stop conditions (`tag:vip` → `vip`)."""
    return tuple(item[len(STOP_TAG):] for item in stop_on if item.startswith(STOP_TAG))
