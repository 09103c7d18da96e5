"""Capture's benchmark: real gunicorn on SQLite (WAL), a real SMTP sink in its own
process, load from `wrk` on loopback, and in-process timings of the scheduler and the
reports at 1,000,000 rows. Prints one table; every run stops by itself.

    make bench                                   # everything (about 10 minutes)
    make bench BENCH_ARGS="--quick"              # short runs, 100k instead of 1M
    make bench BENCH_ARGS="--only optin send"    # some scenarios
    .venv/bin/python bench/run.py --profile      # also py-spy profiles per scenario

Scenarios (names for --only): baseline, page, page-test, optin, optin-doi, send, send-relay,
pixel, click, metrics, scheduler. send-relay sends from one scheduler process to a sink that
answers each command --relay-delay-ms (20) late, as a relay across a network does. metrics and scheduler share one generated database of --scale leads (metrics
reads it first; the scheduler then sends its 1,000 due emails). Targets are reported,
never asserted: the exit status is 0 unless something broke (a server that did not
start, a lead stored twice, an email missing).

Artefacts (databases, logs, wrk data, profiles, results.json, results.md) go to
bench/out/<time>/ (or --out).
"""

import argparse
import json
import os
import platform
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402
from bench.common import BENCH, BROWSER_UA, PYTHON, ROOT  # noqa: E402

SCENARIOS = ("baseline", "page", "page-test", "optin", "optin-doi", "send", "send-relay",
             "pixel", "click", "metrics", "scheduler")
LUA = BENCH / "lua"
# Targets from issue 7: (kind, value) where kind is min throughput or max seconds.
TARGETS = {
    "page": "≥ 3,000 req/s, p99 < 50 ms (issue 22; listmonk 5,494–6,539/s, 0.26 ms)",
    "page-test": "page view's CPU + < 0.05 ms",
    "optin": "≥ 1,000 req/s, ≤ 1.8 ms CPU with the processor's share, p99 < 50 ms, "
             "0 errors, each lead once (listmonk 888–1,026/s, 1.9–2.0 ms)",
    "optin-doi": "(no target: optin + confirmation email)",
    "pixel": "≥ 3,200 req/s, p99 < 50 ms (listmonk 3,130–3,680/s, 0.48 ms)",
    "click": "≥ 3,200 req/s, p99 < 50 ms",
    "send": "≥ 3,500 emails/s (issue 22; issue 17: ≥ 1,000)",
    "send-relay": "≥ 400 emails/s",
}
# What each sending scenario must reach to be "met" (emails per second).
SEND_TARGETS = {"send": 3500, "send-relay": 400}


# --- the machine and its other load ------------------------------------------------

def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    mhz = re.search(r"cpu MHz\s*:\s*(.*)", cpuinfo)
    memory = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                         capture_output=True, text=True).stdout.strip()
    changed = subprocess.run(["git", "status", "--short", "--", "capture", "templates",
                              "migrations", "config.py", "wsgi.py"], cwd=ROOT,
                             capture_output=True, text=True).stdout.splitlines()
    return {
        "commit": git + (f" + {len(changed)} uncommitted file(s) in the app" if changed else ""),
        "nproc": os.cpu_count(),
        "cpu": model.group(1).strip() if model else platform.processor(),
        "mhz": mhz.group(1).strip() if mhz else "",
        "ram_gib": round(int(memory.group(1)) / 1024 / 1024, 1) if memory else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "wrk": (wrk.stdout or wrk.stderr).split("[")[0].strip(),
    }


def _busy_jiffies() -> int:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq + steal


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _process_jiffies(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError):
        return 0


class CpuWatch:
    """How busy the machine was with other people's processes during a scenario: all
    busy CPU time minus ours (live processes we started, children we waited for, and
    this process)."""

    def __init__(self, live_pids) -> None:
        self.live_pids = live_pids
        self.start = self._snapshot()

    def _snapshot(self):
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        me = resource.getrusage(resource.RUSAGE_SELF)
        pids = self.live_pids()
        return (time.monotonic(), _busy_jiffies(),
                {pid: _process_jiffies(pid) for pid in pids},
                children.ru_utime + children.ru_stime + me.ru_utime + me.ru_stime)

    def others_percent(self) -> float:
        end = self._snapshot()
        elapsed = end[0] - self.start[0]
        hz = os.sysconf("SC_CLK_TCK")
        busy = (end[1] - self.start[1]) / hz
        live = sum(end[2].get(pid, 0) - self.start[2].get(pid, 0) for pid in end[2]
                   if pid in self.start[2]) / hz
        ours = live + (end[3] - self.start[3])
        capacity = elapsed * (os.cpu_count() or 1)
        return max(0.0, 100 * (busy - ours) / capacity) if capacity else 0.0


def wait_for_quiet(limit: float, threshold: float = 20.0) -> float:
    """Wait (at most `limit` s) until other processes use less than `threshold` % of
    the machine over a second; return the last reading."""
    deadline = time.monotonic() + limit
    while True:
        watch = CpuWatch(lambda: [])
        time.sleep(1)
        others = watch.others_percent()
        if others < threshold or time.monotonic() >= deadline:
            return others
        print(f"    (waiting: other processes use {others:.0f} % of the CPUs)", flush=True)


# --- wrk ----------------------------------------------------------------------------

def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0:
        sys.exit("wrk is missing: apt-get install -y wrk (as root)")
    print("Installing wrk (apt-get install -y wrk) …", flush=True)
    if subprocess.run(["apt-get", "install", "-y", "wrk"], capture_output=True).returncode:
        subprocess.run(["apt-get", "update"], capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, capture_output=True)


