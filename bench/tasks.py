"""In-process measurements. bench/run.py runs each as a process of its own, with the
stack's CAPTURE_* environment, so that its peak RSS is its own; each prints one JSON
line on standard output.

    python bench/tasks.py send                # one engine.tick(), timed
    python bench/tasks.py scheduler --reps 5  # idle ticks, claims, one full tick
    python bench/tasks.py metrics --reps 3    # capture.numbers.metrics.report() variants
    python bench/tasks.py tokens --limit 2000 # pixel and click paths of sent emails
    python bench/tasks.py counts --prefix P --since ISO  # what a load run stored
    python bench/tasks.py intake                      # fold in the queued sign-ups
    python bench/tasks.py variants --reps 5   # a page test's cost per page view
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _maxrss_kb() -> int:
    """This process's peak RSS: VmHWM, not ru_maxrss, which Linux carries over exec
    from the parent that started the process (a large bench parent would show)."""
    from bench.common import peak_rss_kb

    return peak_rss_kb(os.getpid()) or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


LAST_CPU = {"s": 0.0}


def _timed(function):
    """Wall seconds and the result; the CPU seconds this process used go to LAST_CPU."""
    cpu = time.process_time()
    started = time.perf_counter()
    result = function()
    elapsed = time.perf_counter() - started
    LAST_CPU["s"] = time.process_time() - cpu
    return elapsed, result


class SqlTrace:
    """Time every SQL statement the engine runs (summed per statement text), and give
    SQLite's query plan of the slowest ones."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.statements: dict[str, dict] = {}

    def _before(self, conn, cursor, statement, parameters, context, executemany):
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def _after(self, conn, cursor, statement, parameters, context, executemany):
        elapsed = time.perf_counter() - conn.info["bench_started"].pop()
        entry = self.statements.setdefault(statement, {"count": 0, "seconds": 0.0,
                                                       "parameters": parameters})
        entry["count"] += 1
        entry["seconds"] += elapsed

    def __enter__(self):
        from sqlalchemy import event

        event.listen(self.engine, "before_cursor_execute", self._before)
        event.listen(self.engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *exc):
        from sqlalchemy import event

        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "after_cursor_execute", self._after)

    def top(self, n: int = 6, plans: bool = True) -> list[dict]:
        """The slowest statements. A SELECT is run once more here with all its rows
        fetched, since a grouped query does much of its work while rows are fetched,
        after the cursor event fired: `seconds` is that complete run."""
        result = []
        for statement, entry in self.statements.items():
            item = {"sql": " ".join(statement.split()), "count": entry["count"],
                    "seconds": round(entry["seconds"], 4)}
            if statement.lstrip().upper().startswith("SELECT"):
                with self.engine.connect() as connection:
                    started = time.perf_counter()
                    connection.exec_driver_sql(statement, entry["parameters"]).all()
                    item["seconds"] = round((time.perf_counter() - started) * entry["count"], 4)
                    if plans and self.engine.dialect.name == "sqlite":
                        rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement,
                                                          entry["parameters"]).all()
                        item["plan"] = [row[-1] for row in rows]
            result.append(item)
        return sorted(result, key=lambda item: -item["seconds"])[:n]


def _stats(seconds: list[float]) -> dict:
    return {"runs": len(seconds), "median_s": statistics.median(seconds),
            "min_s": min(seconds), "max_s": max(seconds), "all_s": seconds}


def _warm_up() -> None:
    """What a running scheduler process has already done before the measured tick:
    the sequence files read and the version row written."""
    from capture import clock
    from capture.mail import work_queue
    from capture.mail.library import Library

    Library.current().all()
    work_queue.wake_changed_sequences(clock.utcnow())


def task_send(args) -> dict:
    """Ticks until nothing is due (one, when this is the only sender: its batch is
    as big as what is due): emails per second. Beside other senders a tick can find
    the rows it read claimed by another one meanwhile, and simply ticks again, as
    the scheduler does on its next run."""
    from sqlalchemy import func, select

    from capture import clock
    from capture.mail import engine
    from capture.db import db
    from capture.models import Enrollment

    def due() -> int:
        return db.session.scalar(select(func.count()).select_from(Enrollment).where(
            Enrollment.state == "active", Enrollment.next_due_at <= clock.utcnow()))

    _warm_up()
    started = time.time()
    cpu = time.process_time()
    summaries = [engine.tick()]
    while due():
        summaries.append(engine.tick())
    seconds = time.time() - started
    sent = sum(s.sent for s in summaries)
    return {"seconds": seconds, "cpu_s": time.process_time() - cpu, "sent": sent,
            "started": started, "ended": started + seconds, "ticks": len(summaries),
            "failed": sum(s.failed for s in summaries),
            "retried": sum(s.retried for s in summaries),
            "summary": summaries[0].line(),
            "emails_per_s": sent / seconds if seconds else None}


