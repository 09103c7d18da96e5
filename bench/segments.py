"""Time counting a segment on a 1,000,000-lead SQLite database: `count_audience` of
pages + sources + tags + clicked-within-30-days (the target is under 500 ms), and of
each key alone, with SQLite's query plan. It prints the figures; it asserts nothing.

    .venv/bin/python bench/segments.py                        # 1M leads, built once (~4 min)
    .venv/bin/python bench/segments.py --leads 100000 --database /tmp/seg.db

The database is `bench/generate.py`'s (leads, visits, enrolments, deliveries, events
over 90 days) plus what segments read: the leads spread over four pages (their first
opt-ins; one in ten with a later opt-in on another page), 0-3 tags per lead from twelve
names (about a million tag rows, a few names common, most rare) and human and machine
clicks by 15 % of the leads over 90 days. It is kept (with a
`.ready` file beside it) and reused by the next run of the same size.
"""

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402

PAGES = ["webinar", "ebook", "course"]
# Tag names and their weights: a few common ones, most rare.
TAGS = [("customer", 30), ("newsletter", 25), ("vip", 10), ("webinar-2026", 8),
        ("lead-magnet", 7), ("beta", 5), ("churn-risk", 4), ("partner", 3),
        ("podcast", 3), ("survey", 2), ("black-friday", 2), ("press", 1)]
SEGMENT = {"pages": ["webinar", "ebook"], "sources": ["google", "twitter", "newsletter"],
           "tags": {"any": ["vip", "customer"]}, "clicked": {"within_days": 30}}
BATCH = 20_000


def _flask(env: dict, *args: str) -> None:
    """`flask --app wsgi ARGS` with this Python (the bench may run from any checkout)."""
    subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=common.ROOT,
                   env=env, check=True, capture_output=True, text=True, timeout=600)


def _insert(connection, table, rows) -> int:
    """executemany in batches; how many rows went in."""
    batch, total = [], 0
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            connection.execute(table.insert(), batch)
            total += len(batch)
            batch = []
    if batch:
        connection.execute(table.insert(), batch)
        total += len(batch)
    connection.commit()
    return total


def add_segment_data(leads: int, seed: int = 7) -> None:
    """Pages, tags and recent clicks on top of generate.py's rows (in an app context)."""
    from sqlalchemy import exists, func, insert, literal, select, update

    from capture import clock
    from capture.db import db
    from capture.leads.optins import COPIED
    from capture.models import Event, Lead, LeadTag, Optin, Page

    rng = random.Random(seed)
    now = clock.utcnow()
    connection = db.engine.connect()
    connection.exec_driver_sql("PRAGMA synchronous=OFF")
    started = time.perf_counter()
    page_ids = []
    for slug in PAGES:
        page_ids.append(connection.execute(Page.__table__.insert().values(
            slug=slug, title=slug.title(), headline="", body="", fields=[], button="Go",
            consent="", double_opt_in=False, thank_you="", review="auto", rules={},
            payout=0, currency="USD", template="default.html", published=True,
            allowed_origins=[], tags=[], created_at=now, updated_at=now,
        )).inserted_primary_key[0])
    # Each lead's first opt-in (generate.py writes the leads alone), as the migration
    # to several opt-ins per lead does.
    leads_table = Lead.__table__
    connection.execute(insert(Optin).from_select(
        ["lead_id", "first", *COPIED],
        select(leads_table.c.id, literal(True), *(leads_table.c[key] for key in COPIED))
        .where(~exists().where(Optin.lead_id == leads_table.c.id))))
    # Four pages: generate.py's own and these three, by lead id.
    for n, page_id in enumerate(page_ids, start=1):
        connection.execute(update(Lead).where(Lead.id % 4 == n).values(page_id=page_id))
        connection.execute(update(Optin).where(Optin.first.is_(True), Optin.lead_id % 4 == n)
                           .values(page_id=page_id))
    connection.commit()
    first, last = connection.execute(select(func.min(Lead.id), func.max(Lead.id))).one()

    def later_optin_rows():
        for lead_id in range(first, last + 1, 10):
            # Never the lead's first page (page_ids[n - 1] for lead_id % 4 == n, else
            # generate.py's page).
            at = now - timedelta(days=rng.random() * 30)
            yield {"lead_id": lead_id, "page_id": page_ids[lead_id % 4 % 3],
                   "first": False, "imported": False, "created_at": at,
                   "consent_text": "", "consent_at": at, "review": "approved",
                   "review_reason": ""}

    later = _insert(connection, Optin.__table__, later_optin_rows())
    names, weights = zip(*TAGS)

    def tag_rows():
        for lead_id in range(first, last + 1):
            count = rng.choices((0, 1, 2, 3), (40, 30, 20, 10))[0]
            for tag in set(rng.choices(names, weights, k=count)):
                yield {"lead_id": lead_id, "tag": tag, "cause": "import",
                       "created_at": now - timedelta(days=rng.random() * 90)}

    tags = _insert(connection, LeadTag.__table__, tag_rows())

    def click_rows():
        for lead_id in rng.sample(range(first, last + 1), (last - first + 1) * 15 // 100):
            yield {"lead_id": lead_id, "page_id": None, "kind": "click",
                   "created_at": now - timedelta(days=rng.random() * 90),
                   "delivery_id": None, "machine": rng.random() < 1 / 6,
                   "data": {"url": "https://example.com/offer"}}

    clicks = _insert(connection, Event.__table__, click_rows())
    connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    print(f"  + {len(PAGES)} pages, {later:,} later opt-ins, {tags:,} tags, {clicks:,} "
          f"clicks in {time.perf_counter() - started:.1f} s")


def build(database: Path, leads: int, env: dict) -> None:
    """A fresh database: schema and pages, generate.py's rows, then segment data."""
    for path in database.parent.glob(database.name + "*"):
        path.unlink()
    print(f"Building {database} with {leads:,} leads …")
    _flask(env, "init")
    _flask(env, "pages", "import", str(common.BENCH / "pages.json"))
    from bench import generate
    from capture import create_app

    with create_app().app_context():
        generate.generate(leads=leads, log=print)
        add_segment_data(leads)


def _timings(function, repeat: int) -> tuple[list[float], list[float], object]:
    """Wall and CPU milliseconds of each call (CPU moves less when the machine is
    shared: compare machines by it), and the last result."""
    wall, cpu, result = [], [], None
    for _ in range(repeat):
        started, cpu_started = time.perf_counter(), time.process_time()
        result = function()
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - cpu_started) * 1000)
    return wall, cpu, result