def run_wrk(url: str, script: str, *, duration: float, threads: int, connections: int,
            env: dict) -> dict:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
               "--timeout", "10s", "-s", str(LUA / script), url]
    result = subprocess.run(command, capture_output=True, text=True,
                            env={**os.environ, "BENCH_LUA": str(LUA), "BENCH_UA": BROWSER_UA,
                                 **env}, timeout=duration + 60)
    for line in result.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line[len("BENCH_JSON "):])
            data["throughput"] = data["requests"] / (data["duration_us"] / 1e6)
            return data
    raise RuntimeError(f"wrk gave no result:\n{result.stdout}\n{result.stderr}")


def lua_table(items) -> str:
    """A Lua file returning a list (of strings, or of flat string tables)."""
    def value(item):
        if isinstance(item, dict):
            return "{" + ", ".join(f'{k} = "{v}"' for k, v in item.items()) + "}"
        return f'"{item}"'
    return "return {\n" + ",\n".join(value(item) for item in items) + "\n}\n"


# --- profiling -----------------------------------------------------------------------

def py_spy() -> str:
    binary = common.VENV_BIN / "py-spy"
    if not binary.exists():
        print("Installing py-spy into .venv (bench/requirements.txt) …", flush=True)
        subprocess.run([str(common.VENV_BIN / "pip"), "install", "--quiet",
                        "--disable-pip-version-check", "-r", str(BENCH / "requirements.txt")],
                       check=True)
    return str(binary)


def profile_command(output: Path, duration: float | None = None, pid: int | None = None,
                    command: list[str] | None = None) -> list[str]:
    base = [py_spy(), "record", "--format", "raw", "--rate", "250", "-o", str(output)]
    if pid is not None:
        return [*base, "--subprocesses", "--pid", str(pid), "--duration",
                str(max(1, round(duration or 10)))]
    return [*base, "--", *command]


# --- the bench ----------------------------------------------------------------------