def task_scheduler(args) -> dict:
    """Scale of the scheduler: an idle tick (its parts timed too), claiming the due
    batch, and one full tick that sends it."""
    from sqlalchemy import func, select, update

    from capture import clock
    from capture.mail import engine, work_queue
    from capture.db import db
    from capture.models import Delivery, Enrollment, Lead

    _warm_up()
    counts = {
        "leads": db.session.scalar(select(func.count()).select_from(Lead)),
        "enrollments": db.session.scalar(select(func.count()).select_from(Enrollment)),
        "deliveries": db.session.scalar(select(func.count()).select_from(Delivery)),
    }
    now = clock.utcnow()
    due_ids = list(db.session.scalars(
        select(Enrollment.id).where(Enrollment.state == "active", Enrollment.next_due_at <= now)))
    # Enrolments that fall due while this runs would make the "idle" ticks send: they
    # are moved out of the way too, and put back as they were.
    soon = db.session.execute(
        select(Enrollment.id, Enrollment.next_due_at)
        .where(Enrollment.state == "active", Enrollment.next_due_at > now,
               Enrollment.next_due_at <= now + timedelta(hours=2))).all()
    db.session.commit()

    def set_due(ids, when):
        for start in range(0, len(ids), 5000):
            db.session.execute(update(Enrollment).where(Enrollment.id.in_(ids[start:start + 5000]))
                               .values(next_due_at=when, state="active", claimed_at=None))
        db.session.commit()

    # 1. Nothing due: the whole tick, and each of its steps.
    set_due(due_ids + [row.id for row in soon], now + timedelta(days=30))
    idle = []
    for _ in range(args.reps):
        seconds, summary = _timed(engine.tick)
        if summary.sent:
            raise SystemExit(f"an idle tick sent {summary.sent}")
        idle.append(seconds)
    with SqlTrace(db.engine) as trace:
        engine.tick()
    idle_sql = trace.top(6)
    parts = {}
    for name, step in (
        ("wake_changed_sequences", lambda: work_queue.wake_changed_sequences(clock.utcnow())),
        ("reap", lambda: work_queue.reap(clock.utcnow())),
        ("budget", lambda: work_queue.rate_budget(clock.utcnow())),
        ("claim_retries", lambda: work_queue.claim_retries(clock.utcnow(), args.batch)),
        ("claim_enrollments", lambda: work_queue.claim_enrollments(clock.utcnow(), args.batch)),
    ):
        times = []
        for _ in range(args.reps):
            seconds, _ = _timed(step)
            db.session.rollback()
            times.append(seconds)
        parts[name] = statistics.median(times)
    set_due(due_ids, now - timedelta(seconds=1))
    if soon:
        from sqlalchemy import bindparam

        db.session.execute(
            update(Enrollment.__table__).where(Enrollment.__table__.c.id == bindparam("key"))
            .values(next_due_at=bindparam("due")),
            [{"key": row.id, "due": row.next_due_at} for row in soon])
        db.session.commit()

    # 2. Claiming the due batch (given back after each run, untimed).
    claims = []
    claimed = 0
    for _ in range(args.reps):
        seconds, ids = _timed(lambda: work_queue.claim_enrollments(clock.utcnow(), args.batch))
        claims.append(seconds)
        claimed = len(ids)
        set_due(ids, now - timedelta(seconds=1))

    # 3. What a tick adds for `when:` and stop_on tags on the due batch (SQL only).
    conditions = _conditions_sql(due_ids, args.reps)

    # 4. One full tick that sends the due batch to the SMTP sink.
    seconds, summary = _timed(engine.tick)
    return {
        "conditions": conditions,
        "counts": counts, "due": len(due_ids), "batch": args.batch, "due_soon": len(soon),
        "idle_tick": _stats(idle), "idle_parts_median_s": parts, "idle_sql": idle_sql,
        "claim": {**_stats(claims), "claimed": claimed},
        "full_tick": {"seconds": seconds, "cpu_s": LAST_CPU["s"], "sent": summary.sent,
                      "summary": summary.line(),
                      "emails_per_s": summary.sent / seconds if seconds else None},
    }


