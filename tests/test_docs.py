"""The docs hold together: every relative link and anchor resolves, the README stays
short, and every `flask --app wsgi …` command the docs (and the app) show exists."""

import re
from pathlib import Path

import click
import pytest
from flask.cli import FlaskGroup

from config import ROOT

DOCS = [ROOT / "README.md", ROOT / "SECURITY.md", *sorted((ROOT / "docs").rglob("*.md"))]
# Where Capture itself prints commands for the owner to type.
APP_TEXTS = [*sorted((ROOT / "capture").rglob("*.py")), *sorted((ROOT / "capture").rglob("*.json")),
             *sorted((ROOT / "templates").rglob("*.html")), *sorted((ROOT / "deploy").iterdir())]
README_LIMIT = 8_000


FENCE = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1[^\n]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`]*`")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)
COMMAND = re.compile(r"flask --app wsgi((?:[ \t]+[a-z][a-z0-9_-]*)*)")


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code: what renders as links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its rendered text lower-cased, punctuation
    dropped (letters, digits, `_`, `-` and spaces stay), spaces turned into dashes."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)   # a link: its text
    text = re.sub(r"<[^>]+>", "", text)                          # inline HTML tags
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor GitHub makes for the headings of a Markdown file (a repeated
    heading gets -1, -2 … as GitHub does)."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text())):
        base = slug(heading)
        number = seen.get(base, 0)
        seen[base] = number + 1
        found.add(base if number == 0 else f"{base}-{number}")
    return found


def links(path: Path) -> list[str]:
    return LINK.findall(prose(path.read_text()))


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def test_the_docs_this_test_reads_are_there():
    assert {relative(path) for path in DOCS} >= {
        "README.md", "SECURITY.md", "docs/use/pages.md", "docs/use/sequences.md",
        "docs/use/leads.md", "docs/use/numbers.md", "docs/use/dashboard.md",
        "docs/integrate/api.md", "docs/integrate/webhooks.md",
        "docs/integrate/postbacks.md", "docs/run/production.md",
        "docs/develop/architecture.md", "docs/develop/testing.md",
        "docs/develop/performance.md"}


def test_the_readme_is_at_most_8000_characters():
    size = len((ROOT / "README.md").read_text())
    assert size <= README_LIMIT, f"README.md has {size} characters; move some into docs/"


@pytest.mark.parametrize("doc", DOCS, ids=relative)
def test_every_relative_link_and_anchor_resolves(doc):
    broken = []
    for target in links(doc):
        if SCHEME.match(target):
            continue                      # http(s), mailto: not ours to check
        file_part, _, anchor = target.partition("#")
        file = (doc.parent / file_part).resolve() if file_part else doc
        if not file.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
            continue
        if not file.exists():
            broken.append(f"{target}: no such file")
            continue
        if anchor and (file.suffix != ".md" or anchor not in anchors(file)):
            broken.append(f"{target}: no heading with the anchor #{anchor} in {relative(file)}")
    assert broken == [], f"{relative(doc)}: " + "; ".join(broken)


def test_slugs_are_githubs():
    assert slug("Page definitions (JSON)") == "page-definitions-json"
    assert slug("Sequences, deliveries and the outbox") == "sequences-deliveries-and-the-outbox"
    assert slug("`flask report` and CAPTURE_SEND_BATCH_SIZE") == \
        "flask-report-and-capture_send_batch_size"
    assert slug("Fixed after the outside review (issue 15)") == \
        "fixed-after-the-outside-review-issue-15"


# --- commands ----------------------------------------------------------------------------

@pytest.fixture
def commands(app) -> click.Group:
    """Every command `flask --app wsgi` offers: the app's own and Flask's built-in ones."""
    root = click.Group("flask")
    for name, command in {**FlaskGroup().commands, **app.cli.commands}.items():
        root.add_command(command, name)
    return root


def shown_commands(path: Path) -> list[tuple[int, list[str]]]:
    """The words after each `flask --app wsgi` in a file, with the line they are on."""
    text = path.read_text(errors="replace")
    return [(text.count("\n", 0, match.start()) + 1, match.group(1).split())
            for match in COMMAND.finditer(text)]


def unknown_commands(root: click.Group, paths: list[Path]) -> list[str]:
    """Lines naming a command that does not exist. Words are followed while they name
    a group's subcommand; what follows a command (its arguments) is not checked, and
    neither is a placeholder such as `<command>` or `…` (no words at all)."""
    unknown = []
    for path in paths:
        for line, words in shown_commands(path):
            command: click.Command = root
            for word in words:
                if not isinstance(command, click.Group):
                    break
                if word not in command.commands:
                    unknown.append(f"{relative(path)}:{line}: flask --app wsgi {' '.join(words)}")
                    break
                command = command.commands[word]
    return unknown


def test_every_flask_command_the_docs_show_exists(commands):
    shown = [words for path in DOCS for _, words in shown_commands(path)]
    assert ["sequences", "preview", "welcome", "offer"] in shown   # the scan sees them
    assert unknown_commands(commands, DOCS) == []


def test_every_flask_command_the_app_prints_exists(commands):
    assert unknown_commands(commands, [path for path in APP_TEXTS if path.is_file()]) == []


def test_a_made_up_command_is_caught(commands, tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("Run `.venv/bin/flask --app wsgi leads frobnicate FILE` and\n"
                   "`.venv/bin/flask --app wsgi report --by day`, "
                   "`.venv/bin/flask --app wsgi <command>`.\n")
    assert [entry.split(": ", 1)[1] for entry in unknown_commands(commands, [doc])] == \
        ["flask --app wsgi leads frobnicate"]


def test_docs_named_in_the_code_exist():
    """Texts in the code and the set-up files that send the reader to a doc name one
    that exists (and none sends them to a README section that moved)."""
    named = re.compile(r"\b(docs/[\w/.-]+\.md)")
    missing, to_readme = [], []
    for path in [*APP_TEXTS, *sorted((ROOT / "bench").rglob("*.py")),
                 ROOT / "bench" / "README.md", ROOT / "Makefile",
                 *sorted((ROOT / ".ci").iterdir())]:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        missing += [f"{relative(path)}: {doc}" for doc in named.findall(text)
                    if not (ROOT / doc).exists()]
        if re.search(r"\bREADME\b", text):
            to_readme.append(relative(path))
    assert missing == []
    assert to_readme == []


def test_files_the_docs_name_exist():
    """A path into the code the docs name in backticks (`capture/mail/`,
    `deploy/nginx.conf`, `bench/run.py --quick`) is there: a module that moved or split
    must not leave the docs pointing at its old place."""
    named = re.compile(r"`((?:capture|deploy|bench|migrations|templates|static|sequences)/"
                       r"[^`\s]*)[^`]*`")
    missing = [f"{relative(doc)}: {path}" for doc in DOCS
               for path in named.findall(doc.read_text())
               if not re.search(r"[<*…]", path)     # a pattern, not a path: bench/out/<time>/
               and not (ROOT / path).exists()]
    assert missing == []