def measure(repeat: int) -> None:
    """Print the count and its times for the bench segment and each key alone."""
    from sqlalchemy import func, select

    from capture.db import db
    from capture.models import Lead
    from capture.segments import query
    from capture.segments.language import parse

    total = db.session.scalar(select(func.count(Lead.id)))
    load = os.getloadavg()[0]
    print(f"\n{total:,} leads; count_audience, {repeat} runs each (first run included); "
          f"load average {load:.1f} on {os.cpu_count()} CPUs")
    print(f"{'segment':<62} {'count':>9} {'min ms':>8} {'median':>8} {'max':>8} "
          f"{'CPU ms':>8}")
    cases = [(str(SEGMENT), SEGMENT), ("{} (every subscribed lead)", {})]
    cases += [(f"{key}: {value}", {key: value}) for key, value in SEGMENT.items()]
    for label, mapping in cases:
        segment = parse(mapping)
        wall, cpu, count = _timings(lambda s=segment: query.count_audience(s), repeat)
        print(f"{label[:62]:<62} {count:>9,} {min(wall):>8.1f} "
              f"{statistics.median(wall):>8.1f} {max(wall):>8.1f} "
              f"{statistics.median(cpu):>8.1f}")
    segment = parse(SEGMENT)
    stmt = query.count_statement(segment, audience=True)
    compiled = stmt.compile(db.engine, compile_kwargs={"literal_binds": True})
    print("\nQuery plan of the bench segment:")
    for row in db.session.execute(db.text(f"EXPLAIN QUERY PLAN {compiled}")):
        print("  ", row[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", type=Path, default=common.BENCH / "out" / "segments.db")
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--rebuild", action="store_true", help="build the database again")
    args = parser.parse_args(argv)

    database = args.database.resolve()
    database.parent.mkdir(parents=True, exist_ok=True)
    workdir = database.parent / (database.stem + "-work")
    common.install_sequences(workdir)
    env = common.stack_env(workdir, database, base_url="http://127.0.0.1:5000", smtp_port=25)
    os.environ.update(env)
    ready = database.parent / (database.name + ".ready")
    if args.rebuild or not ready.exists() or ready.read_text() != str(args.leads):
        started = time.perf_counter()
        build(database, args.leads, env)
        ready.write_text(str(args.leads))
        print(f"built in {time.perf_counter() - started:.0f} s")
    from capture import create_app

    with create_app().app_context():
        measure(args.repeat)


if __name__ == "__main__":
    main()
