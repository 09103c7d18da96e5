"""A segment said in words, for the dashboard: "leads tagged vip and who clicked an
email in the last 7 days" without the "leads"."""

from capture.segments.language import NONE_VALUE, Engagement, Segment, Tags


def _either(values, quote: bool = False) -> str:
    """`a`, `a or b`, `a, b or c` (values shown as written, "(none)" as "none")."""
    shown = [("none" if v == NONE_VALUE else (f"“{v}”" if quote else str(v))) for v in values]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"


def _tags(tags: Tags) -> list[str]:
    parts = []
    if tags.any:
        parts.append(f"tagged {_either(tags.any)}")
    if tags.all:
        parts.append(f"tagged {' and '.join(tags.all)}")
    if tags.none:
        parts.append(f"not tagged {_either(tags.none)}")
    return parts


def _engagement(verb: str, engagement: Engagement) -> str:
    if not engagement.happened:
        return f"who never {verb} an email"
    what = "an email"
    if engagement.steps:
        what = _either([f"{sequence}/{step}" for sequence, step in engagement.steps])
    elif engagement.broadcasts:
        what = "the broadcast " + _either(engagement.broadcasts)
    text = f"who {verb} {what}"
    if engagement.within_days:
        days = engagement.within_days
        text += " in the last day" if days == 1 else f" in the last {days} days"
    return text


def describe(segment: Segment) -> str:
    """The segment in one line of words, to follow "leads": "tagged vip and who
    clicked an email"; "(any lead)" when it narrows nothing."""
    parts: list[str] = []
    if segment.pages:
        parts.append(f"who opted in on {_either(segment.pages)}")
    for key, label in (("sources", "source"), ("mediums", "medium"),
                       ("campaigns", "campaign"), ("refs", "ref")):
        values = getattr(segment, key)
        if values:
            parts.append(f"whose {label} is {_either(values)}")
    if segment.review:
        parts.append(f"whose review is {_either(segment.review)}")
    if segment.tags:
        parts += _tags(segment.tags)
    for name, values in segment.fields:
        shown = ["ticked" if v is True else "unticked" if v is False else v for v in values]
        parts.append(f"whose {name} is {_either(shown)}")
    if segment.upgraded is not None:
        parts.append("who upgraded" if segment.upgraded else "who never upgraded")
    if segment.opened:
        parts.append(_engagement("opened", segment.opened))
    if segment.clicked:
        parts.append(_engagement("clicked", segment.clicked))
    if segment.joined_after:
        parts.append(f"who joined on or after {segment.joined_after:%Y-%m-%d %H:%M} UTC")
    if segment.joined_before:
        parts.append(f"who joined before {segment.joined_before:%Y-%m-%d %H:%M} UTC")
    if segment.in_sequence:
        parts.append(f"in the sequence {_either(segment.in_sequence)}")
    if segment.finished_sequence:
        parts.append(f"who finished the sequence {_either(segment.finished_sequence)}")
    if not parts:
        return "(any lead)"
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
