"""How the owner's English texts (the dashboard, the commands, the stored errors) say a
count: "1 lead", "2 leads", "1,200 sign-ups". What a visitor or lead reads is
translated with its own plural forms instead (capture/translations)."""


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """The count and the noun in the number that fits it; `plural` when adding an
    s is not it."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"
