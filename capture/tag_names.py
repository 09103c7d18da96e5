"""What a tag name may be: lowercase letters, digits, `_` and `-`, 1 to 40 characters.

Pages, links, imports, the dashboard, the API and segments all check names here."""

import re

TAG_PATTERN = re.compile(r"[a-z0-9_-]{1,40}")


def tag_problem(name: object) -> str | None:
    """One sentence saying why `name` is not a tag name, or None when it is one."""
    if not isinstance(name, str) or not name:
        return "a tag name is 1 to 40 characters: lowercase letters, digits, _ and -"
    if TAG_PATTERN.fullmatch(name):
        return None
    if len(name) > 40:
        return f"tag {name[:40]!r}… is longer than 40 characters"
    if name.lower() != name and TAG_PATTERN.fullmatch(name.lower()):
        return f"tag {name!r} must be lowercase: {name.lower()!r}"
    return f"tag {name!r} may hold only lowercase letters, digits, _ and -"
