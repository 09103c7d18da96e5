"""Page tests (A/B): a page's variants in its definition, which variant a visitor
sees, the page as one variant shows it, and the definition after a variant is
paused or promoted.

The page itself is variant "a"; each entry of `Page.variants` is another variant,
`{"key": "b", "weight": 50, "paused": false, …}` with the page values it changes.
A visitor's variant follows from their visitor id and the page alone (weighted
rendezvous hashing), so it needs no cookie of its own, is the same on every view,
and moves the fewest visitors when a weight changes or a variant is added or paused.
"""

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

from sqlalchemy import bindparam, inspect, select
from sqlalchemy.orm import make_transient_to_detached

from capture.models import Page, Visit

# The page itself, as a variant.
PAGE_KEY = "a"
# What a variant may change; everything else (rules, payout, sequence …) is the page's.
OVERRIDABLE = ("headline", "body", "button", "template", "fields", "consent", "thank_you",
               "image", "image_alt", "video_url")
VARIANT_KEYS = ("key", "weight", "paused", *OVERRIDABLE)
MAX_VARIANTS = 9
MAX_WEIGHT = 10_000
_KEY = re.compile(r"^[a-z0-9_-]{1,20}$")
_KEY_RULE = 'lowercase letters, digits, _ and -, 1-20 characters, not "a" (the page itself)'
_WEIGHT_RULE = f"must be a positive whole number (at most {MAX_WEIGHT})"
# 2**64: the number of values of the 8-byte hash a visitor is placed with.
_HASH_VALUES = 1 << 64


@dataclass(frozen=True)
class Arm:
    """One variant in the draw: its key, its weight (a weight left out is the mean
    of those given) and whether it is paused (no new visitors)."""

    key: str
    weight: float
    paused: bool = False


