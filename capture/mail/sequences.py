"""Sequences: loading and checking the Markdown step files the owner edits.

A sequence is a folder `sequences/<name>/` with an optional `sequence.yml` and step
files `NN-<step>.md`. A step's identity is its file name without the order prefix
(`02-guide.md` is step `guide`), so renumbering files never makes a step new.
Folders are re-read when a file in them changes (`capture.mail.library`); every
problem is kept as `file:line: message`, and a broken step stays in its place,
marked, so it is held rather than skipped over.
"""

import re
from dataclasses import dataclass, field
from datetime import time, timedelta
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from jinja2 import Template, TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment

from capture import languages
from capture.mail import conditions, subject_tests
from capture.mail.front_matter import Problem, key_line, read_yaml
from capture.mail.time_values import parse_clock, parse_delay, read_send_window
from capture.mail.triggers import Trigger, read_start_on
from capture.markup import link_tag_problems
from capture.segments.language import Segment

SEQUENCE_KEYS = {"from", "reply_to", "stop_on", "send_window", "timezone", "language"}
# Ways into a sequence besides a page's `sequence` (capture.mail.triggers).
SEQUENCE_KEYS |= {"start_on", "reenter"}
STEP_KEYS = {"subject", "delay", "at", "preheader", "when"}
# What a step may use: {{ lead.<attr> }}, {{ page.<attr> }}, {{ unsubscribe_url }};
# `lead.fields.<name>` is one of the page's own fields (empty when the lead has none).
VARIABLES = {
    "lead": {"name", "first_name", "email", "ref", "country", "fields"},
    "page": {"title"},
    "unsubscribe_url": set(),
}
# The order prefix of a step file: `01-`, `2_`, `01.5-` …
_ORDER_PREFIX = re.compile(r"^(\d+(?:\.\d+)*)[-_. ]*")
_STEP_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]*$")

# The template environment for step files: no access to anything but the variables
# passed in; lead values are data passed as variables, never template source.
template_env = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)


@lru_cache(maxsize=1024)
def compiled(source: str) -> Template:
    """A step template compiled once per process: the scheduler renders the same few
    sources for every lead, and compiling costs more than rendering."""
    return template_env.from_string(source)


@dataclass
class Step:
    """One email of a sequence."""

    key: str
    filename: str
    subject: str = ""
    # A subject test: its 2-4 subjects (`subject` is the first); [] for one subject.
    subjects: list[str] = field(default_factory=list)
    delay: timedelta = timedelta(0)
    at: time | None = None
    preheader: str = ""
    body: str = ""
    # `when:`: sent only to leads in this segment when it is due, else skipped.
    when: Segment | None = None
    when_line: int = 0
    problems: list[Problem] = field(default_factory=list)
    # `delay` or `at` as written when it could not be read (`{"delay": "2 days"}`),
    # so the dashboard can describe the step as the file has it.
    unreadable: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """False when the file has a problem: the step is held, never half-sent."""
        return not self.problems


@dataclass
class Sequence:
    """A folder of steps with its settings."""

    name: str
    folder: Path
    sender: str | None = None
    reply_to: str | None = None
    # The language of its footers (None: each lead's page's; capture.mail.compose).
    language: str | None = None
    stop_on: tuple[str, ...] = ("unsubscribe",)
    send_window: tuple[time, time] | None = None
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    steps: list[Step] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    signature: tuple = ()
    # `start_on` and `reenter` (capture.mail.triggers); file: sequence.yml's name.
    start_on: tuple[Trigger, ...] = ()
    reenter: bool = False
    settings_file: str = ""

    @property
    def stop_tags(self) -> tuple[str, ...]:
        """The tags that stop the sequence for a lead who gets one (`stop_on: [tag:x]`)."""
        return conditions.stop_tags(self.stop_on)

    def all_problems(self) -> list[Problem]:
        """Problems of the folder and of every step, in file order."""
        problems = self.problems + [p for step in self.steps for p in step.problems]
        return sorted(problems, key=lambda p: (p.file, p.line))

    def step(self, key: str) -> Step | None:
        """The step with this identity, if the folder has it."""
        return next((step for step in self.steps if step.key == key), None)

    def steps_after(self, key: str | None, filename: str | None = None) -> list[Step]:
        """The steps after the one a lead had last (all when it had none).

        The step is found by its identity, so renumbered files keep their place; if
        it was removed since, its old file name tells where it stood."""
        if key is None:
            return list(self.steps)
        for index, step in enumerate(self.steps):
            if step.key == key:
                return self.steps[index + 1:]
        if not filename:
            return []
        return [step for step in self.steps
                if step_order(step.filename) > step_order(filename)]


