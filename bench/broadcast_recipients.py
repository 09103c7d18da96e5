"""A broadcast to every subscribed lead of a 1,000,000-lead SQLite database: the time
to take its recipients (target < 30 s), the longest SQLite write-lock hold of a chunk
(target < 100 ms) and the opt-in p99 while the take runs (against the same opt-ins
before it); then its sending by two scheduler processes to the bench's SMTP sink
(target ≥ 1,000 emails/s) and their peak RSS (target ≤ 120 MB). It prints the
figures; it asserts nothing.

    .venv/bin/python bench/broadcast_recipients.py                    # 1M leads (~5 min to build)
    .venv/bin/python bench/broadcast_recipients.py --leads 50000 --send 5000

The database is bench/segments.py's (kept and reused by both); each run works on a
copy of it, so every take starts from the same rows.
"""

import argparse
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402

OPTIN_SLUG = "bench"
# Opt-ins left out of the figures: the first requests of a process are slow.
WARM_UP = 30
# The sink runs on the Python running this bench (which has the app's dependencies).
common.PYTHON = Path(sys.executable)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else 0.0


# --- workers: each runs as a process of its own with the stack's environment -----------

def worker_optin(stop_file: Path) -> dict:
    """Opt in, again and again, through the real form (GET for its tokens, POST) with
    the test client, until `stop_file` exists: each opt-in's latency in ms, by phase
    (a `phase` file beside it names the current one)."""
    from capture import create_app

    app = create_app()
    client = app.test_client()
    phase_file = stop_file.with_suffix(".phase")
    latencies: dict[str, list[float]] = {}
    number = 0
    phase_file.write_text("warm-up")
    while not stop_file.exists():
        if number == WARM_UP:
            phase_file.write_text("before")
        page = client.get(f"/p/{OPTIN_SLUG}").get_data(as_text=True)
        tokens = dict(re.findall(r'name="(csrf_token|started)" type="hidden" value="([^"]*)"',
                                 page))
        number += 1
        started = time.perf_counter()
        answer = client.post(f"/p/{OPTIN_SLUG}", data={
            **tokens, "name": "Opt", "email": f"optin{number}-{time.time_ns()}@example.com",
            "consent": "y"})
        elapsed = (time.perf_counter() - started) * 1000
        phase = phase_file.read_text()
        if answer.status_code not in (200, 303):
            latencies.setdefault(f"{phase}-errors", []).append(answer.status_code)
        latencies.setdefault(phase, []).append(elapsed)
        time.sleep(0.005)
    return latencies


def worker_send(quota: int) -> dict:
    """Scheduler ticks until `quota` emails went or nothing is queued: emails per
    second, CPU and peak RSS of this process."""
    from sqlalchemy import select

    from capture.db import db
    from capture.mail import engine
    from capture.models import Delivery

    started, cpu, sent, ticks = time.time(), time.process_time(), 0, 0
    while sent < quota:
        summary = engine.tick()
        sent += summary.sent
        ticks += 1
        if not summary.sent and db.session.scalar(
                select(Delivery.id).where(Delivery.status == "queued").limit(1)) is None:
            break
    return {"sent": sent, "ticks": ticks, "started": started, "ended": time.time(),
            "cpu_s": time.process_time() - cpu,
            # VmHWM: ru_maxrss would carry over this bench's own peak (Linux keeps
            # it across exec).
            "maxrss_kb": common.peak_rss_kb(os.getpid())}


# --- the take ---------------------------------------------------------------------------

class LockWatch:
    """The SQLite write lock of each transaction of this process: from its first
    write statement to the end of its commit (the driver begins it right before that
    first write, BEGIN IMMEDIATE)."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.holds: list[float] = []
        self._started: float | None = None

    def _before(self, conn, cursor, statement, *args):
        if self._started is None and not statement.lstrip().upper().startswith("SELECT"):
            self._started = time.perf_counter()

    def end(self) -> None:
        if self._started is not None:
            self.holds.append((time.perf_counter() - self._started) * 1000)
        self._started = None

    def __enter__(self):
        from sqlalchemy import event

        event.listen(self.engine, "before_cursor_execute", self._before)
        return self

    def __exit__(self, *exc):
        from sqlalchemy import event

        event.remove(self.engine, "before_cursor_execute", self._before)


def take(database: Path) -> dict:
    """Start a broadcast to every subscribed lead and take its recipients, chunk by
    chunk, timing each chunk's write lock."""
    from sqlalchemy import event, func, select

    from capture import clock
    from capture.db import db
    from capture.mail import broadcast_sending
    from capture.models import Broadcast, Delivery
    from capture.segments import query
    from capture.segments.language import parse

    now = clock.utcnow()
    audience = query.count_audience(parse({}))
    db.session.add(Broadcast(name="bench", state="sending", subject="Bench", body="Hello.",
                             segment={}, file_hash="0" * 64, send_at=now, created_at=now,
                             started_at=now))
    db.session.commit()
    broadcast_id = db.session.scalar(select(Broadcast.id))
    watch = LockWatch(db.engine)
    event.listen(db.engine, "commit", lambda conn: watch.end())
    event.listen(db.engine, "rollback", lambda conn: watch.end())
    with watch:
        started = time.perf_counter()
        # As the scheduler takes them (pauses between chunks included), in one go.
        broadcast_sending.take_all(now, seconds=3600)
        seconds = time.perf_counter() - started
        chunks = len(watch.holds) - 1
    taken = db.session.scalar(select(func.count()).select_from(Delivery)
                              .where(Delivery.broadcast_id == broadcast_id))
    return {"audience": audience, "taken": taken, "seconds": seconds, "chunks": chunks,
            "lock_max_ms": max(watch.holds, default=0),
            "lock_p99_ms": _percentile(watch.holds, 0.99),
            "lock_median_ms": statistics.median(watch.holds) if watch.holds else 0}


