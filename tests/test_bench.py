"""The benchmark scripts still work: each runs in its smoke mode (toy sizes, about a
minute in all). Nothing here looks at a timing; bench/ measures, the suite checks."""

import subprocess
import sys
from pathlib import Path

import pytest

# The benchmark's own gunicorn and load generator: `make test-fast` leaves them out.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    return result, out


def test_the_bench_smoke_run_finishes_without_a_failure(smoke_run):
    result, _ = smoke_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.parametrize("scenario", [
    "floor: bare WSGI app", "opt-in page view", "page view, two-variant test",
    "opt-in submit", "double opt-in",
    "sending: ", "sink answering 20 ms late", "open pixel", "click redirect", "metrics.report()",
    "dashboard overview", "scheduler: idle tick", "scheduler: claim",
])
def test_the_bench_table_has_a_row_for_each_scenario(smoke_run, scenario):
    _, out = smoke_run
    table = (out / "results.md").read_text()
    assert any(line.startswith("|") and scenario in line for line in table.splitlines())


def test_the_import_bench_streams_a_small_file(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "import_100k.py"), "--rows", "300"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_the_broadcast_bench_takes_and_sends_a_small_list(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "broadcast_recipients.py"), "--leads", "2000",
         "--send", "200", "--database", str(tmp_path / "segments.db")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "recipients in" in result.stdout and "duplicates 0" in result.stdout


def test_the_broadcast_numbers_bench_runs_at_toy_size(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "broadcast_numbers.py"), "--leads", "300",
         "--upgrades", "20", "--reps", "1", "--workdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "broadcast_numbers() (every broadcast)" in result.stdout
    assert "bench-numbers:" in result.stdout


def test_the_segments_bench_counts_on_a_small_database(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "segments.py"), "--leads", "300",
         "--repeat", "1", "--database", str(tmp_path / "segments.db")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Query plan of the bench segment" in result.stdout
