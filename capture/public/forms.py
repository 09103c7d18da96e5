"""The opt-in form, built from a page's field list (Flask-WTF, so CSRF comes with it);
each field as its kind in `capture.leads.fields.FIELD_KINDS` builds it."""

from functools import lru_cache
from typing import Any

from email_validator import EmailNotValidError
from flask_babel import lazy_gettext
from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, StringField
from wtforms.validators import DataRequired, Optional, ValidationError

from capture import languages
from capture.leads.addresses import normalize_email
from capture.leads.fields import FIELD_KINDS, one_line
from capture.models import Page


class VisitorForm(FlaskForm):
    """A form visitors fill in (CSRF from Flask-WTF); WTForms' own messages in the
    page's language, from a catalogue kept per language."""

    class Meta:
        def get_translations(self, form):
            return languages.wtforms_messages()


class OptInForm(VisitorForm):
    """The fixed part of every opt-in form: the honeypot and the fill-time token
    (their names are `capture.pages.definition.FORM_OWN_NAMES`: no page field may
    take them)."""

    # Hidden from people by CSS; bots that fill every input fill this one too.
    website = StringField(lazy_gettext("Leave this field empty"), validators=[Optional()])
    started = HiddenField()

    def validate_email(self, field: StringField) -> None:
        """Check syntax (and deliverability if configured) and keep the normal form."""
        try:
            field.data = normalize_email(field.data or "")
        except EmailNotValidError as error:
            raise ValidationError(str(error)) from None


@lru_cache(maxsize=128)
def _form_class(fields_key: tuple, consent: str) -> type[OptInForm]:
    attributes: dict[str, Any] = {}
    for spec in fields_key:
        item = dict(spec)
        if "options" in item:
            item["options"] = list(item["options"])
        attributes[item["name"]] = FIELD_KINDS[item["type"]].form_field(item)
    if consent:
        attributes["consent"] = BooleanField(
            consent, validators=[DataRequired(lazy_gettext("Please tick the box to agree."))]
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
    """The name, country and page fields of a validated form, as `leads.optin.OptIn`
    takes them, each cleaned by its kind (text on one line of printable characters,
    checkboxes as booleans)."""
    values: dict[str, Any] = {"name": one_line(form.data.get("name")), "country": None,
                              "fields": {}}
    for spec in page.fields:
        name, kind = spec["name"], FIELD_KINDS[spec["type"]]
        if spec["type"] == "country":
            values["country"] = values["country"] or kind.stored(form[name].data)
        elif name not in ("email", "name"):
            values["fields"][name] = kind.stored(form[name].data)
    return values