def step_order(filename: str) -> tuple:
    """Sort key for step files: by the number in the prefix (2 before 10), then name."""
    match = _ORDER_PREFIX.match(filename)
    numbers = tuple(int(n) for n in match.group(1).split(".")) if match else ()
    return (numbers, filename)


def step_key(filename: str) -> str:
    """The identity of a step file: its name without order prefix and extension."""
    return _ORDER_PREFIX.sub("", Path(filename).stem).lower()


def load_sequence(folder: Path) -> Sequence:
    """Read one sequence folder, collecting every problem instead of stopping."""
    sequence = Sequence(name=folder.name, folder=folder)
    settings_file = folder / "sequence.yml"
    if settings_file.exists():
        _read_settings(sequence, settings_file)
    seen: dict[str, str] = {}
    # Hidden files are editor locks (`.#01-welcome.md`) or macOS `._` copies, not steps.
    files = [p for p in folder.glob("*.md") if not p.name.startswith(".")]
    for path in sorted(files, key=lambda p: step_order(p.name)):
        step = _read_step(path, f"{folder.name}/{path.name}")
        if step.key in seen:
            step.problems.append(Problem(
                f"{folder.name}/{path.name}", 1,
                f"step name {step.key!r} is also used by {seen[step.key]}",
            ))
        seen.setdefault(step.key, path.name)
        sequence.steps.append(step)
    if not sequence.steps:
        sequence.problems.append(Problem(f"{folder.name}/", 1, "no step files (*.md)"))
    return sequence


def _read_settings(sequence: Sequence, path: Path) -> None:
    file = f"{sequence.name}/{path.name}"
    problems = sequence.problems
    text = path.read_text(encoding="utf-8", errors="replace")
    data = read_yaml(text, file, 0, problems)
    if data is None:
        return
    lines = text.splitlines()
    for key in sorted(set(map(str, data)) - SEQUENCE_KEYS):
        problems.append(Problem(file, key_line(lines, key, 0), f"unknown key {key!r}"))
    for key in ("from", "reply_to"):
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or "@" not in value or re.search(r"[\r\n]", value):
            problems.append(Problem(file, key_line(lines, key, 0),
                                    f"{key}: expected an address like Name <a@b.c>"))
        elif key == "from":
            sequence.sender = value
        else:
            sequence.reply_to = value
    if data.get("language") is not None:
        problem = languages.language_problem(data["language"])
        if problem:
            problems.append(Problem(file, key_line(lines, "language", 0), f"language: {problem}"))
        else:
            sequence.language = data["language"]
    if data.get("stop_on") is not None:
        sequence.stop_on, wrong_stops = conditions.read_stop_on(data["stop_on"])
        problems.extend(Problem(file, key_line(lines, "stop_on", 0), message)
                        for message in wrong_stops)
    window, zone, wrong = read_send_window(data)
    problems.extend(Problem(file, key_line(lines, key, 0), message) for key, message in wrong)
    sequence.send_window = window
    sequence.timezone = zone or sequence.timezone
    _read_triggers(sequence, file, text, data, lines)


def _read_triggers(sequence: Sequence, file: str, text: str, data: dict,
                   lines: list[str]) -> None:
    """`start_on` and `reenter`, each problem at its trigger's line."""
    sequence.settings_file = file
    sequence.start_on, sequence.reenter, wrong = read_start_on(text, data)
    sequence.problems.extend(Problem(file, line or key_line(lines, key, 0), message)
                             for key, line, message in wrong)
    upgrade = next((t for t in sequence.start_on if t.kind == "upgrade"), None)
    if upgrade is not None and "upgrade" in sequence.stop_on:
        # It would stop the moment it started: one of the two is a mistake.
        sequence.problems.append(Problem(file, upgrade.line, "start_on: upgrade: the "
                                         "sequence also has stop_on: upgrade"))


