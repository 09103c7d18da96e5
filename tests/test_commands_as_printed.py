"""Commands work as the docs print them: every `flask --app wsgi` line names the
venv's flask, and a Python without Capture's packages gets one line, not a traceback."""

import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from config import ROOT

DOCS = [ROOT / "README.md", ROOT / "SECURITY.md", *sorted((ROOT / "docs").rglob("*.md"))]
# What a command's output tells the user to type (click.echo lines).
HINTS = sorted((ROOT / "capture").rglob("*.py"))
BARE_FLASK = re.compile(r"(?<![\w/.])flask --app wsgi")
ONE_LINE = re.compile(r"^Capture's packages are not installed for \S+ \(no module '(\w+)'\): "
                      r"run 'make run' first or use \.venv/bin/flask --app wsgi …$")


def test_every_flask_command_in_the_docs_starts_with_the_venv():
    bare = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
            for path in DOCS
            for number, line in enumerate(path.read_text().splitlines(), 1)
            if BARE_FLASK.search(line)]
    assert bare == []
    assert ".venv/bin/flask --app wsgi init" in (ROOT / "README.md").read_text()


def test_every_flask_command_a_command_prints_starts_with_the_venv():
    bare = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
            for path in HINTS
            for number, line in enumerate(path.read_text().splitlines(), 1)
            if "echo(" in line and BARE_FLASK.search(line)]
    assert bare == []


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> Path:
    """A Python with none of Capture's packages: a fresh venv of the same interpreter."""
    folder = tmp_path_factory.mktemp("bare-venv")
    venv.create(folder, with_pip=False)
    return folder / "bin" / "python"


def run(python: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin"})


def test_importing_wsgi_without_flask_says_what_to_do_in_one_line(bare_python):
    result = run(bare_python, "-c", "import wsgi")
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert ONE_LINE.match(lines[0]).group(1) == "flask"


def test_a_flask_from_elsewhere_without_the_rest_says_what_to_do_in_one_line(
        bare_python, tmp_path):
    """What the review met: a system-wide `flask` (Flask and its own dependencies, not
    SQLAlchemy and the rest) running `flask --app wsgi …`."""
    site_packages = Path(sys.modules["flask"].__file__).parents[1]
    only_flask = tmp_path / "only-flask"
    only_flask.mkdir()
    for package in ("flask", "werkzeug", "jinja2", "markupsafe", "itsdangerous", "click",
                    "blinker"):
        (only_flask / package).symlink_to(site_packages / package)
    bare_site = next((bare_python.parents[1] / "lib").glob("python3*/site-packages"))
    (bare_site / "only_flask.pth").write_text(f"{only_flask}\n")
    result = run(bare_python, "-m", "flask", "--app", "wsgi", "pages", "list")
    lines = result.stderr.splitlines()
    assert result.returncode == 1
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert ONE_LINE.match(lines[0]).group(1) == "sqlalchemy"


def test_config_imports_with_any_python(bare_python):
    assert run(bare_python, "-c", "import config; print(config.Config.BASE_URL)").stdout \
        == "http://127.0.0.1:5000\n"
