"""Segments written as YAML text (a saved segment, a file's front matter): loading the
text with the line of every key, so each problem can say where it is."""

from typing import Any

import yaml

from capture.segments.language import Segment, SegmentError, parse

# The saved segments of the dashboard hold a few dozen lines; this is generous.
MAX_TEXT = 20_000


def _key_lines(node: yaml.Node, path: str, first_line: int, lines: dict[str, int]) -> None:
    """Record the line of every mapping key under `node`, by dotted path."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value)
            dotted = f"{path}.{key}" if path else key
            lines.setdefault(dotted, key_node.start_mark.line + first_line)
            _key_lines(value_node, dotted, first_line, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _key_lines(item, f"{path}.{index}" if path else str(index), first_line, lines)


def load_yaml(text: str, *, first_line: int = 1) -> tuple[Any, dict[str, int]]:
    """The YAML data of `text` and the 1-based line of each mapping key by dotted path
    ("segment.tags.any"); `first_line` is the line `text` starts at in its file (front
    matter starts after the `---`). A YAML syntax error raises SegmentError with its
    line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + first_line if mark else None
        reason = error.problem or error.context or "unreadable YAML"
        raise SegmentError(f"this is not valid YAML: {reason}", line=line) from None
    except yaml.YAMLError as error:
        raise SegmentError(f"this is not valid YAML: {error}") from None
    lines: dict[str, int] = {}
    if node is not None:
        _key_lines(node, "", first_line, lines)
    return data, lines


def parse_text(text: str, filename: str | None = None) -> Segment:
    """A segment written as YAML (the keys at the top level); problems say `line N:`
    (or `filename:N:`). Empty text is every lead."""
    if len(text) > MAX_TEXT:
        raise SegmentError(f"a segment is at most {MAX_TEXT} characters")
    try:
        data, lines = load_yaml(text)
    except SegmentError as error:
        raise SegmentError(error.message, line=error.line, filename=filename) from None
    return parse(data, lines=lines, filename=filename)
