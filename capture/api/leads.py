"""API operations on leads: create one (the opt-in rules of the form), list them with
filters and a cursor, read one by its public ref.

Each lead comes with its opt-ins (`optins`, the first one first); a buyer's decision
on one: `capture.api.reviews`."""

import ipaddress
from typing import Any

from flask import request, url_for
from sqlalchemy import select
from sqlalchemy.orm import aliased
from werkzeug.datastructures import MultiDict

from capture.leads import erasure, optin, optins, personal_data, tags
from capture.leads.fields import FIELD_KINDS, FieldProblem
from capture import links
from capture.api import bp
from capture.api.errors import ApiError, bad_parameters, invalid
from capture.api.inputs import (
    json_object,
    query_choice,
    query_int,
    query_text,
    query_time,
    refuse_unknown,
)
from capture.api.shapes import event_json, lead_json
from capture.db import db
from capture.leads.queries import TIMELINE_LIMIT, LeadFilters, filter_leads
from capture.models import (
    ATTRIBUTION_KEYS,
    REVIEW_STATES,
    SUBSCRIPTION_STATES,
    Event,
    Lead,
    Optin,
    Page,
)
from capture.public.forms import form_class, optin_values

ATTRIBUTION_MAX = {**dict.fromkeys(ATTRIBUTION_KEYS, 200), "referrer": 1000}
LEAD_PROPERTIES = {"page", "email", "name", "country", "consent", "fields", "ip",
                   *ATTRIBUTION_MAX}
LIST_PARAMETERS = {"page", "review", "subscription", "source", "created_after",
                   "created_before", "q", "limit", "cursor"}
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
_CURSOR_PURPOSE = "api-leads-cursor"


# --- create --------------------------------------------------------------------------

@bp.post("/leads")
def create_lead():
    """Create a lead on a page, checked like the page's form: 201 with the new lead,
    200 with `duplicate: true` for a known address, 409 for a suppressed one."""
    body = json_object()
    refuse_unknown(body, LEAD_PROPERTIES, body=True)
    page = _page_of(body.get("page"))
    formdata, problems = _form_input(page, body)
    attribution = _attribution(body, problems)
    client_ip = _client_ip(body.get("ip"), problems)
    form = form_class(page)(formdata=formdata, meta={"csrf": False})
    if not form.validate():
        for name, messages in form.errors.items():
            problems.setdefault(_property_of(page, name), str(messages[0]))
    if problems:
        raise invalid(problems)

    signup = optin.OptIn(
        email=form.email.data,
        **optin_values(page, form),
        client_ip=client_ip,
        attribution=attribution,
    )
    outcome = optin.submit_optin(page, signup)
    if outcome.kind == "suppressed" or outcome.lead is None:
        raise ApiError(409, "This address is on the suppression list (deleted, bounced or "
                       "unsubscribed for good); it is not added again.", code="suppressed",
                       fields={"email": "suppressed"})
    lead = outcome.lead
    # A new lead, or a known person's first opt-in on this page: a new opt-in (201).
    created = outcome.kind in ("created", "added")
    body = {"lead": _lead_json(lead), "duplicate": not created,
            "new_person": outcome.kind == "created"}
    location = url_for("api.get_lead", public_ref=lead.public_ref)
    return body, 201 if created else 200, {"Location": location}


def _page_of(slug: Any) -> Page:
    """The published page a lead is sent to (the form takes opt-ins only there)."""
    if not isinstance(slug, str) or not slug.strip():
        raise invalid({"page": "required: the slug of a published page"})
    page = db.session.scalar(select(Page).where(Page.slug == slug.strip(), Page.published))
    if page is None:
        raise invalid({"page": f"no published page with slug {slug.strip()[:64]!r}"})
    return page


