"""Email addresses: the stored (normalized) form of an address, and what is wrong
with one, said as a person would say it."""

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from flask_babel import gettext, lazy_gettext

from capture import domains

# Said when an address needs SMTPUTF8 and the mail server is not known to offer it.
NON_ASCII_LOCAL_PART = lazy_gettext(
    "We cannot send email to an address with accents or other non-Latin letters "
    "before the @ yet: please use another address.")


def normalize_email(raw: str) -> str:
    """The address as stored: checked by email-validator, then lower-cased so one
    person is one lead (mail providers treat local parts case-insensitively). An
    international domain is kept in Unicode, whichever form was typed
    (max@xn--mnchen-3ya.de is max@münchen.de); it is sent in ASCII form. A
    non-ASCII local part only when SMTP_UTF8 says the server can deliver it.

    Raises EmailNotValidError with a message fit to show the visitor (email_problem)."""
    config = current_app.config
    try:
        result = validate_email(
            raw.strip(),
            check_deliverability=config["CHECK_DELIVERABILITY"],
            allow_smtputf8=True,
        )
    except EmailNotValidError as error:
        raise type(error)(email_problem(raw, str(error))) from None
    if result.smtputf8 and not config["SMTP_UTF8"]:
        raise EmailNotValidError(str(NON_ASCII_LOCAL_PART))
    return result.normalized.lower()


def stored_form(typed: str) -> str:
    """The form an address is stored in, to find a lead by what an owner typed:
    max@xn--mnchen-3ya.de finds max@münchen.de. Unchecked (lookups only)."""
    local, at, domain = typed.strip().rpartition("@")
    return f"{local}@{domains.comparable(domain)}".lower() if at else typed.strip().lower()


# email-validator's messages ("The part after the @-sign contains invalid characters:
# '@'.") said as a person would, first match wins: (words in its message, ours).
_EMAIL_PROBLEMS = (
    ("must have an @-sign", lazy_gettext("An email address needs an @, like name@example.com.")),
    ("something before the @-sign",
     lazy_gettext("Add the part before the @, like name@example.com.")),
    ("something after the @-sign",
     lazy_gettext("Add the part after the @, like name@example.com.")),
    ("anything after the email address",
     lazy_gettext("Enter just the email address, nothing after it.")),
    ("two periods in a row", lazy_gettext("This email address has two dots in a row.")),
    ("too long", lazy_gettext("This email address is too long.")),
    ("should have a period",
     lazy_gettext("Check the part after the @: it needs a dot, like example.com.")),
    ("top-level domain", lazy_gettext("Check the part after the @: it does not end like a "
                                      "real domain (.com, .de …).")),
    ("special-use or reserved",
     lazy_gettext("The part after the @ is a name that cannot receive email.")),
    ("does not exist",
     lazy_gettext("The part after the @ does not exist: check it for a typo.")),
    ("does not accept email",
     lazy_gettext("The part after the @ does not accept email: check it for a typo.")),
    ("before the @-sign", lazy_gettext("Check the part before the @: it has a character an "
                                       "email address cannot have.")),
)


def email_problem(raw: str, message: str) -> str:
    """What is wrong with an address, as one sentence a person would write: one wording
    for the form, the embed, the API and the import, in the language spoken now (a
    page's for its visitors, else English)."""
    text = (raw or "").strip()
    if text.count("@") > 1:
        return gettext("This email address has more than one @ sign.") \
            if text.count("@") > 2 else gettext("This email address has two @ signs.")
    if "<" in text or ">" in text:
        return gettext("Enter just the email address, without a name or < >.")
    if any(character.isspace() for character in text):
        return gettext("An email address cannot contain spaces.")
    if "@" in text and "must have an @-sign" in message:  # an @ inside quotes
        message = "before the @-sign"
    for words, sentence in _EMAIL_PROBLEMS:
        if words in message:
            return str(sentence)
    if "after the @" in message:
        return gettext("This doesn't look like an email address: check the part after the @.")
    return gettext("This doesn't look like an email address.")
