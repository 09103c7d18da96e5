"""The numbers of broadcasts and steps at a million leads: how long they take.

    .venv/bin/python bench/broadcast_numbers.py                  # 1,000,000 leads, SQLite
    .venv/bin/python bench/broadcast_numbers.py --leads 20000    # a quick look

Makes (once; kept in --workdir and reused) a database with `generate.py` (N leads,
visits, events, sequence deliveries), then adds a broadcast sent to every subscribed
lead (~0.7 N deliveries, each with its `send` event), human opens by a fifth and
clicks by a twentieth of them, machine clicks by a hundredth, a second, small
broadcast, and `--upgrades` upgrades (half by leads who clicked the broadcast, the
rest by others). Then it times, median
and max of `--reps` runs, and PRINTS:

- `broadcast_numbers()` for every broadcast (the dashboard list, `broadcasts list`),
- `broadcast_numbers([id])` for the big one (its detail page, the API),
- `sequence_steps.steps()` (the Sequences page, `report --by step`),
- the last-click attribution of every upgrade (`attribution.credited`).
"""

import argparse
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402

BROADCAST = "bench-numbers"


def _timed(function, reps: int) -> tuple[float, float, object]:
    """Median and max seconds of `reps` calls, and the last result."""
    seconds, result = [], None
    for _ in range(reps):
        started = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), max(seconds), result


def _stamp(moment) -> str:
    """A time as SQLAlchemy stores it in SQLite."""
    return moment.isoformat(" ", "microseconds")


def build(app, leads: int, upgrades: int) -> None:
    """The generated database, then the broadcasts, their events and the upgrades."""
    from sqlalchemy import func, select, text

    from bench.generate import generate
    from capture import clock
    from capture.db import db
    from capture.models import Broadcast, Lead

    with app.app_context():
        if not db.session.scalar(select(func.count()).select_from(Lead)):
            print(f"generating {leads:,} leads (a few minutes at 1M) …", flush=True)
            db.session.rollback()  # generate() runs transactions of its own
            generate(leads=leads, log=lambda *a: print(*a, flush=True))
        if db.session.scalar(select(Broadcast.id).where(Broadcast.name == BROADCAST)):
            return
        print("adding the broadcasts, their events and the upgrades …", flush=True)
        started = time.perf_counter()
        sent = clock.utcnow() - timedelta(days=2)
        values = {"sent": _stamp(sent), "open": _stamp(sent + timedelta(hours=1)),
                  "click": _stamp(sent + timedelta(hours=2)),
                  "upgrade": _stamp(sent + timedelta(days=1)), "name": BROADCAST}
        for name, every in ((BROADCAST, 1), ("bench-small", 1000)):
            broadcast = Broadcast(name=name, state="sent", subject=name, body="Hello.",
                                  file_hash="0" * 64, send_at=sent, started_at=sent,
                                  finished_at=sent)
            db.session.add(broadcast)
            db.session.flush()
            db.session.execute(text(
                "INSERT INTO deliveries (lead_id, broadcast_id, sequence, step, filename, "
                "status, attempts, created_at, sent_at, subject, error) "
                "SELECT id, :broadcast, '', :name, :name || '.md', 'sent', 1, :sent, :sent, "
                ":name, '' FROM leads WHERE subscription = 'subscribed' AND id % :every = 0"),
                {**values, "broadcast": broadcast.id, "name": name, "every": every})
        big = db.session.scalar(select(Broadcast.id).where(Broadcast.name == BROADCAST))
        for kind, at, modulo, machine in (("send", "sent", 1, 0), ("open", "open", 5, 0),
                                          ("click", "click", 20, 0),
                                          ("click", "click", 100, 1)):
            db.session.execute(text(
                "INSERT INTO events (lead_id, page_id, kind, created_at, delivery_id, machine, "
                "data) SELECT d.lead_id, NULL, :kind, :at, d.id, :machine, '{}' "
                "FROM deliveries d WHERE d.broadcast_id = :broadcast AND d.lead_id % :modulo = 0"),
                {"kind": kind, "at": values[at], "machine": machine, "broadcast": big,
                 "modulo": modulo})
        # Half the upgrades by leads who clicked the broadcast, half by others.
        db.session.execute(text(
            "INSERT INTO upgrades (lead_id, txn, amount, currency, source, created_at) "
            "SELECT lead_id, 'bench-' || lead_id, 19.90, 'USD', 'postback', :upgrade "
            "FROM deliveries WHERE broadcast_id = :broadcast AND lead_id % 20 = 0 LIMIT :n"),
            {**values, "broadcast": big, "n": upgrades // 2})
        db.session.execute(text(
            "INSERT INTO upgrades (lead_id, txn, amount, currency, source, created_at) "
            "SELECT id, 'bench-' || id, 49.00, 'USD', 'postback', :upgrade "
            "FROM leads WHERE id % 20 = 7 LIMIT :n"), {**values, "n": upgrades - upgrades // 2})
        db.session.commit()
        print(f"  done in {time.perf_counter() - started:.1f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--upgrades", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--workdir", type=Path,
                        help="where the database is kept (default bench/out/numbers-<N>)")
    options = parser.parse_args()
    try:
        import flask  # noqa: F401 - the app's dependencies are here
    except ImportError:
        common.ensure_venv_python()

    from sqlalchemy import func, select

    from capture import create_app
    from capture.db import db
    from capture.models import Broadcast, Delivery, Event, Lead, Upgrade
    from capture.numbers import attribution, broadcasts, sequence_steps

    workdir = (options.workdir or common.BENCH / "out" / f"numbers-{options.leads}").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    common.install_sequences(workdir)
    app = create_app({"INSTANCE_PATH": str(workdir / "instance"),
                      "DATABASE_URL": f"sqlite:///{workdir / 'capture.db'}",
                      "SEQUENCES_DIR": str(workdir / "sequences")})
    with app.app_context():
        db.create_all()
        if db.session.scalar(select(func.count()).select_from(Lead)) == 0:
            result = app.test_cli_runner().invoke(
                args=["pages", "import", str(common.BENCH / "pages.json")])
            if result.exit_code:
                print(result.output)
                return 1
    build(app, options.leads, options.upgrades)

    with app.app_context():
        counts = {name: db.session.scalar(select(func.count()).select_from(model))
                  for name, model in (("leads", Lead), ("deliveries", Delivery),
                                      ("events", Event), ("upgrades", Upgrade))}
        print(", ".join(f"{count:,} {name}" for name, count in counts.items()))
        big = db.session.scalar(select(Broadcast.id).where(Broadcast.name == BROADCAST))
        rows = attribution.credited().subquery()
        credited = select(func.count(rows.c.delivery_id)).scalar_subquery()
        cases = {
            "broadcast_numbers() (every broadcast)": broadcasts.broadcast_numbers,
            "broadcast_numbers([big]) (one broadcast)":
                lambda: broadcasts.broadcast_numbers([big]),
            "sequence_steps.steps() (every step)": sequence_steps.steps,
            "attribution of every upgrade": lambda: db.session.scalar(select(credited)),
        }
        for label, function in cases.items():
            median, worst, result = _timed(function, options.reps)
            print(f"{label:<44} median {median * 1000:8.1f} ms, max {worst * 1000:8.1f} ms")
        numbers = broadcasts.broadcast_numbers([big])[big]
        print(f"{BROADCAST}: {numbers.recipients:,} recipients, {numbers.opens:,} opened, "
              f"{numbers.clicks:,} clicked, {numbers.upgrades:,} upgrades, "
              f"revenue {numbers.revenue:,.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