@dataclass(frozen=True)
class Test:
    """A page's test: variant "a" (the page) first, then its variants in order."""

    page_id: int
    arms: tuple[Arm, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(arm.key for arm in self.arms)

    def shares(self) -> dict[str, float]:
        """The share of new visitors each variant gets (0 for a paused one)."""
        total = sum(arm.weight for arm in self.arms if not arm.paused)
        return {arm.key: 0.0 if arm.paused else arm.weight / total for arm in self.arms}

    def assign(self, visitor: str, seen: Callable[[str], bool] | None = None) -> str:
        """The variant of `visitor`: the arm with the lowest score -ln(u)/weight, u a
        hash of (page, variant, visitor) in (0, 1]; arm i wins with probability
        weight_i / sum of weights. A paused winner is kept only for a visitor who has
        seen it (`seen(key)`, asked only then); others get the best unpaused arm."""
        scores = {arm.key: _score(self.page_id, arm, visitor) for arm in self.arms}
        best = min(self.arms, key=lambda arm: scores[arm.key])
        if best.paused and not (seen is not None and seen(best.key)):
            best = min((arm for arm in self.arms if not arm.paused),
                       key=lambda arm: scores[arm.key])
        return best.key


def _score(page_id: int, arm: Arm, visitor: str) -> float:
    digest = blake2b(f"{page_id}:{arm.key}:{visitor}".encode(), digest_size=8).digest()
    return -math.log((int.from_bytes(digest, "big") + 1) / _HASH_VALUES) / arm.weight


def test_of(page: Page) -> Test | None:
    """The page's test, or None when it has no variants."""
    if not page.variants:
        return None
    given = [w for w in (page.variant_a_weight, *(v.get("weight") for v in page.variants))
             if w is not None]
    default = sum(given) / len(given) if given else 1.0
    arms = [Arm(PAGE_KEY, float(page.variant_a_weight or default))]
    arms += [Arm(v["key"], float(v.get("weight") or default), bool(v.get("paused")))
             for v in page.variants]
    return Test(page.id, tuple(arms))


# Built once: asked only when a visitor's draw falls on a paused variant.
_SEEN = (select(Visit.id)
         .where(Visit.visitor_id == bindparam("visitor"), Visit.page_id == bindparam("page_id"),
                Visit.variant == bindparam("variant"))
         .limit(1))


def seen_variant(connection, page_id: int, visitor: str, key: str) -> bool:
    """Whether the visitor was shown variant `key` of the page before."""
    row = connection.execute(_SEEN, {"visitor": visitor, "page_id": page_id,
                                     "variant": key}).first()
    return row is not None


def visitor_variant(page: Page, visitor: str, new_visitor: bool, connection,
                    test: Test | None = None) -> str | None:
    """The variant the visitor sees on the page (None: the page has no test). A
    visitor new to the site has seen no paused variant, so is never looked up."""
    test = test if test is not None else test_of(page)
    if test is None:
        return None
    seen = None if new_visitor else (
        lambda key: seen_variant(connection, page.id, visitor, key))
    return test.assign(visitor, seen)


def variant_of(page: Page, key: str | None) -> dict[str, Any] | None:
    """The variant entry with this key, or None (the page itself, or no such key)."""
    return next((v for v in page.variants or [] if v.get("key") == key), None)


_COLUMNS = tuple(attribute.key for attribute in inspect(Page).column_attrs)


def page_as(page: Page, key: str | None) -> Page:
    """The page as variant `key` shows it: a copy with the variant's values, detached
    from any session (read it, never store it); the page itself for "a", None or a
    key it does not have."""
    variant = variant_of(page, key)
    if variant is None:
        return page
    copy = Page(**{name: getattr(page, name) for name in _COLUMNS})
    for name in OVERRIDABLE:
        if name in variant:
            setattr(copy, name, variant[name])
    if "image" in variant and "image_alt" not in variant:
        copy.image_alt = ""  # the page's would describe another picture
    make_transient_to_detached(copy)
    return copy


def shown_key(page: Page, started: dict | None,
              fallback: Callable[[], str | None]) -> str | None:
    """The variant a submitted form was shown as: the one its fill-time token
    `started` names (`k`: "a" or None for the page itself) when the page still has
    it, else `fallback()` (no genuine token, or the test changed since)."""
    if started is None or "k" not in started:
        return fallback()
    key = started["k"]
    if key is None or (key == PAGE_KEY and page.variants):
        return key
    if isinstance(key, str) and variant_of(page, key) is not None:
        return key
    return fallback()


# --- the definition ------------------------------------------------------------------

def check_test(data: dict[str, Any], validate: Callable[[dict], tuple[dict, list[str]]],
               page_keys: tuple[str, ...],
               page_problems: list[str]) -> tuple[list[dict], int | None, list[str]]:
    """Check a definition's `variants` and `variant_a_weight`: keys, weights, what each
    variant changes, and each variant as a whole page (`validate` of the definition
    with the variant's values; problems the page has itself are not repeated).
    Returns the clean variants, the clean weight of "a" and one line per problem."""
    problems: list[str] = []
    variants, a_weight = data.get("variants", []), data.get("variant_a_weight")
    if a_weight is not None and _weight(a_weight) is None:
        problems.append(f"variant_a_weight: {_WEIGHT_RULE}, or null for an equal share")
    if not isinstance(variants, list):
        problems.append('variants: must be a list like [{"key": "b", "weight": 50, '
                        '"headline": "…"}]')
        return [], None, problems
    if len(variants) > MAX_VARIANTS:
        problems.append(f"variants: at most {MAX_VARIANTS} variants besides the page itself")
    base = {name: value for name, value in data.items()
            if name not in ("variants", "variant_a_weight")}
    clean: list[dict] = []
    keys: set[str] = set()
    for index, variant in enumerate(variants):
        where = f"variants[{index}]"
        if not isinstance(variant, dict):
            problems.append(f"{where}: must be an object with a key")
            continue
        key = variant.get("key")
        if not isinstance(key, str) or not _KEY.match(key) or key == PAGE_KEY:
            problems.append(f"{where}.key: required: {_KEY_RULE}")
        else:
            where = f"{where} ({key})"
            if key in keys:
                problems.append(f"{where}.key: used by another variant")
            keys.add(key)
        weight = variant.get("weight")
        if weight is not None and _weight(weight) is None:
            problems.append(f"{where}.weight: {_WEIGHT_RULE}")
        if not isinstance(variant.get("paused", False), bool):
            problems.append(f"{where}.paused: must be true or false")
        for name in sorted(set(variant) - set(VARIANT_KEYS)):
            known = name in page_keys
            problems.append(f"{where}.{name}: " + (
                "a variant cannot change this; it can change " + ", ".join(OVERRIDABLE)
                if known else "unknown property"))
        overrides = {name: variant[name] for name in OVERRIDABLE if name in variant}
        whole, own = validate({**base, **overrides})
        problems.extend(f"{where}.{problem}" for problem in own if problem not in page_problems)
        clean.append({"key": key, "weight": _weight(weight),
                      "paused": variant.get("paused") is True,
                      **{name: whole.get(name) for name in overrides}})
    return clean, _weight(a_weight), problems


def _weight(value: Any) -> int | None:
    """A weight as a whole number, or None when it is not one in 1..MAX_WEIGHT."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    return int(value) if 1 <= value <= MAX_WEIGHT else None


def with_paused(data: dict[str, Any], key: str, paused: bool) -> dict[str, Any]:
    """The definition with variant `key` paused (no new visitors) or running again."""
    if variant_of_data(data, key) is None:
        raise ValueError(f"this page has no variant {key!r}")
    variants = [{**v, "paused": paused} if v.get("key") == key else dict(v)
                for v in data["variants"]]
    return {**data, "variants": variants}


def promoted(data: dict[str, Any], key: str) -> dict[str, Any]:
    """The definition with variant `key` made the page (its values replace the
    page's; "a" keeps the page as it is) and the test ended: no variants left, weight
    of "a" cleared. Visits and opt-ins keep the variant they were made on, so the
    test's numbers stay."""
    variant = {} if key == PAGE_KEY and data.get("variants") else variant_of_data(data, key)
    if variant is None:
        raise ValueError(f"this page has no variant {key!r}")
    values = {name: variant[name] for name in OVERRIDABLE if name in variant}
    return {**data, **values, "variants": [], "variant_a_weight": None}


def variant_of_data(data: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The variant with this key in a definition (JSON format), or None."""
    return next((v for v in data.get("variants") or [] if v.get("key") == key), None)