# The `when:`s the bench evaluates: a tag, no other tag, a recent click and no upgrade
# (few leads hold: the query stops early), and one most leads hold for (every part of
# it is read for each lead).
BENCH_WHEN = [{"tags": {"any": ["vip"], "none": ["churned"]}, "clicked": {"within_days": 30},
               "upgraded": False},
              {"tags": {"none": ["churned"]}, "opened": False, "upgraded": False,
               "fields": {"country": ["US", "DE", "GB", "FR", "(none)"]}}]


def _seed_tags() -> int:
    """Tag a tenth of the leads `vip` and a fiftieth `churned` (once), so the `when:`
    reads a realistic lead_tags table."""
    from sqlalchemy import func, insert, literal, select

    from capture import clock
    from capture.db import db
    from capture.models import Lead, LeadTag

    if not db.session.scalar(select(func.count()).select_from(LeadTag)):
        for name, every in (("vip", 10), ("churned", 50)):
            db.session.execute(insert(LeadTag).from_select(
                ["lead_id", "tag", "cause", "created_at"],
                select(Lead.id, literal(name), literal("bench"), literal(clock.utcnow()))
                .where(Lead.id % every == 0)))
        db.session.commit()
    return db.session.scalar(select(func.count()).select_from(LeadTag))


def _conditions_sql(enrollment_ids: list[int], reps: int) -> dict:
    """The SQL a tick runs for a step with each BENCH_WHEN and a stop_on tag, for these
    due enrolments in the engine's chunks: per chunk, the stop tags of its leads, the
    step's references (pages, sequences, broadcasts named) and which leads it holds
    for. `sql`: the median of `reps` runs of all of it, rows fetched (the slowest
    `when:`); `sql_execute`: the statements' own time as the cursor reports it."""
    from types import SimpleNamespace

    from sqlalchemy import select

    from capture.db import db
    from capture.mail import condition_checks, engine
    from capture.mail.sequences import Sequence
    from capture.models import Enrollment
    from capture.segments import language

    tagged_rows = _seed_tags()
    lead_ids = list(db.session.scalars(
        select(Enrollment.lead_id).where(Enrollment.id.in_(enrollment_ids))))
    sequence = Sequence(name="bench", folder=None)
    variants = []
    for when in BENCH_WHEN:
        step = SimpleNamespace(when=language.parse(when), when_line=4, filename="02-x.md")
        totals, walls, holds, statements = [], [], 0, 0
        for _ in range(reps):
            started = time.perf_counter()
            with SqlTrace(db.engine) as trace:
                holds = 0
                for start in range(0, len(lead_ids), engine.CHUNK):
                    chunk = lead_ids[start:start + engine.CHUNK]
                    condition_checks.stop_tags_of(chunk, ["bought"])
                    condition_checks.reference_problems(sequence, step)
                    holds += len(condition_checks.matching(step, chunk))
            # SQLite does part of a SELECT's work while its rows are fetched, after the
            # cursor event: the whole time (rows fetched, Python included) bounds it.
            walls.append(time.perf_counter() - started)
            db.session.rollback()
            totals.append(sum(entry["seconds"] for entry in trace.statements.values()))
            statements = sum(entry["count"] for entry in trace.statements.values())
        variants.append({"when": when, "holds": holds, "statements": statements,
                         "sql_execute": _stats(totals), "sql": _stats(walls)})
    slowest = max(variants, key=lambda v: v["sql"]["median_s"])
    return {"leads": len(lead_ids), "lead_tags": tagged_rows, "variants": variants,
            "holds": slowest["holds"], "statements": slowest["statements"],
            "sql": slowest["sql"]}


def task_conditions(args) -> dict:
    """Only the `when:` / stop_on tag SQL of a tick, for the enrolments due now."""
    from sqlalchemy import select

    from capture import clock
    from capture.db import db
    from capture.models import Enrollment

    _warm_up()
    due = list(db.session.scalars(select(Enrollment.id).where(
        Enrollment.state == "active", Enrollment.next_due_at <= clock.utcnow())
        .order_by(Enrollment.next_due_at).limit(args.batch)))
    return _conditions_sql(due, args.reps)