def _worker(env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--worker", *args], cwd=common.ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=3600)
    if process.returncode:
        raise RuntimeError(f"worker failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", type=Path, default=common.BENCH / "out" / "segments.db")
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--send", type=int, default=20_000,
                        help="emails the two scheduler processes send (20,000)")
    parser.add_argument("--chunk", type=int, help="CAPTURE_BROADCAST_TAKE_ROWS")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        from capture import create_app

        with create_app().app_context():
            kind, value = args.worker
            result = (worker_optin(Path(value)) if kind == "optin"
                      else worker_send(int(value)))
        print(json.dumps(result))
        return

    from bench import segments

    source = args.database.resolve()
    source.parent.mkdir(parents=True, exist_ok=True)
    workdir = source.parent / "broadcast-work"
    workdir.mkdir(exist_ok=True)
    common.install_sequences(workdir)
    ready = source.parent / (source.name + ".ready")
    build_env = common.stack_env(source.parent / (source.stem + "-work"), source,
                                 base_url="http://127.0.0.1:5000", smtp_port=25)
    if not ready.exists() or ready.read_text() != str(args.leads):
        common.install_sequences(source.parent / (source.stem + "-work"))
        os.environ.update(build_env)
        started = time.perf_counter()
        segments.build(source, args.leads, build_env)
        ready.write_text(str(args.leads))
        print(f"built in {time.perf_counter() - started:.0f} s")
    with sqlite3.connect(source) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    database = workdir / "broadcast.db"
    for path in workdir.glob("broadcast.db*"):
        path.unlink()
    shutil.copyfile(source, database)
    sink = common.Sink(workdir)
    extra = {"CAPTURE_BROADCAST_TAKE_ROWS": str(args.chunk)} if args.chunk else {}
    env = common.stack_env(workdir, database, base_url="http://127.0.0.1:5000",
                           smtp_port=sink.port, extra=extra)
    os.environ.update(env)
    try:
        from capture import create_app

        stop_file = workdir / "optin.stop"
        stop_file.unlink(missing_ok=True)
        stop_file.with_suffix(".phase").unlink(missing_ok=True)
        optins = _worker(env, "optin", str(stop_file))
        time.sleep(8)  # warm-up, then opt-ins before the take: the baseline
        stop_file.with_suffix(".phase").write_text("during")
        with create_app().app_context():
            taken = take(database)
        stop_file.touch()
        latencies = _result(optins)
        before, during = latencies.get("before", []), latencies.get("during", [])
        print(f"\nTaking the recipients of a broadcast to every subscribed lead "
              f"({taken['audience']:,}: of the {args.leads:,} leads built, and the "
              "bench's own opt-ins):")
        print(f"  {taken['taken']:,} recipients in {taken['seconds']:.1f} s "
              f"({taken['chunks']} chunks of {env.get('CAPTURE_BROADCAST_TAKE_ROWS', 2000)} "
              f"leads; target < 30 s)")
        print(f"  write lock per chunk: median {taken['lock_median_ms']:.1f} ms, p99 "
              f"{taken['lock_p99_ms']:.1f} ms, max {taken['lock_max_ms']:.1f} ms "
              "(target < 100 ms)")
        print(f"  opt-in (form POST, in-process) before: {len(before)} p50 "
              f"{_percentile(before, .5):.1f} ms p99 {_percentile(before, .99):.1f} ms; "
              f"during: {len(during)} p50 {_percentile(during, .5):.1f} ms p99 "
              f"{_percentile(during, .99):.1f} ms; errors "
              f"{len(latencies.get('during-errors', []))}")

        env_send = {**env, "CAPTURE_SEND_BATCH_SIZE": "1000",
                    "CAPTURE_SEND_RATE_PER_MINUTE": str(10_000_000)}
        sink.reset()
        senders = [_worker(env_send, "send", str(args.send // 2)) for _ in range(2)]
        results = [_result(process) for process in senders]
        seconds = max(r["ended"] for r in results) - min(r["started"] for r in results)
        sent = sum(r["sent"] for r in results)
        mail = sink.wait_for(sent, timeout=30)
        print(f"\nSending it: two scheduler processes, {sent:,} emails in {seconds:.1f} s = "
              f"{sent / seconds:,.0f} emails/s (target ≥ 1,000); "
              f"{1000 * sum(r['cpu_s'] for r in results) / max(sent, 1):.2f} ms CPU/email; "
              f"sink got {mail['messages']:,}, duplicates {mail['duplicates']}")
        print(f"  scheduler peak RSS {max(r['maxrss_kb'] for r in results) / 1024:.0f} MB "
              f"with {taken['taken']:,} recipients queued (target ≤ 120 MB)")
    finally:
        sink.stop()


if __name__ == "__main__":
    main()
