"""Tag names: lowercase [a-z0-9_-], 1 to 40 characters, with one sentence for each
kind of wrong name."""

import pytest

from capture.tag_names import tag_problem


@pytest.mark.parametrize("name", ["vip", "a", "x" * 40, "price-list_2026"])
def test_a_valid_tag_name_has_no_problem(name):
    assert tag_problem(name) is None


@pytest.mark.parametrize("name, words", [
    ("", "1 to 40 characters"),
    (None, "1 to 40 characters"),
    ("x" * 41, "longer than 40"),
    ("VIP", "must be lowercase: 'vip'"),
    ("two words", "only lowercase letters"),
    ("café", "only lowercase letters"),
])
def test_a_wrong_tag_name_is_explained(name, words):
    assert words in tag_problem(name)