def task_metrics(args) -> dict:
    """The reports the dashboard runs, at the size of this database."""
    from sqlalchemy import func, select

    from capture.numbers import metrics, periods
    from capture.db import db
    from capture.models import Event, Lead, RollupCount, RollupFirst, Visit

    counts = {
        "events": db.session.scalar(select(func.count()).select_from(Event)),
        "leads": db.session.scalar(select(func.count()).select_from(Lead)),
        "visits": db.session.scalar(select(func.count()).select_from(Visit)),
        # The report rollups the whole-day reports read (capture.numbers.rollups).
        "rollup_counts": db.session.scalar(select(func.count()).select_from(RollupCount)),
        "rollup_firsts": db.session.scalar(select(func.count()).select_from(RollupFirst)),
    }
    period = periods.period("30d")
    cases = {
        "report": lambda: metrics.report(),
        "report_by_source": lambda: metrics.report(by="source"),
        "overview_30d_by_day": lambda: metrics.report(start=period.start, end=period.end,
                                                      by="day"),
        "sources_30d": lambda: metrics.report(start=period.start, end=period.end,
                                              by="source"),
    }
    results = {}
    for name, case in cases.items():
        if args.only and name not in args.only:
            continue
        times, cpu = [], []
        for _ in range(args.reps):
            seconds, report = _timed(case)
            db.session.rollback()
            times.append(seconds)
            cpu.append(LAST_CPU["s"])
        with SqlTrace(db.engine) as trace:
            case()
            db.session.rollback()
        results[name] = {**_stats(times), "cpu_median_s": statistics.median(cpu),
                         "slowest_sql": trace.top(8), "rows": len(report.rows),
                         "leads": report.total.leads}
    return {"counts": counts, "cases": results}


def task_tokens(args) -> dict:
    """Real pixel and click paths from emails that were sent."""
    from sqlalchemy import select

    from capture.mail import tracked_links
    from capture.db import db
    from capture.models import Delivery, Link

    ids = list(db.session.scalars(select(Delivery.id).where(Delivery.status == "sent")
                                  .order_by(Delivery.id.desc()).limit(args.limit)))
    tokens = list(db.session.scalars(
        select(Link.token).join(Delivery, Delivery.id == Link.delivery_id)
        .where(Delivery.status == "sent").order_by(Link.id.desc()).limit(args.limit)))
    return {"pixels": [urlsplit(tracked_links.pixel_url(i)).path for i in ids],
            "clicks": [f"/c/{token}" for token in tokens]}


def task_statements(args) -> dict:
    """The SQL statements one request of each kind runs (Flask's test client, so
    the server is out of the picture): how many, which, and how long they took."""
    import re as re_module

    from flask import current_app

    from capture.db import db

    app = current_app._get_current_object()
    client = app.test_client()
    headers = {"User-Agent": common_ua()}
    page = client.get("/p/bench?utm_source=google", headers=headers)
    fields = dict(re_module.findall(r'name="(csrf_token|started)" type="hidden" value="([^"]*)"',
                                    page.get_data(as_text=True)))
    tokens = task_tokens(argparse.Namespace(limit=1))
    requests = {
        "GET /p/<slug>": lambda: client.get("/p/bench?utm_source=google", headers=headers),
        "POST /p/<slug>": lambda: client.post("/p/bench", headers=headers, data={
            **fields, "name": "Stat Lead", "email": f"stat{time.time_ns()}@example.com",
            "consent": "y", "website": ""}),
    }
    if tokens["pixels"]:
        requests["GET /o/<token>"] = lambda: client.get(tokens["pixels"][0], headers=headers)
    if tokens["clicks"]:
        requests["GET /c/<token>"] = lambda: client.get(tokens["clicks"][0], headers=headers)
    result = {}
    for name, call in requests.items():
        call()  # warm
        with SqlTrace(db.engine) as trace:
            started = time.perf_counter()
            response = call()
            elapsed = time.perf_counter() - started
        statements = [{"sql": " ".join(sql.split())[:160], "count": entry["count"],
                       "ms": round(entry["seconds"] * 1000, 3)}
                      for sql, entry in trace.statements.items()]
        result[name] = {"status": response.status_code, "ms": round(elapsed * 1000, 2),
                        "statements": sum(item["count"] for item in statements),
                        "sql_ms": round(sum(item["ms"] for item in statements), 2),
                        "list": statements}
    return result