def _form_input(page: Page, body: dict[str, Any]) -> tuple[MultiDict, dict[str, str]]:
    """The form submission the JSON body stands for, and the problems of shape the
    form cannot see (a number where text goes, a field the page does not have)."""
    specs = {spec["name"]: spec for spec in page.fields}
    countries = [name for name, spec in specs.items() if spec["type"] == "country"]
    formdata: MultiDict = MultiDict()
    problems: dict[str, str] = {}

    def put(form_name: str, key: str, value: Any, kind: str) -> None:
        """The value as its kind reads JSON, into the form; or the problem under `key`."""
        if value is None:
            return
        try:
            text = FIELD_KINDS[kind].from_json(value)
        except FieldProblem as problem:
            problems[key] = str(problem)
            return
        if text is not None:
            formdata.add(form_name, text)

    put("email", "email", body.get("email"), "email")
    if "name" in specs:
        put("name", "name", body.get("name"), "text")
    elif body.get("name") not in (None, ""):
        problems["name"] = f"page {page.slug} has no name field"
    for name in countries:
        put(name, "country", body.get("country"), "country")
    if not countries and body.get("country") not in (None, ""):
        problems["country"] = f"page {page.slug} has no country field"
    if page.consent:
        put("consent", "consent", body.get("consent"), "checkbox")
    elif body.get("consent") is not None and not isinstance(body["consent"], bool):
        # Some integrations always send it: harmless on a page without a consent box.
        problems["consent"] = "must be true or false"

    fields = body.get("fields")
    if fields is not None and not isinstance(fields, dict):
        problems["fields"] = "must be an object of the page's field values"
        fields = None
    for name, value in (fields or {}).items():
        spec = specs.get(name)
        if spec is None:
            problems[f"fields.{name[:100]}"] = f"page {page.slug} has no field {name[:100]!r}"
        elif name in ("email", "name") or spec["type"] == "country":
            top = "country" if spec["type"] == "country" else name
            problems[f"fields.{name}"] = f"give it as the top-level property {top!r}"
        else:
            put(name, f"fields.{name}", value, spec["type"])
    return formdata, problems


def _property_of(page: Page, form_name: str) -> str:
    """Where a form field's value sits in the JSON body, for its error."""
    if form_name in ("email", "name", "consent"):
        return form_name
    for spec in page.fields:
        if spec["name"] == form_name:
            return "country" if spec["type"] == "country" else f"fields.{form_name}"
    return form_name


def _attribution(body: dict[str, Any], problems: dict[str, str]) -> dict[str, str | None]:
    """utm_*, ref and referrer as a link would carry them: printable text, trimmed."""
    values: dict[str, str | None] = {}
    for key, limit in ATTRIBUTION_MAX.items():
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            problems[key] = "must be a string"
            continue
        value = "".join(ch for ch in value if ch.isprintable()).strip()
        if len(value) > limit:
            problems[key] = f"at most {limit} characters"
        values[key] = value or None
    return values


def _client_ip(value: Any, problems: dict[str, str]) -> str | None:
    """The person's address at consent, when the caller knows it (the caller's own
    address is not the person's, so nothing is stored without it)."""
    if value is None:
        return None
    try:
        address = str(ipaddress.ip_address(value if isinstance(value, str) else ""))
    except ValueError:
        address = ""
    if not address or len(address) > 45:
        problems["ip"] = "must be an IPv4 or IPv6 address"
        return None
    return address


# --- list and read -------------------------------------------------------------------

