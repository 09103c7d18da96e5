"""The catalogues in capture/translations/: every text marked for translation in
capture/ and templates/ (extracted as `make translations` does) has a finished
translation in every language, with the same placeholders and markup, and each
compiled .mo holds what its .po says."""

import re
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from capture.languages import DEFAULT, LANGUAGES, TRANSLATIONS_DIR
from config import ROOT

TRANSLATED = [code for code in LANGUAGES if code != DEFAULT]
# %(name)s placeholders and HTML tags must come through a translation unchanged.
_PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|<[^>]+>")


def _extracted() -> dict[str, str]:
    """Every message id in the code and templates, with where it was found first."""
    with open(ROOT / "babel.cfg", encoding="utf-8") as config:
        method_map, options_map = parse_mapping_cfg(config)
    keywords = {**DEFAULT_KEYWORDS, "lazy_gettext": None}
    found: dict[str, str] = {}
    for filename, line, message, _comments, _context in extract_from_dir(
            str(ROOT), method_map, options_map, keywords=keywords):
        if isinstance(message, tuple):  # ngettext: singular and plural
            message = message[0]
        found.setdefault(message, f"{filename}:{line}")
    return found


MESSAGES = _extracted()


def _catalogue(language: str):
    with open(TRANSLATIONS_DIR / language / "LC_MESSAGES" / "messages.po", "rb") as po:
        return read_po(po, locale=language)


def test_the_texts_are_found():
    # The extraction must see both Python and templates, or the checks below prove nothing.
    assert "Please correct the highlighted fields." in MESSAGES
    assert "We respect your inbox. Unsubscribe with one click at any time." in MESSAGES
    assert "Hi %(name)s," in MESSAGES  # from the .txt email


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_text_is_translated(language):
    catalogue = _catalogue(language)
    missing = []
    for message, where in sorted(MESSAGES.items(), key=lambda item: item[1]):
        entry = catalogue.get(message)
        if entry is None or not entry.string or entry.fuzzy:
            missing.append(f"{where}: {message!r}")
    assert not missing, (f"{language}: {len(missing)} texts without a finished translation "
                         "(run `make translations`, then translate):\n" + "\n".join(missing))


@pytest.mark.parametrize("language", TRANSLATED)
def test_translations_keep_placeholders_and_markup(language):
    wrong = []
    for entry in _catalogue(language):
        if entry.id and entry.string:
            if sorted(_PLACEHOLDER.findall(entry.id)) != sorted(
                    _PLACEHOLDER.findall(entry.string)):
                wrong.append(f"{entry.id!r} → {entry.string!r}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("language", TRANSLATED)
def test_the_compiled_catalogue_matches_its_source(language):
    folder = TRANSLATIONS_DIR / language / "LC_MESSAGES"
    with open(folder / "messages.mo", "rb") as mo:
        compiled = {entry.id: entry.string for entry in read_mo(mo) if entry.id}
    source = {entry.id: entry.string for entry in _catalogue(language)
              if entry.id and entry.string and not entry.fuzzy}
    assert compiled == source, (f"{folder}/messages.mo is older than messages.po: "
                                "run `make translations` (or pybabel compile)")


def test_no_catalogue_for_a_language_we_do_not_offer():
    folders = {path.name for path in Path(TRANSLATIONS_DIR).iterdir() if path.is_dir()}
    assert folders == set(TRANSLATED)
