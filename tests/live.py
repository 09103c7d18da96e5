"""A live Capture for tests that need real processes: gunicorn (and a scheduler
process) on a free loopback port, a real SMTP server (aiosmtpd) as its mail peer, and
a database of its own (a SQLite file, or a PostgreSQL schema when
CAPTURE_TEST_DATABASE_URL is set)."""

import csv
import io
import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import POSTGRES_URL, SmtpCollector, _free_port, new_postgres_schema

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OWNER_EMAIL = "owner@example.com"
OWNER_PASSWORD = "e2e owner password"


@dataclass
class Stack:
    """A running Capture: its URL, its SMTP peer and how to run its commands."""

    base_url: str
    smtp: SmtpCollector
    env: dict
    processes: list = field(default_factory=list)

    def flask(self, *args: str, check: bool = True) -> str:
        """Run `flask --app wsgi ARGS` against this stack; return its output."""
        result = subprocess.run([str(BIN / "flask"), "--app", "wsgi", *args], cwd=ROOT,
                                env=self.env, capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"flask {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def fold_in(self) -> str:
        """Fold in the queued sign-ups now, as the scheduler's processor does within a
        second (a stack without a scheduler process has none)."""
        return self.flask("intake", "process")

    def leads(self, page: str | None = None) -> list[dict]:
        """The leads as `leads export` writes them, once the queued sign-ups are in."""
        self.fold_in()
        output = self.flask("leads", "export", *(["--page", page] if page else []))
        return list(csv.DictReader(io.StringIO(output)))

    def start_scheduler(self) -> subprocess.Popen:
        """One more `flask --app wsgi scheduler` process (stopped with the stack)."""
        process = subprocess.Popen([str(BIN / "flask"), "--app", "wsgi", "scheduler"],
                                   cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        self.processes.append(process)
        return process

    def seed_leads(self, count: int, prefix: str = "bulk", page: str = "launch") -> None:
        """`count` approved, subscribed leads on `page` (prefix0@example.com …),
        enrolled in its sequence, written in one transaction."""
        script = f"""
from sqlalchemy import select
from capture import create_app
from capture.mail import membership
from capture.db import db
from capture.models import Lead, Page
with create_app().app_context():
    page = db.session.scalar(select(Page).where(Page.slug == {page!r}))
    leads = [Lead(email=f"{prefix}{{n}}@example.com", name="Bulk", public_ref=f"{prefix}{{n}}",
                  page_id=page.id, review="approved", subscription="subscribed")
             for n in range({count})]
    db.session.add_all(leads)
    db.session.flush()
    for lead in leads:
        membership.enroll(lead)
    db.session.commit()
"""
        seeded = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=self.env,
                                capture_output=True, text=True, timeout=120)
        assert seeded.returncode == 0, seeded.stderr

    def database(self):
        """An SQLAlchemy engine on this stack's database (dispose it when done)."""
        import sqlalchemy

        return sqlalchemy.create_engine(self.env["CAPTURE_DATABASE_URL"])

    def wait_for_mail(self, address: str, count: int = 1, timeout: float = 20.0):
        """The messages to `address`, once at least `count` arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.smtp.to(address)
            if len(found) >= count:
                return found
            time.sleep(0.1)
        raise AssertionError(f"{count} message(s) to {address} did not arrive in {timeout}s; "
                             f"got {[str(m['Subject']) for m in self.smtp.to(address)]}")


def _database_url(tmp: Path) -> tuple[str, callable]:
    """A database of its own for this stack: a SQLite file, or a PostgreSQL schema."""
    if not POSTGRES_URL:
        return f"sqlite:///{tmp / 'capture.db'}", lambda: None
    return new_postgres_schema("capture_e2e")


def _wait_until_up(url: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited: {process.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout}s")


def start_stack(tmp: Path, *, workers: int = 2, scheduler: bool = True,
                extra_env: dict | None = None, smtp: SmtpCollector | None = None,
                server_command=None):
    """Start SMTP (`smtp`: a handler of the test's own), migrate and seed the
    database, then gunicorn (and the scheduler). `server_command(port)`: the gunicorn
    command line to serve on that loopback port, instead of `gunicorn -w workers`."""
    from aiosmtpd.controller import Controller

    smtp = smtp or SmtpCollector()
    controller = Controller(smtp, hostname="127.0.0.1", port=_free_port())
    controller.start()
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    database_url, drop_database = _database_url(tmp)
    sequences = tmp / "sequences"
    (sequences / "launch").mkdir(parents=True)
    (sequences / "launch" / "01-welcome.md").write_text(
        "---\nsubject: Welcome aboard, {{ lead.first_name }}\ndelay: 0\n---\n"
        "Hi {{ lead.first_name }}, [read the guide]"
        f"({base_url}/p/launch?utm_source=email&from=welcome).\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("CAPTURE_")}
    env.update({
        "CAPTURE_INSTANCE_PATH": str(tmp / "instance"),
        "CAPTURE_DATABASE_URL": database_url,
        "CAPTURE_BASE_URL": base_url,
        "CAPTURE_MAIL_BACKEND": "smtp",
        "CAPTURE_SMTP_HOST": "127.0.0.1",
        "CAPTURE_SMTP_PORT": str(controller.port),
        "CAPTURE_SEQUENCES_DIR": str(sequences),
        "CAPTURE_SCHEDULER": "off",
        "CAPTURE_SCHEDULER_INTERVAL_SECONDS": "1",
        "CAPTURE_MACHINE_SECONDS": "0",
        "CAPTURE_POSTAL_ADDRESS": "1 Test Street, Testville",
        **(extra_env or {}),
    })
    stack = Stack(base_url, smtp, env)
    stack.flask("init")
    pages = tmp / "pages.json"
    pages.write_text(json.dumps([
        {"slug": "launch", "title": "Launch Guide", "headline": "Get the launch guide",
         "fields": [{"name": "name", "label": "First name", "type": "text", "required": True},
                    {"name": "email", "label": "Email", "type": "email", "required": True}],
         "consent": "Send me the guide and follow-up emails.", "sequence": "launch",
         "thank_you": "The guide is yours.", "payout": "2.00"},
        {"slug": "vetted", "title": "Vetted Offer", "review": "manual", "double_opt_in": False,
         "fields": [{"name": "name", "label": "Name", "type": "text", "required": True},
                    {"name": "email", "label": "Email", "type": "email", "required": True}],
         "sequence": "launch", "payout": "5.00"},
    ]))
    stack.flask("pages", "import", str(pages))
    stack.flask("owner", "create", OWNER_EMAIL, "--password", OWNER_PASSWORD)
    command = (server_command(port) if server_command else
               [str(BIN / "gunicorn"), "-w", str(workers), "-b", f"127.0.0.1:{port}", "wsgi:app"])
    server = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    stack.processes.append(server)
    if scheduler:
        stack.processes.append(subprocess.Popen(
            [str(BIN / "flask"), "--app", "wsgi", "scheduler"], cwd=ROOT, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
    _wait_until_up(f"{base_url}/healthz", server)

    def stop():
        for process in stack.processes:
            process.terminate()
        for process in stack.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if server.stderr:
            server.stderr.close()
        controller.stop()
        drop_database()

    return stack, stop