@bp.get("/leads")
def list_leads():
    """Leads, newest first, filtered; `limit` a page, `next_cursor` to the next."""
    refuse_unknown(request.args, LIST_PARAMETERS, body=False)
    slug = query_text("page", 64)
    if slug and db.session.scalar(select(Page.id).where(Page.slug == slug)) is None:
        raise bad_parameters({"page": f"no page with slug {slug!r}"})
    filters = LeadFilters(
        q=query_text("q"),
        review=query_choice("review", REVIEW_STATES),
        subscription=query_choice("subscription", SUBSCRIPTION_STATES),
        page=slug,
        source=query_text("source"),
    )
    after, before = query_time("created_after"), query_time("created_before")
    limit = query_int("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    cursor = _read_cursor(query_text("cursor", 500))

    referrer = aliased(Lead)
    stmt = filter_leads(
        select(Lead, Page.slug, referrer.public_ref)
        .outerjoin(Page, Page.id == Lead.page_id)
        .outerjoin(referrer, referrer.id == Lead.referred_by_id),
        filters,
    )
    if after is not None:
        stmt = stmt.where(Lead.created_at >= after)
    if before is not None:
        stmt = stmt.where(Lead.created_at < before)
    if cursor is not None:
        stmt = stmt.where(Lead.id < cursor)
    if filters.subscription != "erased":  # nobody any more: listed only when asked for
        stmt = stmt.where(Lead.subscription != "erased")
    rows = db.session.execute(stmt.order_by(Lead.id.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = links.make(_CURSOR_PURPOSE, str(rows[-1][0].id)) if more else None
    lead_ids = [lead.id for lead, _, _ in rows]
    tag_names, optin_data = tags.tags_of(lead_ids), _optins_of(lead_ids)
    return {"leads": [lead_json(lead, page_slug, referred_by, tag_names[lead.id],
                                optin_data[lead.id])
                      for lead, page_slug, referred_by in rows],
            "next_cursor": next_cursor}


def _read_cursor(value: str) -> int | None:
    """The lead id inside a cursor this API handed out; 400 for anything else."""
    if not value:
        return None
    inside = links.read(_CURSOR_PURPOSE, value)
    if inside is None or not inside.isdigit():
        raise bad_parameters({"cursor": "not a cursor from this API: pass next_cursor as is"})
    return int(inside)


@bp.get("/leads/<public_ref>")
def get_lead(public_ref: str):
    """One lead by its public ref; with `include=events`, its timeline (newest first)."""
    refuse_unknown(request.args, {"include"}, body=False)
    include = query_choice("include", ("events",))
    lead = _lead_or_404(public_ref)
    body = {"lead": _lead_json(lead)}
    if include == "events":
        events = db.session.scalars(
            select(Event).where(Event.lead_id == lead.id)
            .order_by(Event.created_at.desc(), Event.id.desc()).limit(TIMELINE_LIMIT))
        body["events"] = [event_json(event) for event in events]
    return body


def _lead_or_404(public_ref: str, *, erased: bool = True) -> Lead:
    """The lead with this public ref (an erased one only when `erased`), or 404."""
    lead = db.session.scalar(select(Lead).where(Lead.public_ref == public_ref))
    if lead is None or (not erased and erasure.is_erased(lead)):
        raise ApiError(404, "No lead has this public ref.")
    return lead


@bp.get("/leads/<public_ref>/data")
def lead_data(public_ref: str):
    """Everything stored about the lead's person (`leads data`), as one document."""
    refuse_unknown(request.args, set(), body=False)
    return personal_data.personal_data(_lead_or_404(public_ref, erased=False))


@bp.delete("/leads/<public_ref>")
def erase_lead(public_ref: str):
    """Erase the lead's person (`leads erase`): 204; 404 when unknown or erased."""
    erasure.erase(_lead_or_404(public_ref, erased=False), by="api")
    return "", 204


def _optins_of(lead_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """The opt-ins of these leads as the API shows them, the first one first (as
    `optins.of_lead`), in one query whatever the number of leads."""
    found: dict[int, list[dict[str, Any]]] = {lead_id: [] for lead_id in lead_ids}
    if lead_ids:
        rows = db.session.execute(
            select(Optin, Page).outerjoin(Page, Page.id == Optin.page_id)
            .where(Optin.lead_id.in_(lead_ids))
            .order_by(Optin.lead_id, Optin.first.desc(), Optin.created_at, Optin.id))
        for row, page in rows:
            found[row.lead_id].append(optins.data(row, page))
    return found


def _lead_json(lead: Lead) -> dict[str, Any]:
    """One lead, its page, referrer and opt-ins looked up."""
    slug = referrer = None
    if lead.page_id is not None:
        slug = db.session.scalar(select(Page.slug).where(Page.id == lead.page_id))
    if lead.referred_by_id is not None:
        referrer = db.session.scalar(select(Lead.public_ref)
                                     .where(Lead.id == lead.referred_by_id))
    return lead_json(lead, slug, referrer, tags.tags_of([lead.id])[lead.id],
                     _optins_of([lead.id])[lead.id])
