"""The docs written from code match the code: the settings table (config.py), the
commands (the click tree) and the package map (docstrings of capture/)."""

import importlib.util

import pytest

from config import ROOT


def load_generator():
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generator = load_generator()


@pytest.mark.parametrize("relative", sorted(generator.GENERATED))
def test_generated_docs_match_the_code(relative):
    assert (ROOT / relative).read_text() == generator.expected(relative), \
        f"{relative} differs from what docs/generate.py writes: run make docs"


def test_the_settings_table_names_every_setting_once():
    text = (ROOT / "docs" / "run" / "settings.md").read_text()
    for setting in (*generator.config.SETTINGS, *generator.config.OTHER_VARIABLES):
        assert text.count(f"| `CAPTURE_{setting.name}` |") == 1, setting.name
