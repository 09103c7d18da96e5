"""The segment language: every key read and checked, errors naming the key and the
file:line, YAML text with its lines, and the canonical mapping a broadcast freezes."""

from datetime import date, datetime, timedelta, timezone

import pytest

from capture.segments.language import (
    KEYS,
    Engagement,
    Segment,
    SegmentError,
    Tags,
    parse,
)
from capture.segments.text import load_yaml, parse_text


def error_of(mapping, **options) -> SegmentError:
    with pytest.raises(SegmentError) as caught:
        parse(mapping, **options)
    return caught.value


def test_nothing_or_an_empty_mapping_is_everyone():
    assert parse(None) == Segment()
    assert parse({}).everyone
    assert not parse({"pages": ["a"]}).everyone


def test_every_key_reads_into_the_segment():
    segment = parse({
        "pages": ["webinar", "ebook"], "sources": "twitter", "mediums": ["(none)"],
        "campaigns": ["spring"], "refs": [123], "review": ["approved"],
        "tags": {"any": ["vip"], "all": ["a", "b"], "none": "gone"},
        "fields": {"plan": ["pro", "team"], "newsletter": True, "country": "de"},
        "upgraded": False, "opened": {"within_days": 30},
        "clicked": {"step": ["course/02-tips.md", "course/offer"]},
        "joined_after": date(2026, 1, 1), "joined_before": "2026-02-01T10:00:00+01:00",
        "in_sequence": "course", "finished_sequence": ["intro"],
    })
    assert segment.pages == ("webinar", "ebook")
    assert segment.sources == ("twitter",)
    assert segment.refs == ("123",)
    assert segment.tags == Tags(any=("vip",), all=("a", "b"), none=("gone",))
    assert segment.fields == (("plan", ("pro", "team")), ("newsletter", (True,)),
                              ("country", ("DE",)))
    assert segment.upgraded is False
    assert segment.opened == Engagement(within_days=30)
    assert segment.clicked.steps == (("course", "tips"), ("course", "offer"))
    assert segment.joined_after == datetime(2026, 1, 1)
    assert segment.joined_before == datetime(2026, 2, 1, 9, 0)
    assert segment.in_sequence == ("course",)
    # The canonical mapping reads back into the same segment.
    assert parse(segment.as_mapping()) == segment


def test_aware_times_become_naive_utc():
    moment = datetime(2026, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert parse({"joined_after": moment}).joined_after == datetime(2026, 5, 1, 10, 0)


@pytest.mark.parametrize(("mapping", "key", "words"), [
    ({"page": ["a"]}, "page", "unknown key (did you mean pages?)"),
    ({"colour": "red"}, "colour", "the keys are: pages, sources"),
    ({"pages": []}, "pages", "at least one"),
    ({"pages": ["Web Inar"]}, "pages", "not a page slug"),
    ({"sources": [None]}, "sources", "not a text"),
    ({"sources": [""]}, "sources", "empty"),
    ({"review": ["maybe"]}, "review", "pending, approved, rejected"),
    ({"tags": {"some": ["a"]}}, "tags", "use any, all, none"),
    ({"tags": {"any": ["VIP"]}}, "tags.any", "must be lowercase"),
    ({"tags": 5}, "tags", "any: [...]"),
    ({"fields": ["plan"]}, "fields", "field name"),
    ({"fields": {"Plan": "x"}}, "fields", "not a field name"),
    ({"fields": {"country": "Germany"}}, "fields.country", "two-letter"),
    ({"fields": {"plan": {"a": 1}}}, "fields.plan", "not a text"),
    ({"upgraded": "yes"}, "upgraded", "true or false"),
    ({"opened": 3}, "opened", "within_days"),
    ({"clicked": {"within_days": 0}}, "clicked.within_days", "1 to 3650"),
    ({"clicked": {"within_days": True}}, "clicked.within_days", "whole number"),
    ({"clicked": {"step": "tips"}}, "clicked.step", "<sequence>/<step>"),
    ({"clicked": {"broadcast": "Big News"}}, "clicked.broadcast", "broadcast name"),
    ({"clicked": {"step": "a/b", "broadcast": "c"}}, "clicked", "one of step, broadcast"),
    ({"clicked": {"when": 3}}, "clicked", "unknown part 'when'"),
    ({"joined_after": "last week"}, "joined_after", "not a date"),
    ({"joined_after": 5}, "joined_after", "not a date"),
    ({"joined_after": "2026-03-01", "joined_before": "2026-02-01"}, "joined_before",
     "no lead can match"),
    ({"in_sequence": []}, "in_sequence", "at least one"),
])
def test_a_bad_key_or_value_is_an_error_naming_the_key(mapping, key, words):
    error = error_of(mapping)
    assert error.key == key
    assert words in str(error)
    assert str(error).startswith(f"{key}: ")
    assert "\n" not in str(error)


def test_not_a_mapping_is_an_error():
    assert str(error_of(["pages"])).startswith("segment: write the segment as keys")


def test_every_problem_is_named_with_file_and_line():
    error = error_of({"pages": [], "colour": "red"}, filename="broadcasts/news.md",
                     prefix="segment", lines={"segment": 3, "segment.pages": 4,
                                              "segment.colour": 5})
    assert str(error).splitlines() == [
        "broadcasts/news.md:4: segment.pages: give at least one value (or leave the key out)",
        "broadcasts/news.md:5: segment.colour: unknown key; the keys are: "
        + ", ".join(KEYS),
    ]
    assert [p.line for p in error.problems] == [4, 5]
    assert (error.key, error.line) == ("segment.pages", 4)


def test_yaml_text_keeps_the_line_of_every_key():
    data, lines = load_yaml("segment:\n  tags:\n    any: [vip]\n  pages: [a]\n",
                            first_line=2)
    assert data == {"segment": {"tags": {"any": ["vip"]}, "pages": ["a"]}}
    assert lines == {"segment": 2, "segment.tags": 3, "segment.tags.any": 4,
                     "segment.pages": 5}


def test_parse_text_says_line_and_key():
    with pytest.raises(SegmentError) as caught:
        parse_text("pages: [webinar]\ntags:\n  any: [Bad Tag]\n")
    assert str(caught.value) == ("line 3: tags.any: tag 'Bad Tag' may hold only "
                                 "lowercase letters, digits, _ and -")
    assert parse_text("").everyone
    assert parse_text("# only a comment\n").everyone


def test_broken_yaml_says_its_line():
    with pytest.raises(SegmentError) as caught:
        parse_text("pages: [webinar\ntags: x\n")
    assert str(caught.value).startswith("line ")
    assert "not valid YAML" in str(caught.value)
    with pytest.raises(SegmentError) as caught:
        parse_text("pages: [a]\n  - b\n", filename="x.yml")
    assert str(caught.value).startswith("x.yml:2: ")


def test_a_top_level_list_is_refused():
    with pytest.raises(SegmentError, match="write the segment as keys"):
        parse_text("- pages\n")
