"""Fill a Capture database quickly with leads, visits, enrolments, deliveries and a
timeline of events, for the scale benchmarks (1,000,000 leads in about a minute).

    .venv/bin/python bench/generate.py --database bench/out/big.db --leads 1000000

The schema comes from the real migrations (`flask init`) and the pages from
bench/pages.json; rows go in through SQLAlchemy Core `executemany` in batches on the
app's own tables, so every value has the type and format the app writes. Any
SQLAlchemy URL works (`--database-url`); on SQLite the load runs with
synchronous=OFF and a large page cache, then checkpoints the WAL.

What it makes, for N leads (every choice is seeded, so a run is repeatable):

- visits: 2 N by default (`--visits`), over the last `--days` days, 5 % bots, a fifth
  of them repeat visitors; utm_source from 12 sources (and direct), 40 campaigns,
  a partner `ref` on 10 %;
- leads: each from one of those visits (its first-touch attribution copied), review
  80 % approved / 8 % rejected / 12 % pending, subscription 70 % subscribed /
  18 % unconfirmed / 9 % unsubscribed / 3 % bounced;
- enrolments in the page's sequence for approved leads that confirmed: the `--due`
  newest are due now (no step sent yet), the others finished (waiting, 55 %), wait
  for a later step (active, due within 3 days, 35 %) or stopped (10 %);
- deliveries: one `sent` row per step an enrolment has passed (about 1.3 N);
- events: `--events` rows (N by default) spread over the leads and deliveries:
  optin 25 %, approve 18 %, reject 2 %, confirm 15 %, enroll 10 %, send 15 %,
  open 9 %, click 4 %, duplicate 1 %, unsubscribe 1 % (a sixth of opens and clicks
  machine-made);
- the sequence's version row, as a running scheduler would have left it (so the
  first tick does not wake every finished lead);
- the report rollups (`capture.numbers.rollups`), rebuilt from every row at the end, as the
  migration does on an existing database (so the first report does not fold them all).
"""

import argparse
import json
import os
import queue
import random
import sys
import threading
import time
from array import array
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402

SOURCES = ["google", "facebook", "instagram", "newsletter", "partner", "twitter",
           "linkedin", "youtube", "tiktok", "reddit", "bing", "podcast"]
MEDIUMS = ["cpc", "social", "email", "referral", "organic"]
CAMPAIGNS = [f"campaign-{n:02d}" for n in range(40)]
PARTNERS = [f"partner{n:02d}" for n in range(30)]
FIRST_NAMES = ["Ann", "Bob", "Chloé", "Dev", "Eva", "Femi", "Gus", "Hana", "Ivan", "Jo",
               "Kai", "Lena", "Mo", "Nia", "Omar", "Pia", "Quinn", "Rosa", "Sam", "Tia"]
EVENT_KINDS = [("optin", 25), ("approve", 18), ("reject", 2), ("confirm", 15),
               ("enroll", 10), ("send", 15), ("open", 9), ("click", 4),
               ("duplicate", 1), ("unsubscribe", 1)]
USER_AGENT = common.BROWSER_UA
BATCH = 20_000
EPOCH = datetime(1970, 1, 1)


def _weighted(rng: random.Random, choices: list[tuple[str, int]], k: int) -> list[str]:
    names, weights = zip(*choices, strict=True)
    return rng.choices(names, weights=weights, k=k)


