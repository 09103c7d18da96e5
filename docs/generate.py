"""Writes the parts of the docs that come from code, between their markers.

- docs/run/settings.md: the settings table, from the declarations in config.py;
- docs/run/commands.md: every command, from the click tree of `create_app().cli`;
- docs/develop/packages.md: the package map, from the docstrings of capture/.

Run `.venv/bin/python docs/generate.py` (or `make docs`) to rewrite them;
`--check` writes nothing and exits 1 naming each file that differs. Text outside the
`<!-- generated: … -->` and `<!-- end generated -->` markers is hand-written and kept.
"""

import argparse
import ast
import inspect
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script, the checkout is not on the path
    sys.path.insert(0, str(ROOT))

import click  # noqa: E402

import config  # noqa: E402

END = "<!-- end generated -->"
FLASK = ".venv/bin/flask --app wsgi"
# A command named in a docstring without the virtualenv's path (the form
# tests/test_commands_as_printed.py refuses in the docs).
BARE_FLASK = re.compile(r"(?<![\w/.])flask --app wsgi")


def _start(name: str) -> str:
    return f"<!-- generated: {name} -->"


# --- docs/run/settings.md -------------------------------------------------------------

def settings_table() -> str:
    """One table per section of config.py, then the variables read before there is an
    app."""
    lines: list[str] = []
    for title, settings in config.SECTIONS:
        lines += [f"## {title}", "", *_settings_rows(settings), ""]
    lines += ["## Read before there is an app", "",
              "Known to start-up, so never warned about, but no setting of `Config`:", "",
              *_settings_rows(config.OTHER_VARIABLES)]
    return "\n".join(lines)


def _settings_rows(settings: tuple[config.Setting, ...]) -> Iterator[str]:
    yield "| Variable | Default | Allowed values | Meaning |"
    yield "|---|---|---|---|"
    for setting in settings:
        cells = (f"`CAPTURE_{setting.name}`", _shown_default(setting), _allowed(setting),
                 setting.meaning)
        yield "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _shown_default(setting: config.Setting) -> str:
    if setting.shown_default:
        return setting.shown_default
    value = setting.default
    if value is None or value == "":
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _allowed(setting: config.Setting) -> str:
    if setting.kind == "choice":
        return "one of " + ", ".join(f"`{choice}`" for choice in setting.choices)
    text = config.KINDS[setting.kind]
    if setting.minimum is not None and setting.maximum is not None:
        return f"{text} from {setting.minimum} to {setting.maximum}"
    if setting.minimum is not None:
        return f"{text}, at least {setting.minimum}"
    if setting.maximum is not None:
        return f"{text}, at most {setting.maximum}"
    return text


# --- docs/run/commands.md -------------------------------------------------------------

def commands_reference() -> str:
    """Each of Capture's commands: usage, help and options; other packages' groups (Flask-
    Migrate's `db`) as one line each."""
    from capture import create_app
    from capture.db import db

    with tempfile.TemporaryDirectory() as folder:
        app = create_app({"INSTANCE_PATH": str(Path(folder) / "instance"),
                          "DATABASE_URL": f"sqlite:///{Path(folder) / 'capture.db'}",
                          "SCHEDULER": "off"})
        with app.app_context():
            db.engine.dispose()
    root = click.Context(app.cli, info_name=FLASK)
    lines: list[str] = []
    others: list[str] = []
    for name in app.cli.list_commands(root):
        command = app.cli.get_command(root, name)
        if _is_capture(command):
            lines += _command_section(command, click.Context(command, info_name=name,
                                                             parent=root), level=2)
        else:
            others.append(_other_group(command, name, root))
    if others:
        lines += ["## From other packages", "", *others, ""]
    return "\n".join(lines).rstrip("\n")


def _is_capture(command: click.Command) -> bool:
    if command.callback is not None and command.callback.__module__.startswith("capture"):
        return True
    return isinstance(command, click.Group) and any(
        _is_capture(sub) for sub in command.commands.values())


def _command_section(command: click.Command, context: click.Context,
                     level: int) -> list[str]:
    path = context.command_path.removeprefix(FLASK + " ")
    lines = ["#" * level + f" `{path}`", ""]
    if not isinstance(command, click.Group):
        lines += ["```", f"{context.command_path} {_usage(command, context)}".rstrip(),
                  "```", ""]
    lines += [*_help_paragraphs(command), *_options(command, context)]
    if isinstance(command, click.Group):
        for name in command.list_commands(context):
            sub = command.get_command(context, name)
            lines += _command_section(sub, click.Context(sub, info_name=name,
                                                         parent=context), level + 1)
    return lines


