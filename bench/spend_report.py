"""What ad spend adds to a report: `spend.spend_by` over 90 days × 40 campaigns of cost
rows (3,600, a busy account's quarter) in a throw-away SQLite database, per grouping.
The rest of a report is `bench/run.py --only metrics` (8 ms at 1M leads from the
rollups); spend is read from its own small table, whatever the number of leads.

    .venv/bin/python bench/spend_report.py [--days 90] [--campaigns 40]
"""

import argparse
import random
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--campaigns", type=int, default=40)
    args = parser.parse_args()

    from capture import create_app
    from capture.db import db
    from capture.models import Cost, Page
    from capture.numbers import spend

    folder = tempfile.mkdtemp(prefix="capture-spend-")
    app = create_app({"SECRET_KEY": "x" * 32, "INSTANCE_PATH": folder,
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder}/bench.db"})
    rng = random.Random(1)
    with app.app_context():
        db.create_all()
        page = Page(slug="bench", title="Bench", fields=[], rules={})
        db.session.add(page)
        db.session.flush()
        first = date(2026, 1, 1)
        db.session.add_all(
            Cost(day=first + timedelta(days=day), source=f"source-{n % 8}",
                 campaign=f"campaign-{n}", page_id=page.id, currency="USD",
                 amount=Decimal(rng.randrange(100, 5000)) / 100)
            for day in range(args.days) for n in range(args.campaigns))
        db.session.commit()
        start = datetime.combine(first, datetime.min.time())
        end = start + timedelta(days=args.days)
        for by in (None, "page", "source", "campaign", "day"):
            timings = []
            for _ in range(5):
                began = time.perf_counter()
                for _ in range(20):
                    spend.spend_by(start, end, None, by)
                timings.append((time.perf_counter() - began) / 20 * 1000)
            print(f"spend by {by or 'total'}: median {sorted(timings)[2]:.2f} ms over "
                  f"{args.days * args.campaigns:,} cost rows")


if __name__ == "__main__":
    main()