def task_variants(args) -> dict:
    """CPU a page test adds to a page view, in-process: choosing a returning visitor's
    variant (capture.pages.variants) alone, and the page-view step that does it
    (`shown_page` with the visitor: the version query, the choice, the cached
    rendering) for bench-ab (a 50/50 test) against bench (none), interleaved; medians
    of `reps` rounds. The rest of a view is the same with or without a test."""
    from flask import current_app
    from sqlalchemy import select

    from capture.db import db
    from capture.models import Page
    from capture.pages import variants
    from capture.public.render import shown_page

    page = db.session.scalar(select(Page).where(Page.slug == "bench-ab"))
    test = variants.test_of(page)
    ids = [f"{number:032x}" for number in range(20_000)]
    assign = []
    for _ in range(args.reps):
        cpu = time.process_time()
        for vid in ids:
            variants.visitor_variant(page, vid, False, None, test)
        assign.append((time.process_time() - cpu) / len(ids) * 1000)
    shown: dict[str, list[float]] = {"plain": [], "test": []}
    with current_app.test_request_context(), db.engine.begin() as connection:
        for _ in range(args.reps):
            for name, slug in (("plain", "bench"), ("test", "bench-ab")):
                shown_page(slug, connection, (ids[0], True))  # rendered and cached
                cpu = time.process_time()
                for vid in ids[:5000]:
                    shown_page(slug, connection, (vid, False))
                shown[name].append((time.process_time() - cpu) / 5000 * 1000)
    shown_ms = {name: statistics.median(values) for name, values in shown.items()}
    return {"assign_ms": statistics.median(assign), "shown_ms": shown_ms,
            "added_ms": shown_ms["test"] - shown_ms["plain"], "reps": args.reps}


def common_ua() -> str:
    from bench.common import BROWSER_UA

    return BROWSER_UA


def task_counts(args) -> dict:
    """What a load run stored: leads with the run's email prefix (each once, with one
    opt-in event), and events of each kind since a moment."""
    from sqlalchemy import distinct, func, select

    from capture.db import db
    from capture.models import Enrollment, Event, Lead

    result: dict = {}
    if args.prefix:
        mine = Lead.email.like(f"{args.prefix}%")
        result["leads"] = db.session.scalar(select(func.count(Lead.id)).where(mine))
        result["distinct_emails"] = db.session.scalar(
            select(func.count(distinct(Lead.email))).where(mine))
        per_lead = (select(Event.lead_id, func.count().label("n"))
                    .join(Lead, Lead.id == Event.lead_id)
                    .where(mine, Event.kind == "optin").group_by(Event.lead_id).subquery())
        # int(): PostgreSQL gives the SUM as a Decimal.
        result["optin_events"] = int(db.session.scalar(
            select(func.coalesce(func.sum(per_lead.c.n), 0))))
        result["leads_with_several_optins"] = db.session.scalar(
            select(func.count()).select_from(per_lead).where(per_lead.c.n > 1))
        result["duplicate_events"] = db.session.scalar(
            select(func.count(Event.id)).join(Lead, Lead.id == Event.lead_id)
            .where(mine, Event.kind == "duplicate"))
        result["enrollments"] = db.session.scalar(
            select(func.count(Enrollment.id)).join(Lead, Lead.id == Enrollment.lead_id)
            .where(mine))
    if args.since:
        since = datetime.fromisoformat(args.since)
        result["events_since"] = dict(db.session.execute(
            select(Event.kind, func.count()).where(Event.created_at >= since)
            .group_by(Event.kind)).all())
    return result


def task_intake(args) -> dict:
    """Fold in the sign-ups and clicks a load run queued, as the scheduler's processor
    does: how many, and the CPU and wall time it took (the processor's share of an
    opt-in or a click)."""
    from capture.leads import intake

    cpu, wall = time.process_time(), time.perf_counter()
    folded = intake.process()
    return {"stored": folded.stored, "failed": folded.failed, "clicks": folded.clicks,
            "cpu_s": time.process_time() - cpu, "seconds": time.perf_counter() - wall}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("task", choices=["send", "scheduler", "conditions", "metrics",
                                           "tokens", "counts", "statements", "variants",
                                           "intake"])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--prefix")
    parser.add_argument("--since")
    parser.add_argument("--only", nargs="*")
    args = parser.parse_args()

    from capture import create_app

    started = time.perf_counter()
    app = create_app()
    startup = time.perf_counter() - started
    with app.app_context():
        result = globals()[f"task_{args.task}"](args)
    result["app_startup_s"] = startup
    result["maxrss_kb"] = _maxrss_kb()
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