def _usage(command: click.Command, context: click.Context) -> str:
    pieces = command.collect_usage_pieces(context)
    if not _visible_options(command):
        pieces = [piece for piece in pieces if piece != "[OPTIONS]"]
    return " ".join(pieces)


def _help_paragraphs(command: click.Command) -> list[str]:
    """click's own reading of the docstring: cut at \\f, one line per paragraph."""
    text = inspect.cleandoc(command.help or "").split("\f")[0]
    paragraphs = [" ".join(line.strip() for line in block.splitlines()
                           if line.strip() != "\b")
                  for block in text.split("\n\n") if block.strip()]
    return [line for paragraph in paragraphs for line in (paragraph, "")]


def _visible_options(command: click.Command) -> list[click.Option]:
    return [param for param in command.params
            if isinstance(param, click.Option) and not param.hidden]


def _options(command: click.Command, context: click.Context) -> list[str]:
    """As `--help` prints them: name, value, help, default, required."""
    records = [option.get_help_record(context) for option in _visible_options(command)]
    lines = [f"- `{names}`" + (f": {' '.join(text.split())}" if text.strip() else "")
             for names, text in filter(None, records)]
    return [*lines, ""] if lines else []


def _other_group(command: click.Command, name: str, root: click.Context) -> str:
    context = click.Context(command, info_name=name, parent=root)
    line = f"- `{name}`: {command.get_short_help_str(limit=200)}"
    if isinstance(command, click.Group):
        subcommands = ", ".join(f"`{sub}`" for sub in command.list_commands(context))
        line += f" Its commands: {subcommands}; `{FLASK} {name} <command> --help` tells more."
    return line


# --- docs/develop/packages.md ---------------------------------------------------------

def package_map() -> str:
    """Each package of capture/ with its docstring, each module with its first paragraph."""
    lines: list[str] = []
    for package in sorted((ROOT / "capture").rglob("__init__.py"), key=_package_order):
        folder = package.parent
        lines += [f"## `{folder.relative_to(ROOT).as_posix()}/`", "",
                  _docstring(package) or "(no docstring)", ""]
        modules = sorted(path for path in folder.glob("*.py") if path.name != "__init__.py")
        lines += [f"- `{module.name}`: {_first_paragraph(module) or '(no docstring)'}"
                  for module in modules]
        lines += [""] if modules else []
    return "\n".join(lines).rstrip("\n")


def _package_order(init: Path) -> tuple[str, ...]:
    return init.parent.relative_to(ROOT).parts


def _docstring(path: Path) -> str:
    return inspect.cleandoc(ast.get_docstring(ast.parse(path.read_text())) or "")


def _first_paragraph(path: Path) -> str:
    return " ".join(_docstring(path).split("\n\n")[0].split())


# --- writing ------------------------------------------------------------------------

GENERATED: dict[str, tuple[str, Callable[[], str]]] = {
    "docs/run/settings.md": ("settings", settings_table),
    "docs/run/commands.md": ("commands", commands_reference),
    "docs/develop/packages.md": ("packages", package_map),
}


def expected(relative: str) -> str:
    """The file as the generator writes it: its hand-written text, the part between the
    markers made anew."""
    marker, make = GENERATED[relative]
    current = (ROOT / relative).read_text()
    start = _start(marker)
    if current.count(start) != 1 or current.count(END) != 1 or \
            current.index(start) > current.index(END):
        raise SystemExit(f"{relative}: needs one {start} line, then one {END} line")
    before, rest = current.split(start, 1)
    after = rest.split(END, 1)[1]
    generated = BARE_FLASK.sub(FLASK, make())
    return f"{before}{start}\n\n{generated}\n\n{END}{after}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 naming each file that differs")
    arguments = parser.parse_args(argv)
    stale = []
    for relative in GENERATED:
        text = expected(relative)
        if (ROOT / relative).read_text() != text:
            stale.append(relative)
            if not arguments.check:
                (ROOT / relative).write_text(text)
    for relative in stale:
        print(f"{relative}: {'differs, run make docs' if arguments.check else 'written'}")
    return 1 if arguments.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
