"""The list import at 100,000 rows: time, rows a second and peak memory.

    .venv/bin/python bench/import_100k.py                 # 100,000 rows, SQLite
    .venv/bin/python bench/import_100k.py --rows 20000 --database postgresql+psycopg://…

Writes a CSV (half the rows consent, half must confirm; every 100th row is bad, every
50th repeats an earlier address), imports it into a fresh database with
`capture.leads.imports.importer.import_file` under tracemalloc, and checks the counts. Exit status 1
when a count is wrong or Python's peak allocations pass --max-mb (streaming broke).
Everything goes to a temporary folder that is removed afterwards (unless --keep).
"""

import argparse
import csv
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ensure_venv_python  # noqa: E402


def write_csv(path: Path, rows: int) -> dict[str, int]:
    """The file, and the counts its import must give."""
    expected = {"rows": rows, "rejected": 0, "repeated": 0, "created": 0}
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Email", "Name", "Country", "Consent", "utm_source"])
        for i in range(rows):
            if i % 100 == 99:
                email, kind = f"broken-{i}", "rejected"
            elif i % 50 == 49:
                email, kind = f"person{i - 25}@example.com", "repeated"
            else:
                email, kind = f"person{i}@example.com", "created"
            expected[kind] += 1
            writer.writerow([email, f"Person {i}", ("DE", "FR", "US")[i % 3],
                             "yes" if i % 2 else "no", "list"])
    return expected


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database", help="a SQLAlchemy URL (default: a new SQLite file)")
    parser.add_argument("--max-mb", type=float, default=64.0,
                        help="fail above this peak of Python allocations (default 64)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    options = parser.parse_args()
    ensure_venv_python()

    from capture import create_app
    from capture.leads.imports import importer as imports
    from capture.db import db
    from tests.conftest import create_page

    folder = Path(tempfile.mkdtemp(prefix="capture-import-"))
    try:
        path = folder / "list.csv"
        expected = write_csv(path, options.rows)
        app = create_app({
            "INSTANCE_PATH": str(folder / "instance"), "TESTING": True,
            "DATABASE_URL": options.database or f"sqlite:///{folder / 'bench.db'}",
        })
        with app.app_context():
            db.create_all()
        create_page(app, slug="bench", sequence="welcome")
        with app.app_context():
            tracemalloc.start()
            started = time.perf_counter()
            report = imports.import_file(path, "bench")
            seconds = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1] / 1024 / 1024
            tracemalloc.stop()
            if options.database:
                db.drop_all()
        got = {key: getattr(report, key) for key in expected}
        print(f"{report.rows:,} rows in {seconds:.1f} s ({report.rows / seconds:,.0f} rows/s); "
              f"peak Python allocations {peak:.1f} MB")
        print("\n".join(report.lines()))
        ok = got == expected and peak <= options.max_mb
        if got != expected:
            print(f"counts differ: expected {expected}, got {got}")
        if peak > options.max_mb:
            print(f"peak {peak:.1f} MB is above --max-mb {options.max_mb}")
        return 0 if ok else 1
    finally:
        if options.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
