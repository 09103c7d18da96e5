"""How the owner's English texts say a count (capture.wording)."""

import pytest

from capture.wording import counted


@pytest.mark.parametrize("count, said", [
    (0, "0 leads"), (1, "1 lead"), (2, "2 leads"), (1200, "1,200 leads")])
def test_a_count_takes_the_noun_in_the_number_that_fits(count, said):
    assert counted(count, "lead") == said


def test_a_plural_that_is_no_added_s_is_given():
    assert (counted(1, "reply", "replies"), counted(3, "reply", "replies")) == (
        "1 reply", "3 replies")