class Loader:
    """Inserts rows of one table in batches, committing each batch.

    On SQLite the values are converted once here (the same text SQLAlchemy writes:
    ISO datetimes with microseconds, JSON text, 0/1) and handed to the driver's
    executemany as tuples, which is about twice as fast as letting SQLAlchemy
    process every parameter; other databases get plain Core executemany."""

    def __init__(self, connection, log) -> None:
        self.connection = connection
        self.log = log
        self.sqlite = connection.dialect.name == "sqlite"
        self.timings: dict[str, dict] = {}

    def _converters(self, table, names: list[str]):
        from sqlalchemy import JSON, Boolean, DateTime, Numeric

        def timestamp(value):
            if value is None:
                return None
            text = value.isoformat(" ")
            return text if len(text) > 19 else text + ".000000"

        def as_json(value):
            return None if value is None else json.dumps(value)

        def as_int(value):
            return None if value is None else int(value)

        def as_number(value):
            return None if value is None else float(value)

        converters = []
        for name in names:
            kind = table.c[name].type
            converters.append(timestamp if isinstance(kind, DateTime) else
                              as_json if isinstance(kind, JSON) else
                              as_int if isinstance(kind, Boolean) else
                              as_number if isinstance(kind, Numeric) else None)
        return converters

    def _batches(self, table, rows):
        """The rows in batches, ready for the driver (tuples on SQLite)."""
        batch: list[dict] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= BATCH:
                yield self._prepare(table, batch)
                batch = []
        if batch:
            yield self._prepare(table, batch)

    def _prepare(self, table, batch: list[dict]):
        if not self.sqlite:
            return table.insert(), batch
        names = list(batch[0])
        pairs = list(zip(names, self._converters(table, names), strict=True))
        sql = (f"INSERT INTO {table.name} ({', '.join(names)}) "
               f"VALUES ({', '.join('?' * len(names))})")
        return sql, [tuple(convert(row[name]) if convert else row[name]
                           for name, convert in pairs) for row in batch]

    def insert(self, table, rows, *, expected: int = 0) -> int:
        """Insert every row. Rows are made in a second thread while this one waits on
        the database (the SQLite driver lets go of the GIL while it writes). A large
        load into an empty SQLite table drops its secondary indexes first and builds
        them at the end, which is much faster than growing them row by row."""
        started = time.perf_counter()
        rebuild = self._drop_indexes(table) if self.sqlite and expected >= 100_000 else []
        batches: queue.Queue = queue.Queue(maxsize=3)

        def produce():
            try:
                for item in self._batches(table, rows):
                    batches.put(item)
            except BaseException as error:  # noqa: BLE001 - handed to the consumer
                batches.put(error)
            batches.put(None)

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        count = 0
        while (item := batches.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            statement, values = item
            if self.sqlite:
                self.connection.exec_driver_sql(statement, values)
            else:
                self.connection.execute(statement, values)
            self.connection.commit()
            count += len(values)
        producer.join()
        loaded = time.perf_counter() - started
        for sql in rebuild:
            self.connection.exec_driver_sql(sql)
        self.connection.commit()
        seconds = time.perf_counter() - started
        self.timings[table.name] = {"rows": count, "seconds": round(seconds, 2)}
        note = f" (indexes {seconds - loaded:.1f} s)" if rebuild else ""
        self.log(f"  {table.name:<12} {count:>10,} rows in {seconds:6.1f} s "
                 f"({count / seconds if seconds else 0:,.0f} rows/s){note}")
        return count

    def _drop_indexes(self, table) -> list[str]:
        """Drop the secondary indexes of an empty table; the statements to rebuild
        them. (UNIQUE constraints stay: SQLite keeps them as automatic indexes.)"""
        if self.connection.exec_driver_sql(f"SELECT 1 FROM {table.name} LIMIT 1").first():
            return []
        indexes = self.connection.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
            "AND sql IS NOT NULL", (table.name,)).all()
        for name, _ in indexes:
            self.connection.exec_driver_sql(f"DROP INDEX {name}")
        self.connection.commit()
        return [sql for _, sql in indexes]


def _next_id(connection, table) -> int:
    from sqlalchemy import func, select
    return (connection.execute(select(func.max(table.c.id))).scalar() or 0) + 1