def _read_step(path: Path, file: str) -> Step:
    step = Step(key=step_key(path.name), filename=path.name)
    problems = step.problems
    if not _STEP_KEY.match(step.key):
        problems.append(Problem(file, 1, "file name must be like 01-welcome.md"))
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:  # a dangling link, a folder: reported, never fatal
        problems.append(Problem(file, 1, f"cannot read: {error.strerror or error}"))
        return step
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        problems.append(Problem(file, 1, "must start with a --- front matter block"))
        return step
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        problems.append(Problem(file, 1, "front matter is not closed with ---"))
        return step
    front = lines[1:end]
    data = read_yaml("\n".join(front), file, 1, problems)
    body_first_line = end + 2
    step.body = "\n".join(lines[end + 1:]).strip("\n") + "\n"
    if data is None:
        return step
    for key in sorted(set(map(str, data)) - STEP_KEYS):
        problems.append(Problem(file, key_line(front, key, 1), f"unknown key {key!r}"))
    subjects = subject_tests.read_subjects(data, front, file, problems)
    for text, line in subjects:
        check_template(text, file, line, problems, True)
    step.subject = subjects[0][0] if subjects else ""
    step.subjects = [text for text, _ in subjects] if len(subjects) > 1 else []
    delay = parse_delay(data.get("delay", 0))
    if delay is None:
        step.unreadable["delay"] = str(data.get("delay"))
        problems.append(Problem(file, key_line(front, "delay", 1),
                                f"delay {data.get('delay')!r}: use 0, 30m, 2h, 3d or 1w"))
    else:
        step.delay = delay
    if data.get("at") is not None:
        step.at = parse_clock(data["at"])
        if step.at is None:
            step.unreadable["at"] = str(data["at"])
            problems.append(Problem(file, key_line(front, "at", 1),
                                    f"at {data['at']!r}: use a time of day like \"09:30\""))
    preheader = data.get("preheader", "")
    if not isinstance(preheader, str):
        problems.append(Problem(file, key_line(front, "preheader", 1), "preheader must be text"))
    else:
        step.preheader = preheader.strip()
        check_template(step.preheader, file, key_line(front, "preheader", 1), problems, True)
    step.when_line = key_line(front, "when", 1)
    step.when, wrong = conditions.read_when(data.get("when"), front, step.when_line)
    problems.extend(Problem(file, line, message) for line, message in wrong)
    if not step.body.strip():
        problems.append(Problem(file, body_first_line, "the email has no body"))
    check_template(step.body, file, body_first_line, problems, False)
    problems.extend(Problem(file, body_first_line + line - 1, message)
                    for line, message in link_tag_problems(step.body))
    return step


def check_template(source: str, file: str, first_line: int,
                    problems: list[Problem], single_line: bool) -> None:
    """Report Jinja syntax errors and variables a step may not use."""
    try:
        tree = template_env.parse(source)
    except TemplateSyntaxError as error:
        line = first_line if single_line else first_line + (error.lineno or 1) - 1
        problems.append(Problem(file, line, f"template error: {error.message}"))
        return
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    for node in tree.find_all(nodes.Name):
        if node.ctx != "load" or node.name in assigned:
            continue
        line = first_line if single_line else first_line + node.lineno - 1
        if node.name not in VARIABLES:
            allowed = ", ".join(f"{{{{ {v} }}}}" for v in ("lead.name", "lead.first_name",
                                "lead.email", "lead.ref", "lead.fields.NAME", "page.title",
                                "unsubscribe_url"))
            problems.append(Problem(file, line,
                                    f"unknown variable {node.name!r}; use {allowed}"))
    for node in tree.find_all(nodes.Getattr):
        inner = node.node
        if (isinstance(inner, nodes.Getattr) and inner.attr == "fields"
                and isinstance(inner.node, nodes.Name) and inner.node.name == "lead"
                and node.attr.startswith("_")):
            line = first_line if single_line else first_line + node.lineno - 1
            problems.append(Problem(file, line, f"unknown variable 'lead.fields.{node.attr}'"))
        if isinstance(node.node, nodes.Name) and node.node.name in VARIABLES:
            if node.attr not in VARIABLES[node.node.name]:
                line = first_line if single_line else first_line + node.lineno - 1
                problems.append(Problem(
                    file, line, f"unknown variable {node.node.name + '.' + node.attr!r}"))
