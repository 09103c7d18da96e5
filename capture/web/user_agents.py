"""Telling user agents apart by a pattern, fast: the pages' bot check and the mail
scanner check of opens and clicks."""

import functools
import re
from collections.abc import Callable


def user_agent_matcher(pattern: re.Pattern) -> Callable[[str], bool]:
    """`pattern.search(user_agent) is not None`, remembered per user agent. Visitors
    share a few thousand user agents, so each is searched once per process, not on
    every request; only ordinary lengths are kept, so the memory stays small."""
    def matches(user_agent: str) -> bool:
        return pattern.search(user_agent) is not None

    remembered = functools.lru_cache(maxsize=4096)(matches)
    return lambda user_agent: (remembered if len(user_agent) <= 512 else matches)(user_agent)
