"""The floor plan of capture/, read from the source with `ast`: imports run one way
(no circle, nothing below reaches up to a view, a command or the app), blueprints do
not import each other, package __init__ files stay empty, every module says what it
owns in its first docstring line and stays short enough to read in one sitting."""

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "capture"

# The concerns below the views: they are called by blueprints, commands and the
# scheduler, never the other way round.
DOMAIN_PACKAGES = ("pages", "leads", "mail", "webhooks", "numbers", "access", "segments")
LOW_MODULES = ("db", "models", "clock", "markup", "links", "domains", "claims", "settings",
               "tag_names", "languages",
               "web")
# web/errors.py is the app's error handling: it sits above the rest of web/.
LOW_EXCEPTIONS = ("capture.web.errors",)
# What those may never import: the doors (views, commands, the scheduler), the app's
# error pages, and the app package itself (create_app).
UPWARD = ("capture.public", "capture.admin", "capture.api", "capture.commands",
          "capture.scheduler", "capture.web.errors")
VIEW_PACKAGES = ("capture.public", "capture.admin", "capture.api")
# Package __init__ files that hold more than their docstring: the app factory, the two
# view packages' blueprint objects, and the one function that registers the commands.
FULL_INITS = ("capture", "capture.admin", "capture.api", "capture.commands")
MAX_LINES = 420
# Modules allowed past MAX_LINES, each with its reason.
LONG_MODULES = {
    # The tables and their relations read best whole, in one file.
    "capture.models",
}


@dataclass(frozen=True)
class Import:
    """One arrow: `source` imports `target` (a module under capture/) on `line`,
    `deferred` when the import runs inside a function."""

    source: str
    target: str
    line: int
    deferred: bool

    def __str__(self) -> str:
        return f"{module_path(self.source)}:{self.line}: imports {self.target}"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_path(name: str) -> str:
    return str(MODULES[name].relative_to(ROOT))


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(encoding="utf-8"), str(path))
         for name, path in MODULES.items()}


