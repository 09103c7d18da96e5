"""A sequence's conditions against the database: what a step's `when:` names that does
not exist (the step is held, never guessed), which of some leads the `when:` holds for
(one query for a whole chunk of leads), and who carries a `stop_on` tag.

A page slug is known when the page exists, a sequence when its folder does, a
broadcast when its file or its row does: the owner makes those before naming them, so
an unknown one is a mistake, and the step is held. A tag is different: it is data that
arrives later (the first VIP is tagged tomorrow), and holding the step until then
would stall every lead at it. A tag that nothing gives (no lead has it, no page, link
or broadcast gives it) fails `sequences check`, as it does in a `start_on` trigger,
but does not hold the step: the condition is simply false for every lead until one
has the tag."""

from collections.abc import Iterable

from sqlalchemy import select, update

from capture.db import db
from capture.mail import broadcasts, trigger_checks
from capture.mail.front_matter import Problem
from capture.mail.library import Library
from capture.mail.sequences import Sequence, Step
from capture.models import Broadcast, Enrollment, Lead, LeadTag
from capture.segments import query
from capture.segments.language import Segment


def _tag_names(segment: Segment) -> list[str]:
    tags = segment.tags
    return list(dict.fromkeys([*tags.any, *tags.all, *tags.none])) if tags else []


def _sequence_names(segment: Segment) -> list[str]:
    names = [*(segment.in_sequence or ()), *(segment.finished_sequence or ())]
    for engagement in (segment.opened, segment.clicked):
        if engagement:
            names += [sequence for sequence, _ in engagement.steps]
    return list(dict.fromkeys(names))


def _broadcast_names(segment: Segment) -> list[str]:
    names = [name for engagement in (segment.opened, segment.clicked) if engagement
             for name in engagement.broadcasts]
    return list(dict.fromkeys(names))


def reference_problems(sequence: Sequence, step: Step) -> list[Problem]:
    """What the step's `when:` names that does not exist, each at the `when:` line."""
    segment = step.when
    if segment is None:
        return []
    file, line = f"{sequence.name}/{step.filename}", step.when_line
    problems = [Problem(file, line, f"when.pages: no page {slug!r} (see `pages list`)")
                for slug in query.unknown_pages(segment)]
    folders = set(Library.current().names())
    problems += [Problem(file, line, f"when: no sequence folder {name!r}")
                 for name in _sequence_names(segment) if name not in folders]
    wanted = _broadcast_names(segment)
    if wanted:
        known = set(broadcasts.names()) | set(db.session.scalars(
            select(Broadcast.name).where(Broadcast.name.in_(wanted))))
        problems += [Problem(file, line, f"when: no broadcast {name!r}")
                     for name in wanted if name not in known]
    return problems


def tag_problems(sequence: Sequence) -> list[Problem]:
    """For `sequences check`: each tag of a `when:` that nothing gives (see
    `trigger_checks.given_tags`), at the `when:` line."""
    wanted = [(step, name) for step in sequence.steps if step.ok and step.when is not None
              for name in _tag_names(step.when)]
    if not wanted:
        return []
    given = trigger_checks.given_tags(Library.current().all())
    return [Problem(f"{sequence.name}/{step.filename}", step.when_line,
                    f"when.tags: no page, link or lead gives the tag {name!r}")
            for step, name in wanted if name not in given]


def all_reference_problems(sequence: Sequence) -> list[Problem]:
    """`reference_problems` of every readable step of the sequence."""
    return [problem for step in sequence.steps if step.ok
            for problem in reference_problems(sequence, step)]


def matching(step: Step, lead_ids: Iterable[int]) -> set[int]:
    """Those of the leads the step's `when:` holds for now: one query for all of them."""
    ids = list(lead_ids)
    if step.when is None:
        return set(ids)
    if not ids:
        return set()
    return set(db.session.scalars(select(Lead.id).where(
        Lead.id.in_(ids), *query.conditions(step.when, per_lead=True))))


def stop_tags_of(lead_ids: Iterable[int], names: Iterable[str]) -> dict[int, set[str]]:
    """Each of the leads' tags among `names` (leads without any left out): one query."""
    ids, names = list(lead_ids), list(names)
    found: dict[int, set[str]] = {}
    if ids and names:
        for lead_id, tag in db.session.execute(
                select(LeadTag.lead_id, LeadTag.tag)
                .where(LeadTag.lead_id.in_(ids), LeadTag.tag.in_(names))):
            found.setdefault(lead_id, set()).add(tag)
    return found


def stop_tagged(pairs: Iterable[tuple[int, str]], connection=None) -> int:
    """Stop the sequences whose `stop_on` names a tag the lead just got: (lead id, tag)
    pairs; stop_reason `tag:NAME`. Returns how many enrolments stopped."""
    by_tag: dict[str, list[int]] = {}
    for lead_id, tag in pairs:
        by_tag.setdefault(tag, []).append(lead_id)
    if not by_tag:
        return 0
    stopping = [(sequence.name, tag) for sequence in Library.current().all()
                for tag in sequence.stop_tags if tag in by_tag]
    connection = connection or db.session.connection()
    stopped = 0
    for name, tag in stopping:
        table = Enrollment.__table__
        result = connection.execute(
            update(table)
            .where(table.c.sequence == name, table.c.lead_id.in_(by_tag[tag]),
                   table.c.state.in_(("active", "waiting", "sending")))
            .values(state="stopped", stop_reason=f"tag:{tag}", next_due_at=None))
        stopped += result.rowcount or 0
    return stopped
