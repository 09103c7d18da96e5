"""Broadcast files: loading and checking `broadcasts/<name>.md`, and a broadcast's content
in the shape the composer renders.

A broadcast is one Markdown file with YAML front matter (`subject`, or a list of 2-4
for a subject test, `preheader`, `segment`, `send_at`, `from`, optionally `name`,
`send_window`, `timezone`, `test`); its name is the file name without `.md`. Every
problem is kept as `file:line: message`. A file without a Broadcast row is a draft;
`broadcasts send` freezes its content into the row (`capture.mail.broadcast_actions`),
and from then on the row, never the file, is what is sent.
"""

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import current_app

from capture import languages
from capture.mail import subject_tests
from capture.mail.front_matter import Problem, key_line, read_yaml
from capture.mail.sequences import check_template
from capture.mail.time_values import read_send_window
from capture.markup import link_tag_problems
from capture.segments import language, text as segment_text

NAME = re.compile(r"^[a-z0-9_-]{1,100}$")
KEYS = {"name", "subject", "preheader", "segment", "send_at", "from", "test", "send_window",
        "timezone", "language"}


@dataclass(frozen=True)
class Content:
    """What a broadcast sends, in the two roles the composer knows: the "sequence"
    (its name names the list, `sender`, `reply_to`) and the "step" (subject,
    preheader, body, its identity `key`). Built from a file or from a frozen row."""

    name: str
    subject: str
    body: str
    preheader: str = ""
    sender: str | None = None
    reply_to: str | None = None
    # A subject test's subjects (`subject` is the first); () for one subject.
    subjects: tuple[str, ...] = ()
    # The footer's language (None: each lead's page's).
    language: str | None = None

    @property
    def key(self) -> str:
        """The delivery's `step` (a broadcast delivery has sequence "")."""
        return self.name

    @property
    def filename(self) -> str:
        return f"{self.name}.md"

    @property
    def event_details(self) -> dict[str, str]:
        """What the timeline's `send` event says about the email."""
        return {"broadcast": self.name}


@dataclass
class BroadcastFile:
    """One file of the broadcasts folder, read and checked."""

    name: str
    path: Path
    text: str = ""
    subject: str = ""
    # A subject test: the 2-4 subjects ([] for one), and `test` as {share, wait_hours,
    # pick_by} (None: every recipient gets one of the subjects at once).
    subjects: list[str] = field(default_factory=list)
    test: dict[str, Any] | None = None
    preheader: str = ""
    sender: str | None = None
    language: str | None = None
    body: str = ""
    # The segment as written (a mapping; {} = every subscribed lead) and parsed.
    segment_data: dict[str, Any] = field(default_factory=dict)
    segment: Any = None
    send_at: datetime | None = None
    # Its emails go out only inside these hours of `timezone` (as written; None: any).
    send_window: str | None = None
    timezone: str = "UTC"
    send_at_line: int = 1
    segment_line: int = 1
    problems: list[Problem] = field(default_factory=list)

    @property
    def filename(self) -> str:
        return self.path.name

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def file_hash(self) -> str:
        """SHA-256 of the text: frozen with the content, so `check` sees later edits."""
        return text_hash(self.text)

    def content(self) -> Content:
        return Content(self.name, self.subject, self.body, self.preheader, self.sender,
                       subjects=tuple(self.subjects), language=self.language)

    def problem(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.filename, line, message))


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def folder() -> Path:
    """The broadcasts folder (CAPTURE_BROADCASTS_DIR)."""
    return Path(current_app.config["BROADCASTS_DIR"])


def names() -> list[str]:
    """The names of the broadcast files, sorted (hidden files are editor leftovers)."""
    root = folder()
    if not root.is_dir():
        return []
    return sorted(path.stem for path in root.glob("*.md")
                  if path.is_file() and not path.name.startswith("."))


def find(name: str) -> BroadcastFile | None:
    """The file of broadcast `name`, read and checked; None when there is no such file."""
    if not NAME.match(name or ""):
        return None
    path = folder() / f"{name}.md"
    return load(path) if path.is_file() else None


def load_all() -> list[BroadcastFile]:
    """Every broadcast file, read and checked."""
    return [load(folder() / f"{name}.md") for name in names()]