def _absolute(source: str, node: ast.ImportFrom) -> str:
    """The module a `from … import` names, relative imports resolved."""
    if not node.level:
        return node.module or ""
    base = source.split(".")
    if not is_package(source):
        base = base[:-1]
    base = base[:len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _known(name: str) -> str | None:
    """The module under capture/ that `name` is, or lies in (a.b.c → a.b when c is
    a function of a.b); None outside capture/."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(source: str) -> Iterator[Import]:
    """Every import of a capture module by `source`, also those inside functions
    (deferred imports still make an arrow). `from capture import clock` imports the
    module capture.clock; `from capture import create_app` imports the package."""
    tree = TREES[source]
    in_functions = {id(inner) for node in ast.walk(tree)
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                    for inner in ast.walk(node)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [_known(alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(source, node)
            targets = [_known(f"{base}.{alias.name}") for alias in node.names]
        else:
            continue
        for target in dict.fromkeys(targets):
            if target is not None and target != source:
                yield Import(source, target, node.lineno, id(node) in in_functions)


IMPORTS = [arrow for name in MODULES for arrow in imports_of(name)]


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _registers_own_module(arrow: Import) -> bool:
    """A package that imports its own modules when it is registered (admin's
    init_app importing admin.auth so that its views join the blueprint) holds them;
    it does not depend on them. Imported at the top, they are a dependency."""
    return (arrow.deferred and is_package(arrow.source)
            and arrow.target.startswith(arrow.source + "."))


def find_cycles() -> list[list[str]]:
    """One cycle per strongly connected group of modules (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for arrow in IMPORTS:
        if not _registers_own_module(arrow):
            graph[arrow.source].add(arrow.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for child in sorted(graph[node]):
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in on_stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return [_cycle_in(group, graph) for group in groups]


def _cycle_in(group: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest way from the group's first module back to itself."""
    start = min(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node] & group):
            if child == start:
                return paths[node] + [start]
            if child not in paths:
                paths[child] = paths[node] + [child]
                queue.append(child)
    raise AssertionError(f"no cycle through {start}")


def blueprint_of(name: str) -> str | None:
    """The module whose Blueprint a view module adds its views to: itself when it
    makes one, the module it takes `bp` from otherwise; None for a helper."""
    tree = TREES[name]
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "Blueprint"):
            return name
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and any(a.name == "bp" for a in node.names):
            return _known(_absolute(name, node))
    return None


def blueprint_arrows() -> Iterator[tuple[Import, str, str]]:
    for arrow in IMPORTS:
        if not (within(arrow.source, VIEW_PACKAGES) and within(arrow.target, VIEW_PACKAGES)):
            continue
        mine, theirs = blueprint_of(arrow.source), blueprint_of(arrow.target)
        if mine and theirs and mine != theirs:
            yield arrow, mine, theirs


def test_the_reader_sees_every_kind_of_import() -> None:
    """The rules below pass trivially if imports go unseen: check a known few."""
    arrows = {(arrow.source, arrow.target, arrow.deferred) for arrow in IMPORTS}
    assert ("capture.models", "capture.db", False) in arrows  # from capture.db import db
    assert ("capture.models", "capture.clock", False) in arrows  # from capture import clock
    assert ("capture.admin", "capture.admin.auth", True) in arrows  # inside init_app
    assert ("capture.admin.auth", "capture.admin", False) in arrows  # from … import bp
    assert blueprint_of("capture.admin.auth") == "capture.admin"
    assert blueprint_of("capture.public.health") == "capture.public.health"
    assert blueprint_of("capture.api.errors") is None


def test_no_import_circle() -> None:
    cycles = [" -> ".join(cycle) for cycle in find_cycles()]
    assert not cycles, "import circles:\n" + "\n".join(cycles)


def concern_of(name: str) -> str:
    """The package a module belongs to (capture.mail.engine → capture.mail); a module
    directly in capture/ is a concern of its own."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else name


def test_no_circle_between_packages() -> None:
    """Packages depend on each other one way: leads/ (the opt-in enrols a lead) uses
    mail/, so mail/ never uses leads/; what both need lies below them both."""
    arrows: dict[tuple[str, str], Import] = {}
    for arrow in IMPORTS:
        source, target = concern_of(arrow.source), concern_of(arrow.target)
        if source != target and not _registers_own_module(arrow):
            arrows.setdefault((source, target), arrow)
    wrong = [f"{arrows[pair]} and {arrows[pair[::-1]]}" for pair in sorted(arrows)
             if pair[0] < pair[1] and pair[::-1] in arrows]
    assert not wrong, "two packages import each other:\n" + "\n".join(wrong)


def upward_imports(below: tuple[str, ...]) -> list[str]:
    return [str(arrow) for arrow in IMPORTS
            if within(arrow.source, below) and arrow.source not in LOW_EXCEPTIONS
            and (within(arrow.target, UPWARD) or arrow.target == "capture")]


def test_low_modules_import_nothing_above() -> None:
    wrong = upward_imports(tuple(f"capture.{name}" for name in LOW_MODULES))
    assert not wrong, "a low module imports a view, command or the app:\n" + "\n".join(wrong)


def test_domain_packages_import_nothing_above() -> None:
    wrong = upward_imports(tuple(f"capture.{name}" for name in DOMAIN_PACKAGES))
    assert not wrong, ("a domain module imports a view, command or the app:\n"
                       + "\n".join(wrong))


def test_no_blueprint_imports_another() -> None:
    wrong = [f"{arrow} (blueprint {mine} imports blueprint {theirs})"
             for arrow, mine, theirs in blueprint_arrows()]
    assert not wrong, "a blueprint imports another blueprint:\n" + "\n".join(wrong)


def test_web_imports_no_blueprint() -> None:
    """web/ (errors included) serves every blueprint; a blueprint gives web/errors
    its own answers (answer_errors_under, answer_unavailable) instead."""
    wrong = [str(arrow) for arrow in IMPORTS
             if within(arrow.source, ("capture.web",)) and blueprint_of(arrow.target)]
    assert not wrong, "web/ imports a blueprint:\n" + "\n".join(wrong)


def test_commands_import_no_view_and_not_the_app() -> None:
    wrong = [str(arrow) for arrow in IMPORTS
             if within(arrow.source, ("capture.commands",))
             and (arrow.target == "capture"
                  or (within(arrow.target, VIEW_PACKAGES) and blueprint_of(arrow.target)))]
    assert not wrong, "a command imports a view or the app package:\n" + "\n".join(wrong)


def test_package_inits_hold_only_their_docstring() -> None:
    wrong = [module_path(name) for name in MODULES
             if is_package(name) and name not in FULL_INITS
             and (len(TREES[name].body) != 1 or ast.get_docstring(TREES[name]) is None)]
    assert not wrong, "package __init__ with more than a docstring:\n" + "\n".join(wrong)


def first_docstring_line(tree: ast.Module) -> str:
    """The text on the docstring's opening line ("" without a docstring)."""
    raw = ast.get_docstring(tree, clean=False) or ""
    return raw.splitlines()[0].strip() if raw.strip() else ""


def test_every_module_says_what_it_owns() -> None:
    wrong = [module_path(name) for name, tree in TREES.items()
             if not first_docstring_line(tree)]
    assert not wrong, "module without a docstring on its first line:\n" + "\n".join(wrong)


def test_no_module_is_too_long() -> None:
    lengths = {name: len(path.read_text(encoding="utf-8").splitlines())
               for name, path in MODULES.items()}
    wrong = [f"{module_path(name)}: {count} lines" for name, count in lengths.items()
             if count > MAX_LINES and name not in LONG_MODULES]
    assert not wrong, (f"over {MAX_LINES} lines (split it, or list it in LONG_MODULES "
                       "with the reason):\n" + "\n".join(wrong))


def test_the_long_module_list_names_long_modules() -> None:
    """An entry in LONG_MODULES that has shrunk (or gone) is taken out."""
    for name in LONG_MODULES:
        assert name in MODULES, f"{name} is listed in LONG_MODULES but does not exist"
        count = len(MODULES[name].read_text(encoding="utf-8").splitlines())
        assert count > MAX_LINES, f"{name} has {count} lines: take it out of LONG_MODULES"