def generate(*, leads: int, visits: int | None = None, events: int | None = None,
             due: int = 1000, days: int = 90, prefix: str = "g", page_slug: str = "bench",
             seed: int = 1, log=print) -> dict:
    """Insert the rows (inside an app context); return counts and timings."""
    from sqlalchemy import select, text

    from capture import clock
    from capture.leads import optins
    from capture.numbers import rollups
    from capture.mail import work_queue
    from capture.mail.library import Library
    from capture.db import db
    from capture.models import (Cost, Delivery, Enrollment, Event, Lead, Page, SequenceVersion,
                                Visit)

    visits = 2 * leads if visits is None else visits
    events = leads if events is None else events
    due = min(due, leads)
    rng = random.Random(seed)
    now = clock.utcnow()
    now_ts = (now - EPOCH).total_seconds()
    span = days * 86400.0
    origin = now_ts - span
    started = time.perf_counter()

    connection = db.engine.connect()
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        connection.exec_driver_sql("PRAGMA synchronous=OFF")
        connection.exec_driver_sql("PRAGMA cache_size=-1000000")
        connection.exec_driver_sql("PRAGMA temp_store=MEMORY")
    page = connection.execute(
        select(Page.id, Page.consent, Page.sequence).where(Page.slug == page_slug)).one()
    sequence = Library.current().get(page.sequence) if page.sequence else None
    if sequence is None or not sequence.steps:
        raise SystemExit(f"page {page_slug!r} needs a sequence with steps")
    steps = sequence.steps
    loader = Loader(connection, log)
    tables = {model.__tablename__: model.__table__
              for model in (Visit, Lead, Enrollment, Delivery, Event)}
    first = {name: _next_id(connection, table) for name, table in tables.items()}
    def when(ts: float) -> datetime:
        """Naive UTC, like every timestamp Capture stores."""
        return EPOCH + timedelta(seconds=ts)

    # --- visits: attribution per visit, kept compactly for the leads -----------------
    v_source = bytearray(visits)  # 0 = direct, else 1 + index into SOURCES
    v_campaign = bytearray(visits)
    v_ref = bytearray(visits)  # 0 = none, else 1 + index into PARTNERS
    v_visitor = array("q", [0]) * visits

    def visit_rows():
        base = first["visits"]
        for j in range(visits):
            source = 0 if rng.random() < 0.15 else 1 + rng.randrange(len(SOURCES))
            campaign = rng.randrange(len(CAMPAIGNS))
            ref = 1 + rng.randrange(len(PARTNERS)) if rng.random() < 0.10 else 0
            visitor = j - rng.randint(1, 500) if j > 500 and rng.random() < 0.2 else j
            v_source[j], v_campaign[j], v_ref[j], v_visitor[j] = source, campaign, ref, visitor
            created = origin + span * j / visits
            query = (f"?utm_source={SOURCES[source - 1]}&utm_campaign={CAMPAIGNS[campaign]}"
                     if source else "")
            yield {
                "id": base + j, "page_id": page.id,
                "visitor_id": f"{seed:04x}{visitor:028x}", "created_at": when(created),
                "utm_source": SOURCES[source - 1] if source else None,
                "utm_medium": MEDIUMS[campaign % len(MEDIUMS)] if source else None,
                "utm_campaign": CAMPAIGNS[campaign] if source else None,
                "utm_content": None, "utm_term": None,
                "ref": PARTNERS[ref - 1] if ref else None,
                "referrer": "https://www.google.com/" if source == 1 else None,
                "landing_url": f"https://bench.example/p/{page_slug}{query}",
                "user_agent": "Googlebot/2.1" if j % 20 == 7 else USER_AGENT,
                "is_bot": j % 20 == 7,
            }

    loader.insert(tables["visits"], visit_rows(), expected=visits)

    # --- leads ---------------------------------------------------------------------
    l_created = array("d", [0.0]) * leads
    l_enrolled = bytearray(leads)  # 1 = enrolled and due, 2 = enrolled earlier
    due_from = leads - due
    reviews = _weighted(rng, [("approved", 80), ("rejected", 8), ("pending", 12)], leads)
    subscriptions = _weighted(rng, [("subscribed", 70), ("unconfirmed", 18),
                                    ("unsubscribed", 9), ("bounced", 3)], leads)

    def lead_rows():
        base = first["leads"]
        for i in range(leads):
            created = origin + span * i / leads + rng.random()
            if created > now_ts - 120:
                created = now_ts - 120 - rng.random() * 60
            l_created[i] = created
            review, subscription = reviews[i], subscriptions[i]
            if i >= due_from:
                review, subscription = "approved", "subscribed"
                l_enrolled[i] = 1
            elif review == "approved" and subscription != "unconfirmed":
                l_enrolled[i] = 2
            j = i * visits // leads if visits else -1
            source = v_source[j] if j >= 0 else 0
            campaign = v_campaign[j] if j >= 0 else 0
            ref = v_ref[j] if j >= 0 else 0
            name = f"{FIRST_NAMES[i % len(FIRST_NAMES)]} Lead{i}"
            confirmed = subscription != "unconfirmed"
            yield {
                "id": base + i, "email": f"{prefix}{i}@example.com", "name": name,
                "country": None, "fields": {}, "public_ref": f"{prefix}{rng.getrandbits(64):016x}",
                "page_id": page.id, "visit_id": first["visits"] + j if j >= 0 else None,
                "visitor_id": f"{seed:04x}{v_visitor[j]:028x}" if j >= 0 else None,
                "utm_source": SOURCES[source - 1] if source else None,
                "utm_medium": MEDIUMS[campaign % len(MEDIUMS)] if source else None,
                "utm_campaign": CAMPAIGNS[campaign] if source else None,
                "utm_content": None, "utm_term": None,
                "ref": PARTNERS[ref - 1] if ref else None,
                "referrer": None, "landing_url": f"https://bench.example/p/{page_slug}",
                "referred_by_id": None, "consent_text": page.consent,
                "consent_at": when(created), "consent_ip": "127.0.0.1",
                "confirmation_sent_at": when(created + 1),
                "confirmed_at": when(created + 60) if confirmed else None,
                "confirm_ip": "127.0.0.1" if confirmed else None,
                "review": review,
                "review_reason": "disposable address" if review == "rejected" else "",
                "reviewed_at": when(created) if review != "pending" else None,
                "subscription": subscription, "created_at": when(created),
            }

    loader.insert(tables["leads"], lead_rows(), expected=leads)
    # Each lead's first opt-in, as the opt-in writes it (one per lead: no later ones).
    copied = ", ".join(optins.COPIED)
    optins_started = time.perf_counter()
    connection.execute(text(
        f"INSERT INTO optins (lead_id, first, {copied}) SELECT id, :yes, {copied} "
        f"FROM leads WHERE id >= :first ORDER BY id").bindparams(yes=True, first=first["leads"]))
    connection.commit()
    log(f"  optins: {leads:,} rows in {time.perf_counter() - optins_started:.1f} s")

    # --- enrolments and the deliveries of the steps they passed ------------------------
    e_plan: list[tuple[int, int, int, float]] = []  # (lead index, enrolment id, steps, last)
    e_states = _weighted(rng, [("waiting", 55), ("active", 35), ("stopped", 10)], leads)

    def enrollment_rows():
        next_id = first["enrollments"]
        for i in range(leads):
            kind = l_enrolled[i]
            if not kind:
                continue
            created = l_created[i]
            start = created + 60
            if kind == 1:
                due_at = now_ts - rng.random() * 3600
                row = {"state": "active", "next_due_at": when(due_at),
                       "started_at": when(min(start, due_at)), "last_step": None,
                       "last_filename": None, "last_sent_at": None, "stop_reason": ""}
            else:
                state = e_states[i]
                passed = len(steps) if state == "waiting" else rng.randint(1, len(steps) - 1)
                last = min(start + 86400 * (passed - 1), now_ts - 60)
                step = steps[passed - 1]
                row = {"state": state, "last_step": step.key, "last_filename": step.filename,
                       "last_sent_at": when(last), "started_at": when(start),
                       "next_due_at": (when(now_ts + 7200 + rng.random() * 3 * 86400)
                                       if state == "active" else None),
                       "stop_reason": "upgrade" if state == "stopped" else ""}
                e_plan.append((i, next_id, passed, start))
            yield {"id": next_id, "lead_id": first["leads"] + i, "sequence": sequence.name,
                   "claimed_at": None, **row}
            next_id += 1

    loader.insert(tables["enrollments"], enrollment_rows(), expected=leads // 2)

    d_lead = array("q")
    d_sent = array("d")

    def delivery_rows():
        next_id = first["deliveries"]
        for i, enrollment_id, passed, start in e_plan:
            lead_id = first["leads"] + i
            for n in range(passed):
                step = steps[n]
                sent = min(start + 86400 * n, now_ts - 60)
                d_lead.append(lead_id)
                d_sent.append(sent)
                yield {"id": next_id, "lead_id": lead_id, "enrollment_id": enrollment_id,
                       "sequence": sequence.name, "step": step.key, "filename": step.filename,
                       "status": "sent", "attempts": 1, "created_at": when(sent - 0.2),
                       "claimed_at": when(sent - 0.1), "retry_at": None,
                       "sent_at": when(sent),
                       "message_id": f"<capture.{next_id}.bench@bench.example>",
                       "subject": step.subject[:300], "error": ""}
                next_id += 1

    loader.insert(tables["deliveries"], delivery_rows(), expected=leads)

    # --- events ----------------------------------------------------------------------
    kinds = _weighted(rng, EVENT_KINDS, events)
    deliveries = len(d_lead)

    def event_rows():
        base = first["events"]
        for n, kind in enumerate(kinds):
            delivery_id = None
            machine = False
            data: dict = {}
            if kind in ("send", "open", "click") and deliveries:
                d = rng.randrange(deliveries)
                lead_id, delivery_id = d_lead[d], first["deliveries"] + d
                at = d_sent[d] + (0 if kind == "send" else rng.random() * 2 * 86400)
                machine = kind != "send" and rng.random() < 1 / 6
                if kind == "click":
                    data = {"url": "https://example.com/checklist"}
            else:
                i = rng.randrange(leads)
                lead_id = first["leads"] + i
                at = l_created[i] + rng.random() * 86400
                if kind == "duplicate":
                    data = {"utm_source": SOURCES[n % len(SOURCES)]}
                elif kind in ("approve", "reject"):
                    data = {"by": "rules", "reason": ""}
            yield {"id": base + n, "lead_id": lead_id, "page_id": page.id, "kind": kind,
                   "created_at": when(min(at, now_ts - 1)), "delivery_id": delivery_id,
                   "machine": machine, "data": data}

    loader.insert(tables["events"], event_rows(), expected=events)

    # --- ad spend: a row per day, source and campaign the leads came from ------------
    def cost_rows():
        for day in range(days):
            on = (EPOCH + timedelta(seconds=origin + day * 86400.0)).date()
            for n, source in enumerate(SOURCES):
                for campaign in CAMPAIGNS[n::len(SOURCES)]:
                    yield {"day": on, "source": source, "campaign": campaign,
                           "page_id": page.id, "amount": Decimal(rng.randrange(100, 5000)) / 100,
                           "currency": "USD", "created_at": now, "updated_at": now}

    loader.insert(Cost.__table__, cost_rows(), expected=days * len(CAMPAIGNS))

    # --- what a running scheduler leaves behind --------------------------------------
    with db.session.begin():
        if db.session.get(SequenceVersion, sequence.name) is None:
            db.session.add(SequenceVersion(name=sequence.name,
                                           signature=work_queue.wake_signature(sequence)))
    if connection.dialect.name == "postgresql":
        for name in (*tables, "optins"):
            connection.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                f"(SELECT MAX(id) FROM {name}))")
        connection.commit()
    rollups_started = time.perf_counter()
    rollups.rebuild(connection)
    rollups_seconds = time.perf_counter() - rollups_started
    log(f"  rollups rebuilt in {rollups_seconds:.1f} s")
    if sqlite:
        checkpoint = time.perf_counter()
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        log(f"  checkpoint in {time.perf_counter() - checkpoint:.1f} s")
    connection.close()
    seconds = time.perf_counter() - started
    counts = {name: info["rows"] for name, info in loader.timings.items()}
    log(f"  total {sum(counts.values()):,} rows in {seconds:.1f} s")
    return {"seconds": round(seconds, 2), "rows": counts, "tables": loader.timings,
            "rollups_seconds": round(rollups_seconds, 2), "due": due}


