"""The page definition format: validation of a page as JSON, and a page back to JSON.

One function checks a definition for every way in (`pages import`, the dashboard's
editor) and returns every problem at once, as `field: message` lines.
"""

import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pycountry
from flask_babel import gettext
from flask_wtf import FlaskForm

from capture import domains, languages
from capture.models import Page
from capture.origins import EXAMPLE, OriginError, parse_origin
from capture.pages import variants
from capture.pages.media import MEDIA_DEFAULTS, check_media
from capture.tag_names import tag_problem
from config import ROOT

FIELD_TYPES = ("text", "email", "tel", "country", "select", "checkbox")
# Names the opt-in form uses for itself.
RESERVED_FIELD_NAMES = {"csrf_token", "started", "website", "consent", "altcha"}
EMAIL_FIELD = {"name": "email", "label": "Email", "type": "email", "required": True}
RULE_KEYS = {"countries", "required", "block_domains", "block_disposable"}

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_SEQUENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
_TEMPLATE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,90}\.html$")
MAX_ORIGINS = 50
# A domain in its ASCII form; an international top-level domain is an A-label (xn--p1ai).
_DOMAIN = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+"
                     r"(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})$")

DEFAULTS: dict[str, Any] = {
    "headline": "",
    "body": "",
    "fields": [],
    "button": "Subscribe",
    "consent": "",
    "double_opt_in": True,
    "proof_of_work": False,
    "sequence": None,
    "thank_you": "",
    "redirect_url": None,
    "review": "auto",
    "rules": {},
    "payout": "0",
    "currency": "USD",
    "template": "default.html",
    "language": languages.DEFAULT,
    **MEDIA_DEFAULTS,
    "published": True,
    "allowed_origins": [],
    "tags": [],
    "variants": [],
    "variant_a_weight": None,
}
KEYS = ("slug", "title", *DEFAULTS)
TEXT_LIMITS = {"title": 200, "headline": 300, "button": 80, "body": 20000,
               "consent": 2000, "thank_you": 20000}


class _Problems(list):
    def add(self, field: str, message: str) -> None:
        self.append(f"{field}: {message}")


def validate_page(
    data: Any, *, sequences_dir: str, templates_dir: str
) -> tuple[dict[str, Any], list[str]]:
    """Check one page definition; return the cleaned values and every problem found."""
    problems = _Problems()
    if not isinstance(data, dict):
        problems.add("page", "must be a JSON object")
        return {}, problems
    for key in sorted(set(data) - set(KEYS)):
        problems.add(key, "unknown field")
    clean: dict[str, Any] = {**DEFAULTS, **{k: v for k, v in data.items() if k in KEYS}}

    slug = clean.get("slug")
    if not isinstance(slug, str) or not _SLUG.match(slug):
        problems.add("slug", "required: lowercase letters, digits and dashes (max 64)")
    for key, limit in TEXT_LIMITS.items():
        value = clean.get(key)
        if not isinstance(value, str):
            problems.add(key, "required text" if key == "title" else "must be text")
        elif len(value) > limit:
            problems.add(key, f"longer than {limit} characters")
        elif key in ("title", "button") and not value.strip():
            problems.add(key, "must not be empty")
    for key in ("double_opt_in", "proof_of_work", "published"):
        if not isinstance(clean[key], bool):
            problems.add(key, "must be true or false")
    if clean["review"] not in ("auto", "manual"):
        problems.add("review", "must be auto or manual")
    if languages.language_problem(clean["language"]):
        problems.add("language", languages.language_problem(clean["language"]))

    clean["fields"] = _check_fields(clean["fields"], problems, clean["language"])
    clean["rules"] = _check_rules(clean["rules"], clean["fields"], problems)
    clean["payout"] = _check_payout(clean["payout"], problems)
    _check_currency(clean, problems)
    _check_redirect(clean, problems)
    _check_sequence(clean, sequences_dir, problems)
    _check_origins(clean, problems)
    _check_tags(clean, problems)
    check_media(clean, problems.add)
    if not isinstance(clean["template"], str) or not _TEMPLATE.match(clean["template"]):
        problems.add("template", "must be a file name like default.html")
    elif not (Path(templates_dir) / clean["template"]).is_file():
        problems.add("template", f"no file templates/pages/{clean['template']}")
    clean["variants"], clean["variant_a_weight"], own = variants.check_test(
        clean, lambda whole: validate_page(whole, sequences_dir=sequences_dir,
                                           templates_dir=templates_dir),
        KEYS, list(problems))
    problems.extend(own)
    return clean, list(problems)


# The fields every opt-in form has besides the page's own: the honeypot and the
# fill-time token of `capture.public.forms.OptInForm` (a test keeps the two equal).
FORM_OWN_NAMES = frozenset({"website", "started"})


def _clashes_with_form(name: str) -> bool:
    """True for a name the opt-in form class already uses (validate, data, meta …)
    or would take as a validator (validate_<field>)."""
    # meta, data and errors are set on each form instance, not on the class.
    return (name.startswith("validate") or hasattr(FlaskForm, name) or name in FORM_OWN_NAMES
            or name in {"meta", "data", "errors", "form_errors"})


