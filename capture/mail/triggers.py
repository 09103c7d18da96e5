"""Sequence triggers: `start_on` and `reenter` of `sequence.yml`, read and put in words.

`start_on` is a list of one-key mappings, each a trigger kind of `KINDS`:
`{optin: [slugs]}`, `{tag: NAME}`, `{click: "<url part>"}`, `{upgrade: true}`.
What the files alone can tell is checked here, with the line of each trigger; what
needs the database (does the page exist?) or every sequence at once (tag loops) is
in `capture.mail.trigger_checks`.
"""

from collections.abc import Callable
from dataclasses import dataclass

import yaml

from capture.tag_names import tag_problem


@dataclass(frozen=True)
class Trigger:
    """One way into a sequence: its kind, what it names, the line it is written on."""

    kind: str
    value: tuple[str, ...] | str | bool
    line: int = 0

    @property
    def label(self) -> str:
        """How the `enroll` event names it: `optin:launch`, `tag:vip`, `click:/pricing`."""
        if self.kind == "upgrade":
            return "upgrade"
        if self.kind == "optin":
            return "optin:" + ",".join(self.value)
        return f"{self.kind}:{self.value}"

    def words(self) -> str:
        """The trigger in a sentence's words, after "Starts when a lead …"."""
        return KINDS[self.kind].words(self.value)


@dataclass(frozen=True)
class Kind:
    """A trigger kind: how its value is read (a value or a problem) and worded."""

    read: Callable[[object], tuple[object, str | None]]
    words: Callable[[object], str]


def _read_optin(value: object) -> tuple[object, str | None]:
    slugs = value if isinstance(value, list) else [value]
    if not slugs or not all(isinstance(slug, str) and slug.strip() for slug in slugs):
        return None, "optin: expected a list of page slugs, like [launch, webinar]"
    return tuple(slug.strip() for slug in slugs), None


def _read_tag(value: object) -> tuple[object, str | None]:
    problem = tag_problem(value)
    return (value, None) if problem is None else (None, f"tag: {problem}")


def _read_click(value: object) -> tuple[object, str | None]:
    if not isinstance(value, str) or not value.strip():
        return None, 'click: expected a part of a link\'s URL, like "/pricing"'
    return value.strip(), None


def _read_upgrade(value: object) -> tuple[object, str | None]:
    if value is not True:
        return None, "upgrade: the only value is true"
    return True, None


def _optin_words(slugs: tuple[str, ...]) -> str:
    return "opts in on " + " or ".join(slugs)


KINDS: dict[str, Kind] = {
    "optin": Kind(_read_optin, _optin_words),
    "tag": Kind(_read_tag, lambda tag: f"gets the tag {tag}"),
    "click": Kind(_read_click, lambda part: f"clicks a link containing “{part}”"),
    "upgrade": Kind(_read_upgrade, lambda _: "buys an upgrade"),
}


def read_start_on(text: str, data: dict) -> tuple[tuple[Trigger, ...], bool,
                                                    list[tuple[str, int | None, str]]]:
    """The triggers and `reenter` of a settings file (`text`, already read as `data`),
    and what is wrong as (key, line or None for the key's line, message)."""
    wrong: list[tuple[str, int | None, str]] = []
    reenter = data.get("reenter", False)
    if not isinstance(reenter, bool):
        wrong.append(("reenter", None, f"reenter: {reenter!r} is not true or false"))
        reenter = False
    start_on = data.get("start_on")
    if start_on is None:
        return (), reenter, wrong
    if not isinstance(start_on, list):
        wrong.append(("start_on", None, "start_on: expected a list of triggers, "
                                        "like [{optin: [launch]}, {tag: vip}]"))
        return (), reenter, wrong
    lines = _item_lines(text, len(start_on))
    triggers = []
    for item, line in zip(start_on, lines, strict=True):
        if not isinstance(item, dict) or len(item) != 1:
            wrong.append(("start_on", line, "start_on: each trigger is one of "
                          + ", ".join(f"{{{kind}: …}}" for kind in KINDS)))
            continue
        [(kind, value)] = item.items()
        if kind not in KINDS:
            wrong.append(("start_on", line, f"start_on: unknown trigger {kind!r}; use "
                          + ", ".join(KINDS)))
            continue
        value, problem = KINDS[kind].read(value)
        if problem:
            wrong.append(("start_on", line, f"start_on: {problem}"))
            continue
        triggers.append(Trigger(kind, value, line or 0))
    return tuple(triggers), reenter, wrong


def _item_lines(text: str, count: int) -> list[int | None]:
    """The line of each item of `start_on` (None when the YAML cannot say)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return [None] * count
    for key, value in getattr(root, "value", []):
        if getattr(key, "value", None) == "start_on" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return [None] * count


def describe(triggers: tuple[Trigger, ...], pages: list[str], reenter: bool) -> str:
    """The sequence's ways in as a sentence: its pages' opt-ins (a page's `sequence`)
    and its triggers, and whether a lead may start again."""
    ways = [_optin_words(tuple(pages))] if pages else []
    ways += [trigger.words() for trigger in triggers]
    if not ways:
        return "Nothing starts it yet: no page names it and it has no start_on."
    again = ("a lead may start again after finishing" if reenter
             else "a lead goes through it once")
    listed = ", ".join(ways[:-1]) + " or " + ways[-1] if len(ways) > 1 else ways[0]
    return f"Starts when a lead {listed}; {again}."
