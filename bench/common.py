"""Shared pieces of the benchmark: paths, the environment of a bench stack, the SMTP
sink process, gunicorn, peak RSS, and `flask` commands.

Everything here starts real processes on loopback only and stops them by their pid.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = VENV_BIN / "python"
BROWSER_UA = ("Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0")


def ensure_venv_python() -> None:
    """Re-run the current script with the project's .venv Python (it has the app's
    dependencies); `make bench` already does."""
    if not PYTHON.exists():
        sys.exit("No .venv: run `make bench` (it creates .venv first).")
    if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        os.execv(str(PYTHON), [str(PYTHON), *sys.argv])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stack_env(workdir: Path, database: Path, *, base_url: str, smtp_port: int,
              extra: dict | None = None) -> dict:
    """The environment of a production-like stack: SMTP to the sink, the scheduler
    off (sending is measured on its own), the fill-time trap off, the opt-in rate limit
    counting (in the database, as in production) but too high to refuse anything."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CAPTURE_")}
    env.pop("FLASK_DEBUG", None)
    env.update({
        "CAPTURE_INSTANCE_PATH": str(workdir / "instance"),
        "CAPTURE_DATABASE_URL": f"sqlite:///{database}",
        "CAPTURE_BASE_URL": base_url,
        "CAPTURE_MAIL_BACKEND": "smtp",
        "CAPTURE_SMTP_HOST": "127.0.0.1",
        "CAPTURE_SMTP_PORT": str(smtp_port),
        "CAPTURE_SEQUENCES_DIR": str(workdir / "sequences"),
        "CAPTURE_SCHEDULER": "off",
        "CAPTURE_OPTIN_RATE_LIMIT": "1000000/minute",
        "CAPTURE_MIN_FORM_SECONDS": "0",
        "CAPTURE_POSTAL_ADDRESS": "1 Bench Street, Benchville",
        "CAPTURE_MAIL_FROM": "Capture Bench <no-reply@bench.example>",
        "PYTHONUNBUFFERED": "1",
        **(extra or {}),
    })
    return env


def install_sequences(workdir: Path) -> None:
    """The benchmark's sequence folder, copied into the run's folder."""
    target = workdir / "sequences" / "bench"
    if not target.exists():
        shutil.copytree(BENCH / "sequences" / "bench", target)


def flask(env: dict, *args: str, timeout: float = 300) -> str:
    """Run `flask --app wsgi ARGS` with this environment; its output."""
    result = subprocess.run([str(VENV_BIN / "flask"), "--app", "wsgi", *args], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"flask {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def prepare_database(env: dict) -> None:
    """Schema (the real migrations) and the bench pages, through the real CLI."""
    flask(env, "init")
    flask(env, "pages", "import", str(BENCH / "pages.json"))


def peak_rss_kb(pid: int) -> int | None:
    """VmHWM (peak resident set) of a running process, in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def children(pid: int) -> list[int]:
    """Direct child pids of a process."""
    found = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            found.extend(int(child) for child in text)
    except OSError:
        pass
    return sorted(set(found))


def stop_process(process: subprocess.Popen, timeout: float = 15) -> None:
    """Terminate one process we started (by its pid), kill it if it hangs."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


class Sink:
    """The SMTP peer: bench/sink.py in its own process (`impl`: light or aiosmtpd),
    counting; `delay_ms` after each command before its reply (a relay far away)."""

    def __init__(self, workdir: Path, impl: str = "light", delay_ms: float = 0) -> None:
        self.port = free_port()
        self.log = open(workdir / f"sink{f'-{delay_ms:g}ms' if delay_ms else ''}.log",  # noqa: SIM115
                        "w")
        self.process = subprocess.Popen(
            [str(PYTHON), str(BENCH / "sink.py"), str(self.port), "--impl", impl,
             "--delay-ms", str(delay_ms)], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
        )
        line = self.process.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError(f"SMTP sink did not start: {line!r}")

    def _ask(self, command: str) -> dict:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def stats(self) -> dict:
        return self._ask("stats")

    def reset(self) -> dict:
        return self._ask("reset")

    def wait_for(self, count: int, timeout: float = 30) -> dict:
        """The stats once `count` messages arrived (or after `timeout`)."""
        deadline = time.monotonic() + timeout
        stats = self.stats()
        while stats["messages"] < count and time.monotonic() < deadline:
            time.sleep(0.1)
            stats = self.stats()
        return stats

    def peak_rss_kb(self) -> int | None:
        return peak_rss_kb(self.process.pid)

    def stop(self) -> None:
        try:
            self.process.stdin.close()
        except OSError:
            pass
        stop_process(self.process)
        self.log.close()


class Server:
    """gunicorn serving wsgi:app the way docs/run/production.md does it; or, with
    `server="granian"`, granian's WSGI interface with as many worker processes (to
    compare the two: `bench/run.py --server granian`, after `pip install granian`)."""

    def __init__(self, env: dict, workdir: Path, *, workers: int,
                 worker_class: str = "sync", threads: int = 1, app: str = "wsgi:app",
                 health: str = "/healthz", server: str = "gunicorn") -> None:
        self.port = int(env["CAPTURE_BASE_URL"].rsplit(":", 1)[1])
        self.base_url = env["CAPTURE_BASE_URL"]
        self.workers = workers
        self.log_path = workdir / f"{server}-{time.strftime('%H%M%S')}.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115
        if server == "granian":
            command = [str(VENV_BIN / "granian"), "--interface", "wsgi", "--host",
                       "127.0.0.1", "--port", str(self.port), "--workers", str(workers),
                       "--blocking-threads", str(threads if worker_class == "gthread" else 1),
                       "--backlog", "2048",
                       "--no-ws", "--log-level", "warning", app]
        else:
            command = [str(VENV_BIN / "gunicorn"), "-w", str(workers), "-b",
                       f"127.0.0.1:{self.port}", "--worker-class", worker_class,
                       "--backlog", "2048", app]
        if server == "gunicorn" and worker_class == "gthread":
            command[1:1] = ["--threads", str(threads)]
        self.process = subprocess.Popen(command, cwd=ROOT, env=env,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        self.health = health
        self._wait_until_up()

    def _wait_until_up(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.base_url}{self.health}", timeout=2) as answer:
                    if answer.status == 200 and len(self.worker_pids()) >= self.workers:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer in {timeout}s; see {self.log_path}")

    def worker_pids(self) -> list[int]:
        return children(self.process.pid)

    def memory(self) -> dict:
        """Peak RSS (KiB) of the master and of each worker, read while running."""
        workers = [rss for rss in (peak_rss_kb(pid) for pid in self.worker_pids()) if rss]
        return {"master_kb": peak_rss_kb(self.process.pid), "workers_kb": workers}

    def stop(self) -> None:
        stop_process(self.process, timeout=30)
        self.log.close()