def _email_field(language: Any) -> dict[str, Any]:
    """The email field a page gets when it names none, labelled in its language."""
    with languages.speaking(languages.known(language)):
        return {**EMAIL_FIELD, "label": gettext("Email")}


def _check_fields(fields: Any, problems: _Problems, language: Any) -> list[dict[str, Any]]:
    if not isinstance(fields, list):
        problems.add("fields", "must be a list of {name, label, type, required}")
        return [_email_field(language)]
    clean: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, field in enumerate(fields):
        where = f"fields[{index}]"
        if not isinstance(field, dict):
            problems.add(where, "must be an object")
            continue
        for key in sorted(set(field) - {"name", "label", "type", "required", "options"}):
            problems.add(f"{where}.{key}", "unknown key")
        name = field.get("name")
        if not isinstance(name, str) or not _FIELD_NAME.match(name):
            problems.add(f"{where}.name", "required: lowercase letters, digits, _")
            continue
        where = f"fields[{index}] ({name})"
        if name in RESERVED_FIELD_NAMES or _clashes_with_form(name):
            problems.add(where, "this name is used by the form itself")
        if name in seen:
            problems.add(where, "name used twice")
        seen.add(name)
        kind = field.get("type", "text")
        if kind not in FIELD_TYPES:
            problems.add(f"{where}.type", f"must be one of {', '.join(FIELD_TYPES)}")
        label = field.get("label", name.replace("_", " ").capitalize())
        if not isinstance(label, str) or not label.strip() or len(label) > 200:
            problems.add(f"{where}.label", "must be text of at most 200 characters")
        required = field.get("required", False)
        if not isinstance(required, bool):
            problems.add(f"{where}.required", "must be true or false")
        item = {"name": name, "label": label, "type": kind, "required": required}
        if kind == "select":
            options = field.get("options")
            if (
                not isinstance(options, list)
                or not options
                or not all(isinstance(o, str) and o.strip() for o in options)
            ):
                problems.add(f"{where}.options", "a select needs a list of options")
            item["options"] = options
        elif "options" in field:
            problems.add(f"{where}.options", "only a select has options")
        if name == "email" and (kind != "email" or required is not True):
            problems.add(where, "the email field must be of type email and required")
        if name == "name" and kind != "text":
            problems.add(where, "the name field must be of type text")
        clean.append(item)
    if "email" not in seen:
        clean.insert(0, _email_field(language))
    return clean


def _check_rules(rules: Any, fields: list[dict], problems: _Problems) -> dict[str, Any]:
    if not isinstance(rules, dict):
        problems.add("rules", "must be an object")
        return {}
    for key in sorted(set(rules) - RULE_KEYS):
        problems.add(f"rules.{key}", "unknown rule")
    clean: dict[str, Any] = {}
    countries = rules.get("countries", [])
    if not isinstance(countries, list):
        problems.add("rules.countries", "must be a list of country codes")
    else:
        for code in countries:
            if not isinstance(code, str) or not pycountry.countries.get(alpha_2=code.upper()):
                problems.add("rules.countries", f"{code!r} is not an ISO country code")
        if countries and not any(f["type"] == "country" for f in fields):
            problems.add("rules.countries", "needs a field of type country on the page")
        clean["countries"] = [c.upper() for c in countries if isinstance(c, str)]
    required = rules.get("required", [])
    names = {f["name"] for f in fields}
    if not isinstance(required, list):
        problems.add("rules.required", "must be a list of field names")
    else:
        for name in required:
            if not isinstance(name, str) or name not in names:
                problems.add("rules.required", f"{name!r} is not a field of the page")
        clean["required"] = list(required)
    blocked_domains = rules.get("block_domains", [])
    if not isinstance(blocked_domains, list):
        problems.add("rules.block_domains", "must be a list of domains")
    else:
        clean["block_domains"] = []
        for domain in blocked_domains:
            blocked = _blocked_domain(domain)
            if blocked is None:
                problems.add("rules.block_domains", f"{domain!r} is not a domain")
            else:
                clean["block_domains"].append(blocked)
    disposable = rules.get("block_disposable", False)
    if not isinstance(disposable, bool):
        problems.add("rules.block_disposable", "must be true or false")
    clean["block_disposable"] = disposable is True
    return clean


def _blocked_domain(value: Any) -> str | None:
    """A blocked domain in the form rules compare (Unicode, lower-case: münchen.de
    for xn--mnchen-3ya.de too), or None when it is not a domain."""
    if not isinstance(value, str):
        return None
    try:
        domain = domains.to_unicode(value)
        wire = domains.to_ascii(domain)
    except domains.DomainError:
        return None
    return domain if _DOMAIN.match(wire) else None


def _check_payout(value: Any, problems: _Problems) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        problems.add("payout", "must be a decimal string like \"2.50\"")
        return "0"
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        problems.add("payout", f"{value!r} is not a number")
        return "0"
    if not amount.is_finite() or amount < 0 or amount > Decimal("1000000"):
        problems.add("payout", "must be between 0 and 1000000")
    elif amount != amount.quantize(Decimal("0.01")):
        problems.add("payout", "at most two decimals")
    return str(amount)


