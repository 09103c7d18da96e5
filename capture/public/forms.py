"""The opt-in form, built from a page's field list (Flask-WTF, so CSRF comes with it)."""

import re
from functools import lru_cache
from typing import Any

import pycountry
from email_validator import EmailNotValidError
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, HiddenField, SelectField, StringField, TelField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, Optional, ValidationError

from capture.leads.lifecycle import name_problem, normalize_email
from capture.models import Page

TEXT_MAX = 200
COUNTRY_CHOICES = [SelectChoice("", "Choose your country")] + sorted(
    (SelectChoice(c.alpha_2, c.name) for c in pycountry.countries),
    key=lambda choice: choice.label,
)
PHONE = re.compile(r"^\+?[0-9 ()./-]{5,30}$")


class OptInForm(FlaskForm):
    """The fixed part of every opt-in form: the honeypot and the fill-time token."""

    # Hidden from people by CSS; bots that fill every input fill this one too.
    website = StringField("Leave this field empty", validators=[Optional()])
    started = HiddenField()

    def validate_email(self, field: StringField) -> None:
        """Check syntax (and deliverability if configured) and keep the normal form."""
        try:
            field.data = normalize_email(field.data or "")
        except EmailNotValidError as error:
            raise ValidationError(str(error)) from None


def _phone(form: FlaskForm, field: TelField) -> None:
    if field.data and not PHONE.match(field.data):
        raise ValidationError("Enter a phone number with digits only (and + ( ) -).")


def _plain_name(form: FlaskForm, field: StringField) -> None:
    problem = name_problem(field.data or "")
    if problem:
        raise ValidationError(problem)


def _required(label: str) -> DataRequired:
    return DataRequired(message=f"{label} is required.")


def _field(spec: dict[str, Any]):
    label, kind, required = spec["label"], spec["type"], spec["required"]
    presence = [_required(label)] if required else [Optional()]
    if kind == "email":
        return EmailField(
            label,
            validators=[InputRequired(message="Enter your email address."), Length(max=254)],
            render_kw={"autocomplete": "email", "inputmode": "email"},
        )
    if kind == "tel":
        return TelField(
            label, validators=[*presence, Length(max=30), _phone],
            render_kw={"autocomplete": "tel"},
        )
    if kind == "country":
        return SelectField(
            label, choices=COUNTRY_CHOICES, validators=presence,
            validate_choice=True, render_kw={"autocomplete": "country"},
        )
    if kind == "select":
        choices = [SelectChoice("", "Choose…")] + [SelectChoice(o) for o in spec["options"]]
        return SelectField(label, choices=choices, validators=presence)
    if kind == "checkbox":
        message = f"Please tick: {label}"
        return BooleanField(label, validators=[DataRequired(message)] if required else [])
    is_name = spec["name"] == "name"
    return StringField(
        label,
        validators=[*presence, Length(max=TEXT_MAX, message=f"At most {TEXT_MAX} characters."),
                    *([_plain_name] if is_name else [])],
        render_kw={"autocomplete": "name" if is_name else "on"},
    )


@lru_cache(maxsize=128)
def _form_class(fields_key: tuple, consent: str) -> type[OptInForm]:
    attributes: dict[str, Any] = {}
    for spec in fields_key:
        item = dict(spec)
        if "options" in item:
            item["options"] = list(item["options"])
        attributes[item["name"]] = _field(item)
    if consent:
        attributes["consent"] = BooleanField(
            consent, validators=[DataRequired("Please tick the box to agree.")]
        )
    return type("PageOptInForm", (OptInForm,), attributes)


def form_class(page: Page) -> type[OptInForm]:
    """The form class for a page (cached per distinct field list and consent text)."""
    key = tuple(
        tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in spec.items()))
        for spec in page.fields
    )
    return _form_class(key, page.consent or "")


def page_field_names(page: Page) -> list[str]:
    """The names of the fields a visitor fills in, in page order."""
    return [spec["name"] for spec in page.fields]


def optin_values(page: Page, form: OptInForm) -> dict[str, Any]:
    """The name, country and page fields of a validated form, as `leads.OptIn` takes
    them: text on one line of printable characters, checkboxes as booleans."""
    values: dict[str, Any] = {"name": one_line(form.data.get("name")), "country": None,
                              "fields": {}}
    for spec in page.fields:
        name, kind = spec["name"], spec["type"]
        if kind == "country":
            values["country"] = values["country"] or form[name].data or None
        elif name not in ("email", "name"):
            value = form[name].data
            values["fields"][name] = bool(value) if kind == "checkbox" else one_line(value)
    return values


def one_line(value) -> str:
    """A single-line text value: control characters become spaces, runs of space
    collapse, ends trimmed; anything but text is ''."""
    if not isinstance(value, str):
        return ""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in value).split())
