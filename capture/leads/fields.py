"""The kinds of page field (`FIELD_KINDS`): for each, the opt-in form's field and how
a value of it is checked and cleaned at every door that creates leads: the form
(also the embedded form), the API's JSON and a row of an import file."""

import re
import unicodedata
from functools import lru_cache
from typing import Any

import pycountry
from email_validator import EmailNotValidError
from flask_babel import gettext, lazy_gettext
from wtforms import BooleanField, EmailField, SelectField, StringField, TelField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, Optional, ValidationError

from capture import languages
from capture.leads.addresses import normalize_email

TEXT_MAX = 200
NOT_A_CHOICE = lazy_gettext("Not a valid choice.")
PHONE = re.compile(r"^\+?[0-9 ()./-]{5,30}$")
# How an import file says yes or no (a checkbox, the consent column).
YES = frozenset({"yes", "y", "true", "t", "1", "on", "x", "✓", "subscribed", "opted in",
                 "opt-in", "optin", "consented", "agreed", "checked"})
NO = frozenset({"no", "n", "false", "f", "0", "off", "", "unsubscribed", "not subscribed",
                "opted out", "declined", "unchecked"})


class FieldProblem(ValueError):
    """A value a field cannot take; the message says why."""


def one_line(value) -> str:
    """A single-line text value: control characters become spaces, runs of space
    collapse, ends trimmed; anything but text is ''."""
    if not isinstance(value, str):
        return ""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in value).split())


def short_text(value: str, what: str) -> str:
    """A file's text value on one line; FieldProblem when it is longer than TEXT_MAX."""
    text = one_line(value)
    if len(text) > TEXT_MAX:
        raise FieldProblem(f"{what}: longer than {TEXT_MAX} characters")
    return text


# What a name may not hold: it is repeated in the confirmation email to whatever
# address was typed ("Hi …", the To: line), so a link, an address or a phone number in
# it would turn our email into the sender's message to anyone.
_NAME_RULES = (
    (re.compile(r"[a-z][a-z0-9+.-]*://|\bwww\.|[\w-]+\.[a-z]{2,}/", re.IGNORECASE),
     lazy_gettext("Enter just your name: no web addresses.")),
    (re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+"),
     lazy_gettext("Enter just your name: no email addresses.")),
    (re.compile(r"\d(?:[\s().+-]*\d){4,}"),
     lazy_gettext("Enter just your name: no phone numbers or other long numbers.")),
)


def name_problem(name: str) -> str:
    """Why a name cannot be taken ('' when it can): the one rule of the opt-in form,
    the API and the import; in the language spoken now."""
    for pattern, message in _NAME_RULES:
        if pattern.search(name or ""):
            return str(message)
    return ""


def _presence(spec: dict[str, Any]) -> list:
    """A required field's message, or nothing asked of an optional one."""
    return [DataRequired(message=lazy_gettext("%(label)s is required.", label=spec["label"]))] \
        if spec["required"] else [Optional()]


def _plain_name(form, field: StringField) -> None:
    problem = name_problem(field.data or "")
    if problem:
        raise ValidationError(problem)


def _phone(form, field: TelField) -> None:
    if field.data and not PHONE.match(field.data):
        raise ValidationError(gettext("Enter a phone number with digits only (and + ( ) -)."))


class FieldKind:
    """One kind of page field. The form (and the API, which fills the same form) checks
    a value with `form_field`; `stored` cleans a checked value for the lead; the API
    reads JSON with `from_json`, the import a file's cell with `from_cell`."""

    def form_field(self, spec: dict[str, Any]):
        """The opt-in form's field for a page field of this kind."""
        raise NotImplementedError

    def stored(self, value: Any) -> Any:
        """A checked form value as the lead keeps it: text on one line."""
        return one_line(value)

    def from_json(self, value: Any) -> str | None:
        """The form input a JSON value stands for (None: none). Raises FieldProblem."""
        if not isinstance(value, str):
            raise FieldProblem("must be a string")
        return value

    def from_cell(self, spec: dict[str, Any], value: str) -> Any:
        """An import file's value, checked like the form checks it ('' when empty).
        Raises FieldProblem naming the field."""
        text = short_text(value, spec["label"])
        return self.checked_text(spec, text) if text else ""

    def checked_text(self, spec: dict[str, Any], text: str) -> Any:
        """A non-empty one-line value from a file, checked for this kind."""
        return text


class TextKind(FieldKind):
    """One line of text; the field named `name` also follows the name rule."""

    def form_field(self, spec: dict[str, Any]):
        is_name = spec["name"] == "name"
        return StringField(
            spec["label"],
            validators=[*_presence(spec),
                        Length(max=TEXT_MAX, message=lazy_gettext(
                            "At most %(max)d characters.", max=TEXT_MAX)),
                        *([_plain_name] if is_name else [])],
            render_kw={"autocomplete": "name" if is_name else "on"},
        )

    def checked_text(self, spec: dict[str, Any], text: str) -> Any:
        problem = name_problem(text) if spec["name"] == "name" else ""
        if problem:
            raise FieldProblem(f"{spec['label']}: {problem}")
        return text


