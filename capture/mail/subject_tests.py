"""Subject tests in the owner's files: `subject` as a list of 2–4 subjects (a step or a
broadcast) and a broadcast's `test: {share, wait_hours, pick_by}`, read and checked;
a subject drawn for each email, and a step or broadcast with the drawn one.

A delivery keeps the index of its subject (`Delivery.subject_index`, 0-based), so a
retry, a resend and the numbers per subject all know which one it got. The broadcast
test's phases (share, wait, winner) are `capture.mail.broadcast_tests`.
"""

import dataclasses
import random
from typing import Any

from capture.mail.front_matter import Problem, item_lines, key_line

# How many subjects a subject test has: one is no test; more than four splits a list
# into groups too small to tell anything apart.
FEWEST_SUBJECTS, MOST_SUBJECTS = 2, 4
# A broadcast test's share of the recipients, in whole percent: past half, the "rest"
# that gets the winner would be smaller than the test itself.
SHARE_RANGE = (1, 50)
# The longest wait before the winner is picked: a broadcast's news does not keep.
WAIT_HOURS_MAX = 168
PICK_BY = ("clicks", "revenue")
TEST_KEYS = ("share", "wait_hours", "pick_by")
TEST_EXAMPLE = "like test: {share: 20, wait_hours: 4, pick_by: clicks}"


def read_subjects(data: dict, front: list[str], file: str,
                  problems: list[Problem]) -> list[tuple[str, int]]:
    """`subject` of a front matter (`front`: its lines, the file's second line on) as
    (text, file line) pairs: one for a subject, 2–4 for a subject test, with the
    problems added when it is missing or wrong (then the pairs are those that can be
    read, or none). The caller checks each as a template."""
    line = key_line(front, "subject", 1)
    value = data.get("subject")
    if isinstance(value, list):
        return _subject_list(value, item_lines("\n".join(front), "subject", 1), line, file,
                             problems)
    if not isinstance(value, str) or not value.strip():
        problems.append(Problem(file, line if "subject" in data else 1, "subject is missing"))
        return []
    return [(value.strip(), line)]


def _subject_list(values: list, lines: dict, line: int, file: str,
                  problems: list[Problem]) -> list[tuple[str, int]]:
    if not FEWEST_SUBJECTS <= len(values) <= MOST_SUBJECTS:
        problems.append(Problem(file, line, f"subject: a subject test has "
                                            f"{FEWEST_SUBJECTS} to {MOST_SUBJECTS} subjects, "
                                            f"this list has {len(values)}"))
        return []
    found, seen = [], {}
    for index, value in enumerate(values):
        at = lines.get(index, line)
        if not isinstance(value, str) or not value.strip():
            problems.append(Problem(file, at, f"subject {index + 1} is empty: each subject "
                                              "of the list must be text"))
            continue
        text = value.strip()
        if text in seen:
            problems.append(Problem(file, at, f"subject {index + 1} is the same as subject "
                                              f"{seen[text] + 1}"))
            continue
        seen[text] = index
        found.append((text, at))
    return found


def read_test(data: dict, front: list[str], file: str,
              problems: list[Problem]) -> dict[str, Any] | None:
    """A broadcast's `test` as {share, wait_hours, pick_by} (pick_by defaults to
    clicks); None when there is none or it is wrong (the problems added). A test
    needs `subject` as a list."""
    value = data.get("test")
    if value is None:
        return None
    line = key_line(front, "test", 1)
    lines = item_lines("\n".join(front), "test", 1)
    count = len(problems)
    if not isinstance(value, dict):
        problems.append(Problem(file, line, f"test: expected share, wait_hours and "
                                            f"pick_by, {TEST_EXAMPLE}"))
        return None
    if not isinstance(data.get("subject"), list):
        problems.append(Problem(file, line, f"test: a test picks the best of several "
                                            f"subjects: give subject a list of "
                                            f"{FEWEST_SUBJECTS} to {MOST_SUBJECTS}"))
    for key in sorted(set(map(str, value)) - set(TEST_KEYS)):
        problems.append(Problem(file, lines.get(key, line),
                                f"test.{key}: unknown key (known: {', '.join(TEST_KEYS)})"))
    share, wait, pick_by = (value.get(key) for key in TEST_KEYS)
    low, high = SHARE_RANGE
    if not _whole(share) or not low <= share <= high:
        problems.append(Problem(file, lines.get("share", line),
                                f"test.share: a whole percent of the recipients from {low} "
                                f"to {high}, got {share!r}"))
    if (not _number(wait)) or not 0 < wait <= WAIT_HOURS_MAX:
        problems.append(Problem(file, lines.get("wait_hours", line),
                                f"test.wait_hours: hours to wait after the share is sent, "
                                f"more than 0 and at most {WAIT_HOURS_MAX}, got {wait!r}"))
    pick_by = "clicks" if pick_by is None else pick_by
    if pick_by not in PICK_BY:
        problems.append(Problem(file, lines.get("pick_by", line),
                                f"test.pick_by: {' or '.join(PICK_BY)}, got {pick_by!r}"))
    if len(problems) > count:
        return None
    return {"share": share, "wait_hours": wait, "pick_by": pick_by}


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def draw(item) -> int | None:
    """A subject for one email of a step (or broadcast) with a subject test, drawn at
    random; None without one."""
    subjects = getattr(item, "subjects", ())
    return random.randrange(len(subjects)) if len(subjects) > 1 else None


def chosen(item, index: int | None):
    """The step or broadcast content as sent with subject `index` (the delivery's);
    itself when it has no subject test or the index is not one of its subjects (the
    file changed since): then its first subject goes."""
    subjects = getattr(item, "subjects", ())
    if index is None or not 0 <= index < len(subjects):
        return item
    return dataclasses.replace(item, subject=subjects[index])


def label(index: int) -> str:
    """How the owner reads a subject's place: "subject 2" (1-based)."""
    return f"subject {index + 1}"