class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.out = args.out
        self.rows: list[dict] = []
        self.details: dict = {}
        self.failures: list[str] = []
        self.out.mkdir(parents=True, exist_ok=True)
        self.sink = common.Sink(self.out, args.sink)
        self.port = common.free_port()
        self.database = self.out / "bench.db"
        common.install_sequences(self.out)
        self.env = common.stack_env(self.out, self.database,
                                    base_url=f"http://127.0.0.1:{self.port}",
                                    smtp_port=self.sink.port)
        if args.database_url:  # an empty PostgreSQL database (HTTP scenarios only)
            self.env["CAPTURE_DATABASE_URL"] = args.database_url
        common.prepare_database(self.env)
        self.server: common.Server | None = None
        self.task_pid: int | None = None

    # -- helpers --

    def live_pids(self) -> list[int]:
        pids = [self.sink.process.pid]
        if self.server is not None:
            pids += [self.server.process.pid, *self.server.worker_pids()]
        return pids

    def watch(self) -> CpuWatch:
        if self.args.quiet_wait:
            others = wait_for_quiet(self.args.quiet_wait)
            if others >= 20:
                print(f"    (other processes still use {others:.0f} % of the CPUs)")
        return CpuWatch(self.live_pids)

    def task(self, name: str, *args: str, env: dict | None = None, profile: str = "",
             timeout: float = 1800) -> dict:
        command = [str(PYTHON), str(BENCH / "tasks.py"), name, *args]
        if profile:
            command = profile_command(self.out / f"profile-{profile}.txt", command=command)
        result = subprocess.run(command, cwd=ROOT, env=env or self.env, capture_output=True,
                                text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"tasks.py {name} failed:\n{result.stderr[-3000:]}")
        line = [x for x in result.stdout.splitlines() if x.startswith("{")][-1]
        return json.loads(line)

    def row(self, scenario: str, **values) -> dict:
        row = {"scenario": scenario, **values}
        self.rows.append(row)
        print("    " + format_row_text(row), flush=True)
        return row

    def start_server(self, **options) -> common.Server:
        self.server = common.Server(self.env, self.out, workers=self.args.workers,
                                    worker_class=self.args.worker_class,
                                    server=self.args.server,
                                    threads=self.args.worker_threads, **options)
        return self.server

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def close(self) -> None:
        self.stop_server()
        self.sink.stop()
        if not self.args.keep:
            for _, folder in self.__dict__.get("_scale", {}).values():
                shutil.rmtree(folder, ignore_errors=True)

    def load(self, script: str, env: dict, after_warmup=None) -> tuple[dict, float]:
        """Warm up, then the measured wrk run; the server's CPU time per request."""
        args = self.args
        url = self.server.base_url
        run_wrk(url, script, duration=args.warmup, threads=args.threads,
                connections=args.connections,
                env={**env, "BENCH_PREFIX": env.get("BENCH_WARM_PREFIX", "")})
        if after_warmup is not None:
            after_warmup()
        watch = self.watch()
        pids = [self.server.process.pid, *self.server.worker_pids()]
        before = {pid: _process_jiffies(pid) for pid in pids}
        wrk_before = _children_cpu()
        result = run_wrk(url, script, duration=args.duration, threads=args.threads,
                         connections=args.connections, env=env)
        hz = os.sysconf("SC_CLK_TCK")
        server_cpu = sum(_process_jiffies(pid) - before[pid] for pid in pids) / hz
        result["server_cpu_s"] = server_cpu
        result["wrk_cpu_s"] = _children_cpu() - wrk_before
        result["cpu_ms_per_request"] = 1000 * server_cpu / max(1, result["requests"])
        others = watch.others_percent()
        return result, others

    def profile_http(self, key: str, script: str, env: dict) -> None:
        """A separate, uncontended profile of the same requests: one worker, one
        connection, py-spy sampling the worker (so samples are time spent serving,
        not time waiting for a CPU)."""
        if not self.args.profile:
            return
        args = self.args
        server = common.Server(self.env, self.out, workers=1, server=self.args.server)
        try:
            run_wrk(server.base_url, script, duration=1, threads=1, connections=1,
                    env={**env, "BENCH_PREFIX": f"pw{env.get('BENCH_PREFIX', '')}"})
            spy = subprocess.Popen(
                profile_command(self.out / f"profile-{key}.txt", duration=args.duration,
                                pid=server.process.pid),
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(0.5)
            result = run_wrk(server.base_url, script, duration=args.duration, threads=1,
                             connections=1,
                             env={**env, "BENCH_PREFIX": f"p{env.get('BENCH_PREFIX', '')}"})
            _, error = spy.communicate(timeout=args.duration + 60)
            if spy.returncode:
                print(f"    py-spy failed: {error.decode()[-500:]}", flush=True)
            print(f"    profiled {result['requests']} requests (1 worker, 1 connection, "
                  f"{result['throughput']:.0f} req/s, p50 "
                  f"{result['latency_us']['p50'] / 1000:.1f} ms under py-spy)", flush=True)
            self.details.setdefault("profiles", {})[key] = result
        finally:
            server.stop()

    # -- scenarios --

    def http_row(self, key: str, label: str, result: dict, others: float, memory: dict,
                 errors: int, notes: str = "", met: bool | None = None) -> None:
        workers = memory["workers_kb"]
        self.row(
            label, key=key, throughput=result["throughput"], unit="req/s",
            p50_ms=result["latency_us"]["p50"] / 1000, p99_ms=result["latency_us"]["p99"] / 1000,
            errors=errors, rss=f"{len(workers)} workers ≤ {max(workers) / 1024:.0f} MB, "
                                f"master {memory['master_kb'] / 1024:.0f} MB",
            target=TARGETS.get(key, ""), met=met, others=others, notes=notes,
            cpu=f"{result['cpu_ms_per_request']:.2f} ms/req",
        )
        self.details[key] = {"wrk": result, "memory": memory, "others_percent": others}

    def scenario_baseline(self) -> None:
        """The same server and client with a bare WSGI app: the floor on this machine."""
        self.start_server(app="bench.baseline_app:app", health="/")
        try:
            result, others = self.load("page.lua", {"BENCH_SLUG": "baseline"})
            memory = self.server.memory()
        finally:
            self.stop_server()
        self.http_row("baseline", "floor: bare WSGI app, same gunicorn + wrk", result, others,
                      memory, _errors(result),
                      "no Flask, no template, no database: what serving costs here")

    def scenario_page(self) -> None:
        self.start_server()
        try:
            result, others = self.load("page.lua", {"BENCH_SLUG": "bench"})
            memory = self.server.memory()
        finally:
            self.stop_server()
        self.profile_http("page", "page.lua", {"BENCH_SLUG": "bench"})
        errors = _errors(result)
        met = (result["throughput"] >= 3000 and result["latency_us"]["p99"] < 50_000
               and errors == 0)
        self.http_row("page", "opt-in page view  GET /p/<slug>", result, others, memory,
                      errors, met=met)

    def scenario_page_test(self) -> None:
        """`page` on a page with a two-variant test (bench-ab, 50/50): what choosing
        and serving each visitor's variant adds. HTTP figures move more than that from
        run to run, so an in-process task times it too (tasks.py variants)."""
        self.start_server()
        try:
            result, others = self.load("page.lua", {"BENCH_SLUG": "bench-ab"})
            memory = self.server.memory()
        finally:
            self.stop_server()
        timed = self.task("variants", "--reps", str(self.args.reps))
        self.details["page-test-in-process"] = timed
        notes = (f"in-process: choosing the variant {timed['assign_ms']:.4f} ms; the "
                 f"view's page step {timed['shown_ms']['test']:.4f} ms vs "
                 f"{timed['shown_ms']['plain']:.4f} ms without a test "
                 f"(+{timed['added_ms']:.4f} ms)")
        self.http_row("page-test", "page view, two-variant test  GET /p/<slug>", result,
                      others, memory, _errors(result), notes,
                      met=timed["added_ms"] < 0.05)

    def _optin_tokens(self, slug: str, count: int) -> Path:
        """`count` real page views, each with fresh cookies: session cookie, CSRF token
        and `started` token per visitor, written as a Lua data file."""
        base = self.server.base_url
        pattern = re.compile(r'name="(csrf_token|started)" type="hidden" value="([^"]*)"')

        def fetch(_):
            request = urllib.request.Request(f"{base}/p/{slug}?utm_source=bench",
                                             headers={"User-Agent": BROWSER_UA})
            with urllib.request.urlopen(request, timeout=30) as answer:
                html = answer.read().decode()
                cookies = [c.split(";", 1)[0] for c in answer.headers.get_all("Set-Cookie")]
            fields = dict(pattern.findall(html))
            return {"cookie": "; ".join(cookies), "csrf": fields["csrf_token"],
                    "started": fields["started"]}

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=8) as pool:
            items = list(pool.map(fetch, range(count)))
        print(f"    fetched {count} (cookie, CSRF, started) tuples in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        path = self.out / f"optin-{slug}.lua"
        path.write_text(lua_table(items))
        return path

    def scenario_optin(self, slug: str = "bench", key: str = "optin") -> None:
        args = self.args
        prefix = f"{key.replace('-', '')}{int(time.time())}x"
        self.start_server()
        try:
            data = self._optin_tokens(slug, args.optin_tokens)
            env = {"BENCH_SLUG": slug, "BENCH_DATA": str(data), "BENCH_PREFIX": prefix,
                   "BENCH_WARM_PREFIX": f"warm{prefix}"}
            result, others = self.load("optin.lua", env, after_warmup=self.sink.reset)
            memory = self.server.memory()
            time.sleep(1)  # requests in flight when wrk stopped finish
        finally:
            self.stop_server()
        # The sign-ups were queued (CAPTURE_OPTIN_PROCESSING=queued): fold them in as the
        # scheduler's processor does, and count its CPU as part of each opt-in's cost.
        folded = self.task("intake")
        counts = self.task("counts", "--prefix", prefix)
        mail = self.sink.wait_for(counts["leads"], timeout=10 if key == "optin-doi" else 0)
        self.profile_http(key, "optin.lua", env)
        ok = result["statuses"].get("303", 0)
        in_flight = counts["leads"] - ok
        once = (counts["distinct_emails"] == counts["leads"]
                and counts["optin_events"] == counts["leads"]
                and counts["leads_with_several_optins"] == 0
                and counts["duplicate_events"] == 0
                and 0 <= in_flight <= args.connections)
        if not once:
            self.failures.append(f"{key}: leads not stored exactly once: {counts}, 303s {ok}")
        errors = _errors(result) + sum(n for code, n in result["statuses"].items()
                                       if code != "303")
        processor_ms = 1000 * folded["cpu_s"] / max(1, folded["stored"])
        result["processor_cpu_ms_per_optin"] = processor_ms
        notes = (f"{counts['leads']} leads stored for {ok} × 303 "
                 f"(+{in_flight} in flight at stop), each once: {'yes' if once else 'NO'}; "
                 f"the processor folded in {folded['stored']} sign-ups at "
                 f"{processor_ms:.2f} ms CPU each "
                 f"({result['cpu_ms_per_request'] + processor_ms:.2f} ms CPU per opt-in in all)")
        if key == "optin-doi":
            notes += (f"; {mail['messages']} confirmation emails received (incl. requests "
                      f"in flight when the warm-up stopped)")
        met = None
        if key == "optin":
            met = (result["throughput"] >= 1000 and result["latency_us"]["p99"] < 50_000
                   and result["cpu_ms_per_request"] + processor_ms <= 1.8
                   and errors == 0 and once)
        label = ("opt-in submit  POST /p/<slug>" if key == "optin"
                 else "opt-in submit, double opt-in (+ SMTP)")
        self.http_row(key, label, result, others, memory, errors, notes, met)
        self.details[key]["counts"] = counts

    def scenario_optin_doi(self) -> None:
        self.scenario_optin("bench-doi", "optin-doi")

    def _seed_due(self, count: int, prefix: str) -> dict:
        command = [str(PYTHON), str(BENCH / "generate.py"), "--database", str(self.database),
                   "--leads", str(count), "--visits", "0", "--events", "0",
                   "--due", str(count), "--prefix", prefix, "--json",
                   "--seed", str(int(time.time()) % 100000)]
        result = subprocess.run(command, cwd=ROOT, env=self.env, capture_output=True,
                                text=True, timeout=600)
        if result.returncode:
            raise RuntimeError(f"seeding failed:\n{result.stderr[-3000:]}")
        return json.loads(result.stdout.strip().splitlines()[-1])

    def _send_ticks(self, senders: int, env: dict) -> dict:
        """One tick in each of `senders` scheduler processes at once (they share the
        due emails through their claims): the summed counts, and emails per second
        from the first tick's start to the last one's end."""
        command = [str(PYTHON), str(BENCH / "tasks.py"), "send"]
        processes = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
                     for _ in range(senders)]
        results = []
        for process in processes:
            out, err = process.communicate(timeout=1800)
            if process.returncode:
                raise RuntimeError(f"tasks.py send failed:\n{err[-3000:]}")
            results.append(json.loads([x for x in out.splitlines() if x.startswith("{")][-1]))
        seconds = max(r["ended"] for r in results) - min(r["started"] for r in results)
        sent = sum(r["sent"] for r in results)
        return {"seconds": seconds, "sent": sent, "emails_per_s": sent / seconds,
                "cpu_s": sum(r["cpu_s"] for r in results),
                "failed": sum(r["failed"] for r in results),
                "retried": sum(r["retried"] for r in results),
                "maxrss_kb": max(r["maxrss_kb"] for r in results), "ticks": results}

    def scenario_send(self, report: bool = True, key: str = "send") -> None:
        relay = key == "send-relay"
        count = self.args.relay_send if relay else self.args.send
        senders = 1 if relay else self.args.senders
        sink = (common.Sink(self.out, "light", self.args.relay_delay_ms) if relay
                else self.sink)
        try:
            self._send_to(sink, count, senders, key, report)
        finally:
            if relay:
                sink.stop()

    def scenario_send_relay(self) -> None:
        self.scenario_send(key="send-relay")

    def _send_to(self, sink: common.Sink, count: int, senders: int, key: str,
                 report: bool) -> None:
        # Leads the opt-in scenarios enrolled are due too: parked, so that the
        # senders send exactly the seeded emails.
        with sqlite3.connect(self.database, timeout=30) as connection:
            connection.execute("UPDATE enrollments SET state = 'waiting', next_due_at = NULL "
                               "WHERE state = 'active'")
        seeded = self._seed_due(count, f"send{int(time.time())}x")
        env = {**self.env, "CAPTURE_SEND_BATCH_SIZE": str(-(-count // senders)),
               "CAPTURE_SEND_RATE_PER_MINUTE": str(count * 100),
               "CAPTURE_SMTP_PORT": str(sink.port)}
        if self.args.smtp_connections:
            env["CAPTURE_SMTP_CONNECTIONS"] = str(self.args.smtp_connections)
        connections = env.get("CAPTURE_SMTP_CONNECTIONS", "10 (default)")
        sink.reset()
        watch = self.watch()
        sink_before = _process_jiffies(sink.process.pid)
        result = self._send_ticks(senders, env)
        others = watch.others_percent()
        mail = sink.wait_for(result["sent"], timeout=30)
        sink_cpu = (_process_jiffies(sink.process.pid) - sink_before) / os.sysconf(
            "SC_CLK_TCK")
        ok = (result["sent"] == count and mail["messages"] == count
              and mail["recipients"] == count and mail["duplicates"] == 0)
        if not ok:
            self.failures.append(f"{key}: sent {result['sent']} of {count}; sink {mail}")
        if not report:
            return
        rate = result["emails_per_s"]
        where = (f"SMTP sink answering {self.args.relay_delay_ms:g} ms late" if key == "send-relay"
                 else f"SMTP sink ({self.args.sink})")
        self.row(
            f"sending: {count:,} due → {where}, "
            f"{senders} scheduler process{'es' if senders > 1 else ''} × {connections} "
            f"connections", key=key,
            throughput=rate,
            unit="emails/s", p50_ms=1000 / rate if rate else None, p99_ms=None,
            errors=result["failed"] + result["retried"] + (0 if ok else 1),
            rss=f"sender{'s' if senders > 1 else ''} ≤ {result['maxrss_kb'] / 1024:.0f} MB, "
                f"sink {(sink.peak_rss_kb() or 0) / 1024:.0f} MB",
            target=TARGETS[key], met=rate >= SEND_TARGETS[key] and ok, others=others,
            cpu=f"{1000 * result['cpu_s'] / max(1, result['sent']):.2f} ms/email "
                f"(+ sink {1000 * sink_cpu / max(1, result['sent']):.2f})",
            notes=f"{result['seconds']:.2f} s; sink got {mail['messages']} messages, "
                  f"{mail['recipients']} recipients, {mail['duplicates']} duplicates; "
                  f"p50 column = mean time per email",
        )
        self.details[key] = {"task": result, "sink": mail, "seeded": seeded,
                             "others_percent": others}
        if self.args.profile:
            self._seed_due(1000, f"psend{int(time.time())}x")
            env["CAPTURE_SEND_BATCH_SIZE"] = "1000"
            profiled = self.task("send", env=env, profile=key)
            print(f"    profiled a tick of {profiled['sent']} emails "
                  f"({profiled['emails_per_s']:.0f} emails/s under py-spy)", flush=True)

    def _tracking_paths(self) -> dict:
        tokens = self.task("tokens", "--limit", str(self.args.track_tokens))
        if not tokens["pixels"] or not tokens["clicks"]:
            print("    no sent emails yet: sending some first", flush=True)
            self.scenario_send(report=False)
            tokens = self.task("tokens", "--limit", str(self.args.track_tokens))
        return tokens

    def scenario_track(self, key: str) -> None:
        tokens = self._tracking_paths()
        paths = tokens["pixels"] if key == "pixel" else tokens["clicks"]
        data = self.out / f"{key}-paths.lua"
        data.write_text(lua_table(paths))
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() - 1))
        self.start_server()
        try:
            result, others = self.load("paths.lua", {"BENCH_DATA": str(data)})
            memory = self.server.memory()
            time.sleep(1)
        finally:
            self.stop_server()
        # A person's click queues its tag and triggers for the processor: fold them in
        # and count its CPU as part of each click's cost.
        folded = self.task("intake")
        counts = self.task("counts", "--since", since)
        self.profile_http(key, "paths.lua", {"BENCH_DATA": str(data)})
        kind = "open" if key == "pixel" else "click"
        logged = counts["events_since"].get(kind, 0)
        processor = ""
        if key == "click":
            processor_ms = 1000 * folded["cpu_s"] / max(1, logged)
            result["processor_cpu_ms_per_click"] = processor_ms
            processor = (f"; the processor followed {folded['clicks']} clicks at "
                         f"{processor_ms:.2f} ms CPU per click logged")
        expected = "200" if key == "pixel" else "302"
        errors = _errors(result) + sum(n for code, n in result["statuses"].items()
                                       if code != expected)
        met = (result["throughput"] >= 3200 and result["latency_us"]["p99"] < 50_000
               and errors == 0)
        label = ("open pixel  GET /o/<token>" if key == "pixel"
                 else "click redirect  GET /c/<token>")
        self.http_row(key, label, result, others, memory, errors,
                      f"{len(paths)} distinct tokens; {logged} {kind} events logged "
                      f"(incl. warm-up){processor}", met)

    def scenario_pixel(self) -> None:
        self.scenario_track("pixel")

    def scenario_click(self) -> None:
        self.scenario_track("click")

    # -- scale --

    def scale_database(self, leads: int) -> tuple[dict, Path]:
        """A database with `leads` leads (and 2× visits, ~1.3× deliveries, = events),
        1,000 of them due; generated once per run and size."""
        cache = self.__dict__.setdefault("_scale", {})
        if leads not in cache:
            cache[leads] = self._generate_scale(leads)
        return cache[leads]

    def _generate_scale(self, leads: int) -> tuple[dict, Path]:
        label = f"{leads // 1000}k" if leads < 1_000_000 else f"{leads // 1_000_000}M"
        folder = self.out / f"scale-{label}"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        database = folder / "capture.db"
        common.install_sequences(folder)
        env = common.stack_env(folder, database, base_url="http://127.0.0.1:5000",
                               smtp_port=self.sink.port,
                               extra={"CAPTURE_SEND_BATCH_SIZE": "1000",
                                      "CAPTURE_SEND_RATE_PER_MINUTE": "1000000"})
        print(f"    generating {leads:,} leads …", flush=True)
        watch = self.watch()
        result = subprocess.run(
            [str(PYTHON), str(BENCH / "generate.py"), "--database", str(database),
             "--leads", str(leads), "--due", "1000", "--json"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
        others = watch.others_percent()
        if result.returncode:
            raise RuntimeError(f"generate failed:\n{result.stderr[-3000:]}")
        generated = json.loads(result.stdout.strip().splitlines()[-1])
        generated["others_percent"] = others
        generated["size_mb"] = round(database.stat().st_size / 2**20)
        rows = sum(generated["rows"].values())
        self.row(f"generate.py: {leads:,} leads ({rows / 1e6:.1f} M rows)",
                 key=f"generate-{label}", throughput=rows / generated["seconds"],
                 unit="rows/s", p50_ms=generated["seconds"] * 1000, p99_ms=None, errors=0,
                 rss="", target="well under a few minutes", met=generated["seconds"] < 180,
                 others=others, notes=f"{generated['seconds']:.0f} s total; "
                 + ", ".join(f"{k} {v:,}" for k, v in generated["rows"].items())
                 + f"; {generated['size_mb']:,} MB; p50 column = total time")
        self.details[f"generate-{label}"] = generated
        return env, folder

    def scenario_scheduler(self) -> None:
        for leads in sorted({min(10_000, self.args.scale), self.args.scale}):
            env, _ = self.scale_database(leads)
            self.scheduler_at(leads, env)

    def scheduler_at(self, leads: int, env: dict) -> None:
        label = f"{leads:,} leads"
        self.sink.reset()
        watch = self.watch()
        result = self.task("scheduler", "--reps", str(self.args.reps), "--batch", "1000",
                           env=env)
        others = watch.others_percent()
        mail = self.sink.wait_for(result["full_tick"]["sent"], timeout=30)
        rss = f"scheduler {result['maxrss_kb'] / 1024:.0f} MB"
        counts = result["counts"]
        size = (f"{counts['leads']:,} leads, {counts['enrollments']:,} enrolments, "
                f"{counts['deliveries']:,} deliveries")
        idle, claim, full = result["idle_tick"], result["claim"], result["full_tick"]
        parts = ", ".join(f"{k} {v * 1000:.1f} ms"
                          for k, v in result["idle_parts_median_s"].items())
        self.row(f"scheduler: idle tick (nothing due) @ {label}", key=f"idle-{leads}",
                 throughput=None, unit="", p50_ms=idle["median_s"] * 1000,
                 p99_ms=idle["max_s"] * 1000, errors=0, rss=rss,
                 target="cost ∝ due work, not leads", met=None, others=others,
                 notes=f"{size}; median of {idle['runs']}; parts: {parts}")
        self.row(f"scheduler: claim 1,000 due @ {label}", key=f"claim-{leads}",
                 throughput=1000 / claim["median_s"], unit="claims/s",
                 p50_ms=claim["median_s"] * 1000, p99_ms=claim["max_s"] * 1000,
                 errors=0 if claim["claimed"] == 1000 else 1000 - claim["claimed"], rss=rss,
                 target="", met=None, others=others,
                 notes=f"claimed {claim['claimed']}; median/max of {claim['runs']} runs")
        conditions = result["conditions"]
        self.row(f"scheduler: when: of 1,000 due leads @ {label}", key=f"when-{leads}",
                 throughput=None, unit="", p50_ms=conditions["sql"]["median_s"] * 1000,
                 p99_ms=conditions["sql"]["max_s"] * 1000, errors=0, rss=rss,
                 target="< 100 ms of SQL", met=conditions["sql"]["median_s"] < 0.1,
                 others=others,
                 notes=f"{conditions['statements']} statements (per chunk of 100: its stop "
                       f"tags, its when:), rows fetched; {conditions['holds']} hold; "
                       "the slower of bench/tasks.py's two conditions")
        ok = full["sent"] == 1000 and mail["messages"] == 1000 and mail["duplicates"] == 0
        self.row(f"scheduler: tick sending 1,000 due @ {label}", key=f"tick-{leads}",
                 cpu=f"{full['cpu_s']:.2f} s CPU",
                 throughput=full["emails_per_s"], unit="emails/s",
                 p50_ms=full["seconds"] * 1000, p99_ms=None,
                 errors=0 if ok else 1, rss=rss, target="", met=None, others=others,
                 notes=f"{full['summary']}; sink got {mail['messages']}; "
                       f"p50 column = tick time")
        self.details[f"scheduler-{leads}"] = {**result, "sink": mail, "others_percent": others}

    def scenario_metrics(self) -> None:
        env, folder = self.scale_database(self.args.scale)
        watch = self.watch()
        result = self.task("metrics", "--reps", str(self.args.metric_reps), env=env)
        others = watch.others_percent()
        counts = result["counts"]
        size = (f"{counts['events']:,} events, {counts['leads']:,} leads, "
                f"{counts['visits']:,} visits")
        labels = {"report": "metrics.report() (all time)",
                  "report_by_source": "metrics.report(by=\"source\") (all time)",
                  "overview_30d_by_day": "dashboard overview: report(30 d, by=\"day\")",
                  "sources_30d": "dashboard sources: report(30 d, by=\"source\")"}
        rss = f"process {result['maxrss_kb'] / 1024:.0f} MB"
        for name, case in result["cases"].items():
            self.row(f"{labels[name]} @ {counts['events']:,} events", key=f"metrics-{name}",
                     cpu=f"{case['cpu_median_s']:.2f} s CPU",
                     throughput=None, unit="", p50_ms=case["median_s"] * 1000,
                     p99_ms=case["max_s"] * 1000, errors=0, rss=rss, target="", met=None,
                     others=others, notes=f"{size}; {case['rows']} rows; "
                                          f"median/max of {case['runs']} runs")
        self.details["metrics"] = {**result, "others_percent": others}


def _errors(result: dict) -> int:
    errors = result["errors"]
    return errors["connect"] + errors["read"] + errors["write"] + errors["timeout"] + \
        errors["status"]


# --- the table ------------------------------------------------------------------------

def _number(value, unit: str = "") -> str:
    if value is None:
        return "—"
    if value >= 100:
        text = f"{value:,.0f}"
    elif value >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def _ms(value) -> str:
    if value is None:
        return "—"
    if value >= 10_000:
        return f"{value / 1000:.1f} s"
    return f"{value:.1f} ms" if value >= 1 else f"{value:.2f} ms"


def format_row_text(row: dict) -> str:
    met = {True: "met", False: "MISSED", None: ""}[row.get("met")]
    return (f"{row['scenario']}: {_number(row.get('throughput'), row.get('unit', ''))}, "
            f"p50 {_ms(row.get('p50_ms'))}, p99 {_ms(row.get('p99_ms'))}, "
            f"errors {row.get('errors')}, {row.get('rss')} {met}")


def markdown_table(rows: list[dict], info: dict) -> str:
    lines = [
        "| scenario | throughput | p50 | p99 | errors | peak RSS | CPU per op | target | met "
        "| other load |",
        "|---|---:|---:|---:|---:|---|---|---|---|---:|",
    ]
    for row in rows:
        met = {True: "✅ met", False: "❌ missed", None: ""}[row.get("met")]
        lines.append(
            f"| {row['scenario']} | {_number(row.get('throughput'), row.get('unit', ''))} | "
            f"{_ms(row.get('p50_ms'))} | {_ms(row.get('p99_ms'))} | {row.get('errors')} | "
            f"{row.get('rss') or ''} | {row.get('cpu') or ''} | {row.get('target') or ''} | "
            f"{met} | "
            f"{row.get('others', 0):.0f} % |")
    m = info["machine"]
    lines += [
        "",
        f"Machine: {m['nproc']} × {m['cpu']} ({m['mhz']} MHz), {m['ram_gib']} GiB RAM, "
        f"Linux {m['kernel']}, Python {m['python']}, SQLite {m['sqlite']}, {m['wrk']}. "
        f"Code: {m['commit']}.",
        f"Server: {info['server']} {info['workers']} {info['worker_class']} workers, "
        f"{info.get('database', 'SQLite WAL')}; "
        f"load: wrk -t{info['threads']} -c{info['connections']}, {info['duration']} s per "
        f"scenario after {info['warmup']} s warm-up, on the same machine.",
        "p50/p99 of HTTP rows: wrk's latency percentiles. Timed rows: median and max of "
        "the runs (see notes). \"other load\": CPU the machine spent on processes that are "
        "not the bench's, as a share of all cores, during the scenario. \"CPU per op\": "
        "CPU time the server processes (or the task process) spent per request or item, "
        "which other load hardly changes: 2 cores / CPU per request bounds throughput.",
    ]
    notes = [f"- {row['scenario']}: {row['notes']}" for row in rows if row.get("notes")]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines)


def main() -> None:
    common.ensure_venv_python()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, metavar="SCENARIO",
                        help=f"run these scenarios only ({', '.join(SCENARIOS)})")
    parser.add_argument("--quick", action="store_true",
                        help="3 s runs, fewer tokens and emails, 100k instead of 1M leads")
    parser.add_argument("--smoke", action="store_true",
                        help="every scenario at toy size (1 s runs, 2,000 leads): checks "
                             "that the bench works, measures nothing (make test runs it)")
    parser.add_argument("--duration", type=float, help="seconds per load run (10)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up before each (2)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                        help="gunicorn workers (as many as cores: on SQLite more only "
                             "wait for its one writer)")
    parser.add_argument("--worker-class", default="sync", help="gunicorn worker class")
    parser.add_argument("--server", choices=["gunicorn", "granian"], default="gunicorn",
                        help="the WSGI server (granian: `pip install granian` into .venv "
                             "first; it is not a dependency)")
    parser.add_argument("--worker-threads", type=int, default=4,
                        help="threads per worker with --worker-class gthread")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections (8)")
    parser.add_argument("--scale", type=int, help="leads of the big database (1,000,000)")
    parser.add_argument("--senders", type=int, default=2,
                        help="scheduler processes sending at once in `send` (2)")
    parser.add_argument("--sink", choices=["light", "aiosmtpd"], default="light",
                        help="the SMTP sink's implementation (light)")
    parser.add_argument("--send", type=int, help="emails in the sending run (5,000)")
    parser.add_argument("--relay-send", type=int,
                        help="emails in the send-relay run (3,000)")
    parser.add_argument("--relay-delay-ms", type=float, default=20,
                        help="the send-relay sink's delay before each reply (20 ms)")
    parser.add_argument("--smtp-connections", type=int,
                        help="CAPTURE_SMTP_CONNECTIONS of the senders (the setting's default)")
    parser.add_argument("--profile", action="store_true",
                        help="record py-spy profiles (bench/requirements.txt) and summarize")
    parser.add_argument("--quiet-wait", type=float, default=60,
                        help="wait up to this long for other processes to calm down "
                             "before each scenario (60; 0 = never)")
    parser.add_argument("--database-url",
                        help="run the page and opt-in scenarios (page, page-test, optin, "
                             "optin-doi) against this empty database instead of SQLite, "
                             "e.g. postgresql+psycopg://postgres@127.0.0.1:5432/bench")
    parser.add_argument("--keep", action="store_true", help="keep the big databases")
    parser.add_argument("--out", type=Path, help="artefact folder (bench/out/<time>)")
    args = parser.parse_args()
    # The pixel and click scenarios send emails first, on the SQLite file.
    http_only = {"page", "page-test", "optin", "optin-doi"}
    if args.database_url and not set(args.only or ()) <= http_only or \
            args.database_url and not args.only:
        parser.error(f"--database-url takes --only with {', '.join(sorted(http_only))}")

    quick = args.quick
    args.duration = args.duration or (3 if quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if quick else 2)
    args.scale = args.scale or (100_000 if quick else 1_000_000)
    args.send = args.send or (1000 if quick else 5000)
    args.relay_send = args.relay_send or (1000 if quick else 3000)
    args.optin_tokens = 300 if quick else 2000
    args.track_tokens = 500 if quick else 2000
    args.reps = 3 if quick else 5
    args.metric_reps = 2 if quick else 3
    if args.smoke:
        args.duration, args.warmup, args.scale, args.send = 1, 0.3, 2000, 20
        args.relay_send = 20
        args.optin_tokens, args.track_tokens, args.reps, args.metric_reps = 40, 20, 1, 1
        args.quiet_wait = 0
    args.out = (args.out or BENCH / "out" / time.strftime("%Y%m%d-%H%M%S")).resolve()
    selected = args.only or list(SCENARIOS)

    ensure_wrk()
    info = {"machine": machine(), "workers": args.workers, "worker_class": args.worker_class,
            "server": args.server,
            "database": "PostgreSQL" if args.database_url else "SQLite WAL",
            "threads": args.threads, "connections": args.connections,
            "duration": args.duration, "warmup": args.warmup, "scale": args.scale}
    m = info["machine"]
    print(f"Capture bench → {args.out}\n{m['nproc']} × {m['cpu']}, {m['ram_gib']} GiB RAM; "
          f"{args.server} {args.workers} {args.worker_class} workers; "
          f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s", flush=True)

    bench = Bench(args)
    stop_error = None
    try:
        for name in SCENARIOS:
            if name not in selected:
                continue
            print(f"\n== {name}", flush=True)
            try:
                getattr(bench, f"scenario_{name.replace('-', '_')}")()
            except Exception as error:  # report it and go on with the others
                bench.failures.append(f"{name}: {error}")
                print(f"    FAILED: {error}", flush=True)
        if set(selected) & {"page", "optin", "pixel", "click"}:
            print("\n== SQL per request (Flask test client, one request each)", flush=True)
            try:
                bench.details["statements"] = bench.task("statements")
            except Exception as error:  # noqa: BLE001
                bench.failures.append(f"statements: {error}")
    except KeyboardInterrupt as error:
        stop_error = error
    finally:
        bench.close()

    table = markdown_table(bench.rows, info)
    (args.out / "results.md").write_text(table + "\n")
    (args.out / "results.json").write_text(json.dumps(
        {"info": info, "rows": bench.rows, "details": bench.details,
         "failures": bench.failures}, indent=2, default=str))
    if args.profile:
        from bench.profile_summary import summarize

        summaries = [summarize(path, 15, "tick (" if path.stem.startswith("profile-send")
                               else "Flask.wsgi_app")
                     for path in sorted(args.out.glob("profile-*.txt"))]
        (args.out / "profiles.txt").write_text("\n\n".join(summaries) + "\n")
        print("\n" + "\n\n".join(summaries))
    statements = bench.details.get("statements")
    if statements:
        lines = ["SQL per request (in-process, Flask test client; SQL = time in the driver):"]
        for name, item in statements.items():
            if isinstance(item, dict) and "statements" in item:
                kinds = {}
                for entry in item["list"]:
                    verb = entry["sql"].split()[0]
                    kinds[verb] = kinds.get(verb, 0) + entry["count"]
                lines.append(f"  {name:<16} {item['status']}  {item['ms']:6.2f} ms in the app, "
                             f"{item['statements']:2d} statements "
                             f"({', '.join(f'{n} {verb}' for verb, n in kinds.items())}), "
                             f"{item['sql_ms']:.2f} ms SQL")
        summary = "\n".join(lines)
        (args.out / "statements.txt").write_text(summary + "\n\n" + json.dumps(
            statements, indent=2) + "\n")
        print("\n" + summary)
    print("\n" + table)
    if bench.failures:
        print("\nProblems:\n" + "\n".join(f"- {line}" for line in bench.failures))
    print(f"\nArtefacts: {args.out}")
    if stop_error is not None:
        raise stop_error
    sys.exit(1 if bench.failures else 0)


if __name__ == "__main__":
    main()
