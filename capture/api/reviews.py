"""API operation: a buyer's decision on a lead (`capture.leads.decisions`)."""

from capture.api import bp
from capture.api.errors import ApiError, invalid
from capture.api.inputs import json_object, refuse_unknown
from capture.leads import decisions


@bp.post("/leads/<public_ref>/review")
def review_lead(public_ref: str):
    """`{"review": "approved"|"rejected", "reason": "...", "page": "<slug>"}`: the lead's
    review, or with `page` the person's later opt-in there. 200 with what changed
    (`changed: false` for a replay); 422 a bad value; 404 an unknown lead or no
    opt-in on that page; 409 an erased person."""
    body = json_object()
    refuse_unknown(body, {"review", "reason", "page"}, body=True)
    problems = {key: "must be text" for key in ("review", "reason", "page")
                if body.get(key) is not None and not isinstance(body[key], str)}
    if "review" not in problems and not body.get("review"):
        problems["review"] = "required: approved or rejected"
    if problems:
        raise invalid(problems)
    try:
        outcome = decisions.decide(public_ref, body["review"], body.get("reason") or "",
                                   by="api", page=body.get("page") or None)
    except decisions.DecisionError as error:
        if error.status == 400:
            raise invalid({error.field: str(error)}) from None
        raise ApiError(error.status, f"{str(error)[0].upper()}{str(error)[1:]}.") from None
    lead = outcome.lead
    return {"lead": lead.public_ref, "page": outcome.page, "review": body["review"],
            "changed": outcome.changed, "returned": outcome.returned}