def main(argv: list[str] | None = None) -> None:
    common.ensure_venv_python()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--database", type=Path, help="a SQLite file (created if missing)")
    where.add_argument("--database-url", help="any SQLAlchemy URL (PostgreSQL …)")
    parser.add_argument("--workdir", type=Path,
                        help="instance and sequences folder (default: beside the database)")
    parser.add_argument("--leads", type=int, required=True)
    parser.add_argument("--visits", type=int, help="default: 2 × leads")
    parser.add_argument("--events", type=int, help="default: = leads")
    parser.add_argument("--due", type=int, default=1000,
                        help="enrolments due now, newest leads (default 1000)")
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--prefix", default="g", help="email prefix, to add to a database")
    parser.add_argument("--page", default="bench")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)

    if args.database:
        database = args.database.resolve()
        database.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{database}"
        workdir = (args.workdir or database.parent).resolve()
    else:
        url = args.database_url
        workdir = (args.workdir or common.BENCH / "out" / "generate").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    common.install_sequences(workdir)
    env = common.stack_env(workdir, Path("/unused"), base_url="http://127.0.0.1:5000",
                           smtp_port=25, extra={"CAPTURE_DATABASE_URL": url})
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    log(f"Preparing schema and pages in {url} …")
    common.prepare_database(env)
    os.environ.update(env)

    from capture import create_app

    app = create_app()
    with app.app_context():
        log(f"Generating {args.leads:,} leads …")
        result = generate(leads=args.leads, visits=args.visits, events=args.events,
                          due=args.due, days=args.days, prefix=args.prefix,
                          page_slug=args.page, seed=args.seed, log=log)
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
