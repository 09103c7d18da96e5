"""API operation on a lead's tags: add and remove them in one call."""

from typing import Any

from sqlalchemy import select

from capture.api import bp
from capture.api.errors import ApiError, invalid
from capture.api.inputs import json_object, refuse_unknown
from capture.db import db
from capture.leads import tags
from capture.models import Lead
from capture.tag_names import tag_problem

# The most names one call may add or remove.
MAX_NAMES = 100


@bp.post("/leads/<public_ref>/tags")
def change_tags(public_ref: str):
    """`{"add": [...], "remove": [...]}`: 200 with the lead's tags now and what this
    call changed (adding a tag the lead has, or removing one it lacks, changes
    nothing); 422 naming the bad list, nothing changed."""
    body = json_object()
    refuse_unknown(body, {"add", "remove"}, body=True)
    problems: dict[str, str] = {}
    add = _names(body, "add", problems)
    remove = _names(body, "remove", problems)
    if not problems and not add and not remove:
        problems["add"] = "give add or remove: a list of tag names"
    both = sorted(set(add) & set(remove))
    if both and not problems:
        problems["remove"] = f"tag {both[0]!r} is in add too"
    if problems:
        raise invalid(problems)
    lead_id = db.session.scalar(select(Lead.id).where(Lead.public_ref == public_ref))
    if lead_id is None:
        raise ApiError(404, "No lead has this public ref.")
    before = set(tags.tags_of([lead_id])[lead_id])
    tags.remove_tags([lead_id], remove, "api")
    tags.add_tags([lead_id], add, "api")
    db.session.commit()
    now = tags.tags_of([lead_id])[lead_id]
    return {"lead": public_ref, "tags": now,
            "added": sorted(set(now) - before), "removed": sorted(before - set(now))}


def _names(body: dict[str, Any], key: str, problems: dict[str, str]) -> list[str]:
    """One of the two lists, every name checked; its first problem under `key`."""
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        problems[key] = "must be a list of tag names"
        return []
    if len(value) > MAX_NAMES:
        problems[key] = f"at most {MAX_NAMES} names in one call"
        return []
    for name in value:
        problem = tag_problem(name)
        if problem is not None:
            problems[key] = problem
            return []
    return list(dict.fromkeys(value))