def _check_currency(clean: dict, problems: _Problems) -> None:
    code = clean["currency"]
    if not isinstance(code, str) or not pycountry.currencies.get(alpha_3=code.upper()):
        problems.add("currency", f"{code!r} is not an ISO 4217 currency code")
    else:
        clean["currency"] = code.upper()


def _check_redirect(clean: dict, problems: _Problems) -> None:
    url = clean["redirect_url"]
    if url in (None, ""):
        clean["redirect_url"] = None
        return
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
    except ValueError:  # e.g. a malformed IPv6 host
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        problems.add("redirect_url", "must be an absolute http(s) URL")


def _check_origins(clean: dict, problems: _Problems) -> None:
    """The sites allowed to embed the form: origins, stored in canonical form. Embedded
    sign-ups come from a form on someone else's site, so they always need double
    opt-in: a page without it cannot be embedded."""
    origins = clean["allowed_origins"]
    if not isinstance(origins, list):
        problems.add("allowed_origins", f"must be a list of origins like {EXAMPLE}")
        clean["allowed_origins"] = []
        return
    canonical: list[str] = []
    for value in origins:
        try:
            origin = parse_origin(value)
        except OriginError as error:
            problems.add("allowed_origins", str(error))
            continue
        if origin not in canonical:
            canonical.append(origin)
    if len(canonical) > MAX_ORIGINS:
        problems.add("allowed_origins", f"at most {MAX_ORIGINS} sites")
    if canonical and clean["double_opt_in"] is False:
        problems.add("allowed_origins", "a form embedded on other sites needs double opt-in: "
                     "turn double opt-in on, or remove the sites")
    clean["allowed_origins"] = canonical


# The most tags one page gives its leads.
MAX_PAGE_TAGS = 20


def _check_tags(clean: dict, problems: _Problems) -> None:
    """The tags every opt-in on the page gives its lead: names, without repeats."""
    names = clean["tags"]
    if not isinstance(names, list):
        problems.add("tags", 'must be a list of tag names like ["webinar", "2026-q3"]')
        clean["tags"] = []
        return
    kept: list[str] = []
    for name in names:
        problem = tag_problem(name)
        if problem is not None:
            problems.add("tags", problem)
        elif name not in kept:
            kept.append(name)
    if len(kept) > MAX_PAGE_TAGS:
        problems.add("tags", f"at most {MAX_PAGE_TAGS} tags")
    clean["tags"] = kept


def _check_sequence(clean: dict, sequences_dir: str, problems: _Problems) -> None:
    name = clean["sequence"]
    if name in (None, ""):
        clean["sequence"] = None
        return
    if not isinstance(name, str) or not _SEQUENCE.match(name):
        problems.add("sequence", "must be a folder name: letters, digits, - and _")
    elif not (Path(sequences_dir) / name).is_dir():
        problems.add("sequence", f"no folder {name} in the sequences directory")


def page_to_dict(page: Page) -> dict[str, Any]:
    """A page in the JSON format that `validate_page` reads back."""
    data = {key: getattr(page, key) for key in KEYS}
    data["payout"] = str(page.payout)
    data["allowed_origins"] = list(page.allowed_origins or [])
    data["tags"] = list(page.tags or [])
    data["variants"] = [dict(variant) for variant in page.variants or []]
    return data


def apply_page(page: Page, clean: dict[str, Any]) -> Page:
    """Copy validated values onto a page row."""
    for key in KEYS:
        setattr(page, key, clean[key] if key != "payout" else Decimal(clean[key]))
    return page


def page_templates_dir() -> str:
    """The folder page templates are chosen from."""
    return str(ROOT / "templates" / "pages")


def template_names(templates_dir: str) -> list[str]:
    """The page templates an owner can choose: the .html files of the folder."""
    folder = Path(templates_dir)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.glob("*.html") if _TEMPLATE.match(p.name))


def preview_values(clean: dict[str, Any], templates_dir: str) -> dict[str, Any]:
    """Validated values made safe to render, even when problems were found: what the
    renderer cannot show (a bad slug or template, a select without options) gets a
    harmless stand-in, so the preview shows everything else as typed."""
    values = dict(clean)
    if not isinstance(values.get("slug"), str) or not _SLUG.match(values["slug"]):
        values["slug"] = "preview"
    for key in TEXT_LIMITS:
        if not isinstance(values.get(key), str):
            values[key] = ""
    fields = []
    for field in values.get("fields") or []:
        item = dict(field)
        if item.get("type") not in FIELD_TYPES:
            item["type"] = "text"
        if not isinstance(item.get("label"), str):
            item["label"] = item["name"]
        item["required"] = item.get("required") is True
        if item["type"] == "select":
            options = item.get("options")
            item["options"] = [o for o in options if isinstance(o, str) and o.strip()] \
                if isinstance(options, list) else []
        else:
            item.pop("options", None)
        fields.append(item)
    values["fields"] = fields
    template = values.get("template")
    if template not in template_names(templates_dir):
        values["template"] = DEFAULTS["template"]
    values["language"] = languages.known(values.get("language"))
    return values