def load(path: Path) -> BroadcastFile:
    """Read one broadcast file, collecting every problem instead of stopping."""
    broadcast = BroadcastFile(name=path.stem, path=path)
    if not NAME.match(path.stem):
        broadcast.problem(1, "the file name must be lowercase letters, digits, - and _ "
                             "(like spring-sale.md)")
    try:
        broadcast.text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        broadcast.problem(1, f"cannot read: {error.strerror or error}")
        return broadcast
    lines = broadcast.text.splitlines()
    if not lines or lines[0].strip() != "---":
        broadcast.problem(1, "must start with a --- front matter block")
        return broadcast
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
    if end is None:
        broadcast.problem(1, "front matter is not closed with ---")
        return broadcast
    front = lines[1:end]
    broadcast.body = "\n".join(lines[end + 1:]).strip("\n") + "\n"
    data = read_yaml("\n".join(front), broadcast.filename, 1, broadcast.problems)
    if data is None:
        return broadcast
    _read_front(broadcast, data, front)
    body_line = end + 2
    if not broadcast.body.strip():
        broadcast.problem(body_line, "the email has no body")
    check_template(broadcast.body, broadcast.filename, body_line, broadcast.problems, False)
    for line, message in link_tag_problems(broadcast.body):
        broadcast.problem(body_line + line - 1, message)
    broadcast.problems.sort(key=lambda p: p.line)
    return broadcast


def _read_front(broadcast: BroadcastFile, data: dict, front: list[str]) -> None:
    """Check the front matter's keys and values into `broadcast`."""
    line = lambda key: key_line(front, key, 1)  # noqa: E731 - the file line of a key
    for key in sorted(set(map(str, data)) - KEYS):
        broadcast.problem(line(key), f"unknown key {key!r} (known: {', '.join(sorted(KEYS))})")
    name = data.get("name")
    if name is not None and str(name) != broadcast.name:
        broadcast.problem(line("name"), f"name {name!r} does not match the file name "
                                        f"{broadcast.name!r}: rename one of them")
    _read_subject(broadcast, data, front)
    preheader = data.get("preheader", "")
    if not isinstance(preheader, str):
        broadcast.problem(line("preheader"), "preheader must be text")
    else:
        broadcast.preheader = preheader.strip()
        check_template(broadcast.preheader, broadcast.filename, line("preheader"),
                        broadcast.problems, True)
    sender = data.get("from")
    if sender is not None:
        if not isinstance(sender, str) or "@" not in sender or re.search(r"[\r\n]", sender):
            broadcast.problem(line("from"), "from: expected an address like Name <a@b.c>")
        else:
            broadcast.sender = sender.strip()
    if data.get("language") is not None:
        problem = languages.language_problem(data["language"])
        if problem:
            broadcast.problem(line("language"), f"language: {problem}")
        else:
            broadcast.language = data["language"]
    broadcast.test = subject_tests.read_test(data, front, broadcast.filename,
                                             broadcast.problems)
    _read_send_at(broadcast, data.get("send_at"), line("send_at"))
    window, zone, wrong = read_send_window(data)
    for key, message in wrong:
        broadcast.problem(line(key), message)
    if window is not None:
        broadcast.send_window = f"{window[0]:%H:%M}-{window[1]:%H:%M}"
    if zone is not None:
        broadcast.timezone = str(zone)
    _read_segment(broadcast, data, front)


def _read_subject(broadcast: BroadcastFile, data: dict, front: list[str]) -> None:
    """`subject`: one, or a list of 2-4 (a subject test), each a template."""
    subjects = subject_tests.read_subjects(data, front, broadcast.filename,
                                           broadcast.problems)
    for text, line in subjects:
        check_template(text, broadcast.filename, line, broadcast.problems, True)
    broadcast.subject = subjects[0][0] if subjects else ""
    broadcast.subjects = [text for text, _ in subjects] if len(subjects) > 1 else []


def _read_send_at(broadcast: BroadcastFile, value: Any, line: int) -> None:
    """`send_at`: an ISO time with its offset, kept as naive UTC."""
    broadcast.send_at_line = line
    if value is None:
        return
    moment = parse_time(value)
    if moment is None:
        broadcast.problem(line, f"send_at {str(value)!r}: use an ISO time with its offset, "
                                "like 2026-05-04T09:00:00+02:00")
        return
    broadcast.send_at = moment


def parse_time(value: Any) -> datetime | None:
    """An ISO time with an offset (text or a YAML timestamp) as naive UTC; None when
    unreadable or without an offset (a time without one could be anyone's)."""
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    if moment.tzinfo is None:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None)


def _read_segment(broadcast: BroadcastFile, data: dict, front: list[str]) -> None:
    """`segment`: the segment language (capture.segments), lines pointing into the file."""
    value = data.get("segment")
    line = broadcast.segment_line = key_line(front, "segment", 1)
    if value is not None and not isinstance(value, dict):
        broadcast.problem(line, "segment: expected keys like pages:, tags: (or no segment: "
                                "every subscribed lead)")
        return
    try:
        # The front matter starts on the file's second line.
        _, lines = segment_text.load_yaml("\n".join(front), first_line=2)
        broadcast.segment = language.parse(value or {}, lines=lines,
                                           filename=broadcast.filename, prefix="segment")
    except language.SegmentError as error:
        for problem in error.problems:
            message = f"{problem.key}: {problem.message}" if problem.key else problem.message
            broadcast.problem(problem.line or line, message)
        return
    broadcast.segment_data = broadcast.segment.as_mapping()
