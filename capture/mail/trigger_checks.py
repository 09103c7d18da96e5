"""Which sequence triggers may fire: the checks that need the database or every
sequence at once, shared by `sequences check`, the dashboard and the scheduler.

A trigger naming a page that does not exist, or a tag trigger in a loop (sequence A's
link tags start B, whose link tags start A), holds its sequence's triggers: no lead is
started by them until the files are fixed, rather than guessing what was meant.
"""

import threading
from dataclasses import dataclass

from sqlalchemy import select

from capture.db import db
from capture.mail import broadcasts
from capture.mail.front_matter import Problem
from capture.mail.sequences import Sequence
from capture.mail.triggers import Trigger
from capture.markup import link_tags
from capture.models import LeadTag, Page

_tags_cache: dict[tuple[str, tuple], frozenset[str]] = {}
_tags_lock = threading.Lock()


def tags_added_by(sequence: Sequence) -> frozenset[str]:
    """The tags the sequence's emails give on a click (their link tags), read once per
    version of the folder."""
    key = (sequence.name, sequence.signature)
    with _tags_lock:
        found = _tags_cache.get(key)
    if found is None:
        found = frozenset(name for step in sequence.steps
                          for _, name in link_tags(step.body))
        with _tags_lock:
            if len(_tags_cache) > 1000:
                _tags_cache.clear()
            _tags_cache[key] = found
    return found


def settings_file(sequence: Sequence) -> str:
    """Where the sequence's triggers are written."""
    return sequence.settings_file or f"{sequence.name}/sequence.yml"


def loops(sequences: list[Sequence]) -> dict[str, tuple[Trigger, list[str]]]:
    """The sequences in a tag loop: name → (the tag trigger that closes it, the loop
    as 'A tags x → starts B → … → starts A' steps)."""
    by_tag: dict[str, list[tuple[Sequence, Trigger]]] = {}
    for sequence in sequences:
        for trigger in sequence.start_on:
            if trigger.kind == "tag":
                by_tag.setdefault(trigger.value, []).append((sequence, trigger))
    # An edge A → B when a link tag of A is a tag trigger of B.
    edges: dict[str, list[tuple[str, str, Trigger]]] = {}
    for sequence in sequences:
        for tag in sorted(tags_added_by(sequence)):
            for target, trigger in by_tag.get(tag, []):
                edges.setdefault(sequence.name, []).append((target.name, tag, trigger))
    found: dict[str, tuple[Trigger, list[str]]] = {}
    for start in sorted(edges):
        path = _cycle_from(start, edges)
        if path is not None:
            closing = path[-1][2]
            words = [start] + [f"tags {tag} → starts {target}" for target, tag, _ in path]
            found[start] = (closing, words)
    return found


def _cycle_from(start: str, edges) -> list | None:
    """The edges of a shortest way from `start` back to itself, or None."""
    queue = [(start, [])]
    seen = {start}
    while queue:
        name, path = queue.pop(0)
        for target, tag, trigger in edges.get(name, []):
            step = path + [(target, tag, trigger)]
            if target == start:
                return step
            if target not in seen:
                seen.add(target)
                queue.append((target, step))
    return None


@dataclass
class Status:
    """What holds each sequence's triggers, as problems (empty: they may fire)."""

    held: dict[str, list[Problem]]

    def may_fire(self, sequence: Sequence) -> bool:
        """True when the sequence's triggers may start leads: none of them is held and
        its files have no problem (a broken `sequence.yml` may have been misread)."""
        return not self.held.get(sequence.name) and not sequence.problems


def status(sequences: list[Sequence], connection=None, *, check_tags: bool = False) -> Status:
    """The problems of every sequence's triggers that the files alone cannot show:
    unknown pages, loops and (`check_tags`, for `sequences check`) tags nothing gives."""
    connection = connection or db.session.connection()
    held: dict[str, list[Problem]] = {}
    slugs = {slug for sequence in sequences for trigger in sequence.start_on
             if trigger.kind == "optin" for slug in trigger.value}
    pages = (set(connection.execute(select(Page.slug).where(Page.slug.in_(slugs))).scalars())
             if slugs else set())
    tag_triggers = any(t.kind == "tag" for s in sequences for t in s.start_on)
    known_tags = given_tags(sequences, connection) if check_tags and tag_triggers else set()
    for sequence in sequences:
        problems = held.setdefault(sequence.name, [])
        file = settings_file(sequence)
        for trigger in sequence.start_on:
            if trigger.kind == "optin":
                for slug in trigger.value:
                    if slug not in pages:
                        problems.append(Problem(file, trigger.line,
                                                f"start_on: optin: no page {slug!r}"))
            if check_tags and trigger.kind == "tag" and trigger.value not in known_tags:
                problems.append(Problem(
                    file, trigger.line, f"start_on: tag: no page, link or lead gives the tag "
                                        f"{trigger.value!r}"))
    for name, (trigger, words) in loops(sequences).items():
        sequence = next(s for s in sequences if s.name == name)
        held[name].append(Problem(settings_file(sequence), trigger.line,
                                  "start_on: tag loop: " + " → ".join(words)
                                  .replace(" → tags", " tags", 1)))
    return Status({name: problems for name, problems in held.items() if problems})


def given_tags(sequences: list[Sequence], connection=None) -> set[str]:
    """Every tag something gives: a page's tags, a sequence's or broadcast's link tags,
    a lead's tags. A trigger or a `when:` naming another tag fails `sequences check`
    (likely a typo); the scheduler does not hold for it (a tag given by hand or by the
    API tomorrow is right)."""
    connection = connection or db.session.connection()
    known = set(connection.execute(select(LeadTag.tag).distinct()).scalars())
    for tags in connection.execute(select(Page.tags)).scalars():
        known.update(tags or [])
    for sequence in sequences:
        known |= tags_added_by(sequence)
    for broadcast in broadcasts.load_all():
        known.update(name for _, name in link_tags(broadcast.body))
    return known