class EmailKind(FieldKind):
    """An email address, normalized as the lead's own address is."""

    def form_field(self, spec: dict[str, Any]):
        return EmailField(
            spec["label"],
            validators=[InputRequired(message=lazy_gettext("Enter your email address.")),
                        Length(max=254, message=lazy_gettext("This email address is too long."))],
            render_kw={"autocomplete": "email", "inputmode": "email"},
        )

    def checked_text(self, spec: dict[str, Any], text: str) -> Any:
        try:
            return normalize_email(text)
        except EmailNotValidError as error:
            raise FieldProblem(f"{spec['label']}: {error}") from None


class TelKind(FieldKind):
    """A phone number: digits and + ( ) . / - only."""

    def form_field(self, spec: dict[str, Any]):
        too_long = lazy_gettext("At most %(max)d characters.", max=30)
        return TelField(spec["label"], validators=[*_presence(spec),
                                                   Length(max=30, message=too_long), _phone],
                        render_kw={"autocomplete": "tel"})

    def checked_text(self, spec: dict[str, Any], text: str) -> Any:
        if not PHONE.match(text):
            raise FieldProblem(f"{spec['label']}: {text!r} is not a phone number")
        return text


class CountryKind(FieldKind):
    """A country, kept as its ISO code on the lead itself (`Lead.country`), not among
    its fields; a file may name it by code or name."""

    def form_field(self, spec: dict[str, Any]):
        return SelectField(spec["label"], choices=country_choices, validators=_presence(spec),
                           validate_choice=True, invalid_choice_message=NOT_A_CHOICE,
                           render_kw={"autocomplete": "country"})

    def stored(self, value: Any) -> str | None:
        return value or None

    def from_cell(self, spec: dict[str, Any], value: str) -> str | None:
        text = one_line(value)
        if not text:
            return None
        code = _country_code(text)
        if code is None:
            raise FieldProblem(f"unknown country {text!r}")
        return code


def country_choices() -> list[SelectChoice]:
    """The country list of a form: a first empty choice, then every country by its
    name in the language spoken now, in that language's alphabetical order."""
    return _country_choices(languages.current_language())


@lru_cache(maxsize=len(languages.LANGUAGES))
def _country_choices(language: str) -> list[SelectChoice]:
    names = [SelectChoice(country.alpha_2, languages.country_name(country.name, language))
             for country in pycountry.countries]
    return [SelectChoice("", lazy_gettext("Choose your country")),
            *sorted(names, key=_sort_key)]


def _sort_key(choice: SelectChoice) -> str:
    """Österreich among the O, Émirats among the E: accents do not move a name."""
    letters = unicodedata.normalize("NFKD", choice.label)
    return "".join(c for c in letters if not unicodedata.combining(c)).casefold()


@lru_cache(maxsize=2048)
def _country_code(value: str) -> str | None:
    """'de', 'DEU' or 'Germany' → 'DE'; None for anything else."""
    try:
        return pycountry.countries.lookup(value).alpha_2
    except LookupError:
        return None


class SelectKind(FieldKind):
    """One of the page's options; a file may write it in any case."""

    def form_field(self, spec: dict[str, Any]):
        choices = [SelectChoice("", lazy_gettext("Choose…"))] + [
            SelectChoice(o) for o in spec["options"]]
        return SelectField(spec["label"], choices=choices, validators=_presence(spec),
                           invalid_choice_message=NOT_A_CHOICE)

    def checked_text(self, spec: dict[str, Any], text: str) -> Any:
        for option in spec.get("options") or []:
            if option.lower() == text.lower():
                return option
        raise FieldProblem(f"{spec['label']}: {text!r} is not one of the page's choices")


class CheckboxKind(FieldKind):
    """Ticked or not: true or false in JSON, yes or no in a file."""

    def form_field(self, spec: dict[str, Any]):
        label = spec["label"]
        return BooleanField(label, validators=[DataRequired(lazy_gettext(
            "Please tick: %(label)s", label=label))]
                            if spec["required"] else [])

    def stored(self, value: Any) -> bool:
        return bool(value)

    def from_json(self, value: Any) -> str | None:
        if not isinstance(value, bool):
            raise FieldProblem("must be true or false")
        return "y" if value else None

    def from_cell(self, spec: dict[str, Any], value: str) -> bool:
        word = value.strip().lower()
        if word in YES:
            return True
        if word in NO:
            return False
        raise FieldProblem(f"{spec['label']}: {value!r} is not yes or no")


# Every kind a page field can have (`capture.pages.schema.FIELD_TYPES` lists the same
# names), by the name a page definition gives as its `type`.
FIELD_KINDS: dict[str, FieldKind] = {
    "text": TextKind(),
    "email": EmailKind(),
    "tel": TelKind(),
    "country": CountryKind(),
    "select": SelectKind(),
    "checkbox": CheckboxKind(),
}
