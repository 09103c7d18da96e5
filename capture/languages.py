"""The languages visitors and leads are spoken to in: Flask-Babel's set-up, the
language of a request (a page's `language`; the dashboard never sets one, so it
stays English) and rendering for one page, lead or email in its language."""

import gettext as gettext_module
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import pycountry
from babel import support
from flask import Flask, g, has_app_context
from flask_babel import Babel, force_locale, get_locale, refresh
from wtforms.i18n import messages_path

# The languages a page, a sequence or a broadcast may have, by code, in their own words.
LANGUAGES = {"en": "English", "de": "Deutsch", "fr": "Français", "es": "Español",
             "pt": "Português"}
DEFAULT = "en"
TRANSLATIONS_DIR = Path(__file__).resolve().parent / "translations"
_CHOSEN = "capture_language"


def init_app(app: Flask) -> None:
    """Flask-Babel with our catalogues; the locale is what `use` chose, else English."""
    Babel().init_app(app, default_locale=DEFAULT,
                     default_translation_directories=str(TRANSLATIONS_DIR),
                     locale_selector=_chosen)
    app.jinja_env.globals["current_language"] = current_language


def language_problem(value: object) -> str:
    """Why `value` is no language of ours ('' when it is one), in one line."""
    if isinstance(value, str) and value in LANGUAGES:
        return ""
    return f"{value!r} is not a supported language: use one of {', '.join(LANGUAGES)}"


def known(language: str | None) -> str:
    """`language` when it is one of ours, else the default (English)."""
    return language if isinstance(language, str) and language in LANGUAGES else DEFAULT


def use(language: str | None) -> None:
    """Speak `language` for the rest of this request (a visitor's, on a page's URL)."""
    setattr(g, _CHOSEN, known(language))
    refresh()


@contextmanager
def speaking(language: str | None) -> Iterator[None]:
    """Speak `language` inside the block (a page, a lead's page or an email rendered
    inside another request, or by the scheduler), then the request's language again."""
    if not has_app_context():
        yield
        return
    with force_locale(known(language)):
        yield


def chosen() -> bool:
    """Whether a view chose this request's language (`use`)."""
    return bool(g.get(_CHOSEN))


def best_for(accept_languages) -> str:
    """Ours that the visitor's Accept-Language prefers (werkzeug's LanguageAccept),
    else the default."""
    return accept_languages.best_match(LANGUAGES) or DEFAULT


def current_language() -> str:
    """The code of the language spoken now (`<html lang>`)."""
    locale = get_locale() if has_app_context() else None
    return locale.language if locale is not None else DEFAULT


def _chosen() -> str:
    return g.get(_CHOSEN) or DEFAULT


@lru_cache(maxsize=len(LANGUAGES))
def _country_names(language: str) -> gettext_module.NullTranslations:
    """pycountry's own translations of the country names (ISO 3166-1)."""
    return gettext_module.translation("iso3166-1", pycountry.LOCALES_DIR,
                                      languages=[language], fallback=True)


def country_name(name: str, language: str) -> str:
    """A country's English name (pycountry's) in `language`."""
    return _country_names(known(language)).gettext(name)


@lru_cache(maxsize=len(LANGUAGES))
def _wtforms_messages(language: str) -> support.NullTranslations:
    return support.Translations.load(messages_path(), [language], domain="wtforms")


def wtforms_messages() -> support.NullTranslations:
    """WTForms' own messages ("Not a valid choice.") in the language spoken now, read
    once per language (Flask-WTF reads the catalogue from disk for every form: a
    quarter of an opt-in's time in the app)."""
    return _wtforms_messages(current_language())
