"""The front matter of the owner's files (sequence steps, sequence.yml, broadcasts):
YAML read without the 1.1 surprises, and each problem kept as `file:line: message`."""

import re
from dataclasses import dataclass

import yaml


class _Loader(yaml.SafeLoader):
    """YAML without the 1.1 surprises: `09:00` stays text, not 540 minutes."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers
            if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789")
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a sequence file."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


def key_line(lines: list[str], key: str, offset: int) -> int:
    """The file line where `key:` is written (offset: lines before the YAML)."""
    for number, line in enumerate(lines, start=1):
        if re.match(rf"^{re.escape(key)}\s*:", line):
            return number + offset
    return offset + 1


def item_lines(text: str, key: str, offset: int) -> dict:
    """The file line of each item under a top-level `key:` (offset: lines before the
    YAML): {index: line} for a list, {name: line} for a mapping, {} otherwise. A
    problem of one subject of a list is then told at that subject's line."""
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:
        return {}
    if not isinstance(root, yaml.MappingNode):
        return {}
    for name, value in root.value:
        if name.value != key:
            continue
        if isinstance(value, yaml.SequenceNode):
            return {index: item.start_mark.line + 1 + offset
                    for index, item in enumerate(value.value)}
        if isinstance(value, yaml.MappingNode):
            return {str(item.value): item.start_mark.line + 1 + offset
                    for item, _ in value.value}
    return {}


def read_yaml(text: str, file: str, offset: int, problems: list[Problem]) -> dict | None:
    """The `key: value` mapping of a settings file or front matter (offset: lines
    before it in `file`); None, with the problem added, when it is not one. Shared
    with broadcast files."""
    try:
        data = yaml.load(text, Loader=_Loader) if text.strip() else {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = (mark.line + 1 + offset) if mark is not None else offset + 1
        # An error found at the end of the text (an unclosed bracket) is marked just
        # past its last line; point at a line the owner can see instead.
        line = min(line, offset + max(len(text.splitlines()), 1))
        reason = getattr(error, "problem", None) or str(error).splitlines()[0]
        problems.append(Problem(file, line, f"bad YAML: {reason}"))
        return None
    if not isinstance(data, dict):
        problems.append(Problem(file, offset + 1, "expected key: value lines"))
        return None
    return data
