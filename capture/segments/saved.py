"""The owner's saved segments: a name and the YAML text of the segment, checked before
anything is stored, listed with their live counts."""

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from capture.db import db
from capture.models import SavedSegment
from capture.segments.language import Segment, SegmentError
from capture.segments.query import count_both
from capture.segments.text import parse_text

NAME_MAX = 100


class SavedSegmentError(ValueError):
    """A name or definition that cannot be saved; `field` is "name" or "definition",
    the message one line per problem (`line N: key: message` for the definition)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Counted:
    """A saved segment with its counts now: members (any subscription) and audience
    (subscribed, not suppressed: who a broadcast to it would reach). A definition that
    no longer reads (the language changed) has `problem` and no counts."""

    segment: SavedSegment
    members: int | None
    audience: int | None
    problem: str = ""


def rule_of(saved: SavedSegment) -> Segment:
    """The parsed segment of a saved one (raises SegmentError if it no longer reads)."""
    return parse_text(saved.definition)


def get(segment_id: int) -> SavedSegment | None:
    return db.session.get(SavedSegment, segment_id)


def listed() -> list[Counted]:
    """Every saved segment by name, each with its live counts (one statement each)."""
    counted = []
    for saved in db.session.scalars(select(SavedSegment).order_by(SavedSegment.name)):
        try:
            rule = rule_of(saved)
        except SegmentError as error:
            counted.append(Counted(saved, None, None, str(error)))
            continue
        counted.append(Counted(saved, *count_both(rule)))
    return counted


def _checked(name: str, definition: str) -> tuple[str, str]:
    name = " ".join((name or "").split())
    if not name:
        raise SavedSegmentError("name", "Give the segment a name.")
    if len(name) > NAME_MAX:
        raise SavedSegmentError("name", f"A name is at most {NAME_MAX} characters.")
    definition = (definition or "").replace("\r\n", "\n").strip("\n") + "\n"
    try:
        parse_text(definition)
    except SegmentError as error:
        raise SavedSegmentError("definition", str(error)) from None
    return name, definition


def save(name: str, definition: str, segment_id: int | None = None) -> SavedSegment:
    """Create a saved segment, or change the one with `segment_id`; nothing is stored
    when the name or the definition has a problem (SavedSegmentError)."""
    name, definition = _checked(name, definition)
    clash = db.session.scalar(select(SavedSegment.id).where(SavedSegment.name == name))
    if clash is not None and clash != segment_id:
        raise SavedSegmentError("name", f"A segment named “{name}” exists already.")
    saved = get(segment_id) if segment_id is not None else SavedSegment()
    if saved is None:
        raise SavedSegmentError("name", "This segment was deleted meanwhile.")
    saved.name, saved.definition = name, definition
    db.session.add(saved)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise SavedSegmentError("name", f"A segment named “{name}” exists already.") from None
    return saved


def delete(segment_id: int) -> str | None:
    """Delete a saved segment; its name, or None when there was none."""
    saved = get(segment_id)
    if saved is None:
        return None
    name = saved.name
    db.session.delete(saved)
    db.session.commit()
    return name
