"""The scheduler: embedded in the web process (started by the first request, once),
never in CLI commands, tests or the debug reloader's watcher; a failing tick is logged
and the next one runs."""

import logging
import threading
import time
from datetime import UTC, datetime

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy import text

from capture import scheduler
from capture.mail import engine, outcomes
from capture.db import db
from tests.conftest import body_text, create_page, form_tokens

EMBEDDED = {"SCHEDULER": "embedded", "TESTING": False, "SCHEDULER_INTERVAL_SECONDS": 3600,
            "CONFIRM_INTERVAL_SECONDS": 1800}


@pytest.fixture
def started(make_app, monkeypatch):
    """Every BackgroundScheduler the app creates, real ones, shut down after the test
    (set up after make_app, so torn down before its database is disposed)."""
    schedulers: list[BackgroundScheduler] = []

    class Recorded(BackgroundScheduler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            schedulers.append(self)

    monkeypatch.setattr(scheduler, "BackgroundScheduler", Recorded)
    yield schedulers
    for instance in schedulers:
        if instance.running:
            thread = instance._thread
            instance.shutdown(wait=True)
            assert not thread.is_alive()


def get(app, path="/healthz", times=1):
    client = app.test_client()
    for _ in range(times):
        assert client.get(path).status_code == 200


def test_embedded_scheduler_is_not_started_by_creating_the_app(make_app, started):
    make_app(**EMBEDDED)
    assert started == []


def test_embedded_scheduler_starts_on_the_first_request(make_app, started):
    app = make_app(**EMBEDDED)
    get(app)
    assert len(started) == 1
    running = started[0]
    assert running.running
    jobs = {job.id: job for job in running.get_jobs()}
    assert set(jobs) == {scheduler.JOB_ID, scheduler.CONFIRM_JOB_ID, scheduler.INTAKE_JOB_ID}
    assert jobs[scheduler.JOB_ID].trigger.interval.total_seconds() == 3600
    assert jobs[scheduler.INTAKE_JOB_ID].trigger.interval.total_seconds() == 1
    assert jobs[scheduler.CONFIRM_JOB_ID].trigger.interval.total_seconds() == 1800
    assert all(job.args == (app,) for job in jobs.values())


def test_several_requests_start_one_scheduler_with_its_three_jobs(make_app, started):
    app = make_app(**EMBEDDED)
    get(app, times=5)
    assert app.test_client().get("/no-such-page").status_code == 404
    assert len(started) == 1
    assert len(started[0].get_jobs()) == 3


def test_simultaneous_first_requests_start_one_scheduler(make_app, started):
    app = make_app(**EMBEDDED)
    barrier = threading.Barrier(8)
    statuses = []

    def first_request():
        client = app.test_client()
        barrier.wait()
        statuses.append(client.get("/healthz").status_code)

    threads = [threading.Thread(target=first_request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 8
    assert len(started) == 1


def test_the_embedded_job_runs_a_send_tick_in_the_app(make_app, started, monkeypatch):
    app = make_app(**EMBEDDED)
    ran = threading.Event()
    seen = {}

    def fake_tick():
        from flask import current_app

        seen["app"] = current_app._get_current_object()
        ran.set()
        return outcomes.Summary()

    monkeypatch.setattr(engine, "tick", fake_tick)
    get(app)
    started[0].modify_job(scheduler.JOB_ID, next_run_time=datetime.now(UTC))
    assert ran.wait(timeout=10), "the job did not run"
    assert seen["app"] is app


def test_the_embedded_fast_lane_delivers_an_opt_ins_confirmation_within_seconds(
        make_app, started, smtp, tmp_path):
    app = make_app(**{**EMBEDDED, "CONFIRM_INTERVAL_SECONDS": 1}, MAIL_BACKEND="smtp",
                   SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port)
    create_page(app, slug="offer", double_opt_in=True)
    client = app.test_client()
    form = form_tokens(client.get("/p/offer").get_data(as_text=True))
    response = client.post("/p/offer", data={**form, "email": "ann@example.com"})
    assert response.status_code == 303
    assert smtp.messages == []  # nothing inside the request

    deadline = time.monotonic() + 10
    while not smtp.to("ann@example.com") and time.monotonic() < deadline:
        time.sleep(0.1)
    [message] = smtp.to("ann@example.com")
    assert "/confirm/" in body_text(message)


def test_the_scheduler_command_runs_its_jobs(make_app, monkeypatch, tmp_path):
    app = make_app(SEQUENCES_DIR=str(tmp_path / "none"), CONFIRM_INTERVAL_SECONDS=3)
    registered = {}

    class Recorded(BlockingScheduler):
        def start(self, *args, **kwargs):  # records the jobs instead of blocking
            registered.update({job.id: job.trigger.interval.total_seconds()
                               for job in self.get_jobs()})

    monkeypatch.setattr(scheduler, "BlockingScheduler", Recorded)
    result = app.test_cli_runner().invoke(args=["scheduler"])
    assert result.exit_code == 0, result.output
    assert registered == {scheduler.JOB_ID: 10, scheduler.CONFIRM_JOB_ID: 3,
                          scheduler.INTAKE_JOB_ID: 1}


def test_scheduler_off_starts_nothing(make_app, started):
    app = make_app(SCHEDULER="off", TESTING=False)
    get(app, times=3)
    assert started == []


def test_a_testing_app_never_starts_the_embedded_scheduler(make_app, started):
    app = make_app(SCHEDULER="embedded", TESTING=True)
    get(app, times=2)
    assert started == []


def test_debug_reloader_watcher_process_does_not_start_it(make_app, started, monkeypatch):
    monkeypatch.delenv("WERKZEUG_RUN_MAIN", raising=False)
    app = make_app(**EMBEDDED, DEBUG=True)
    get(app, times=2)
    assert started == []


def test_debug_serving_process_starts_it(make_app, started, monkeypatch):
    monkeypatch.setenv("WERKZEUG_RUN_MAIN", "true")
    app = make_app(**EMBEDDED, DEBUG=True)
    get(app)
    assert len(started) == 1


def test_cli_commands_never_start_the_embedded_scheduler(make_app, started, tmp_path):
    app = make_app(**EMBEDDED, SEQUENCES_DIR=str(tmp_path / "none"))
    runner = app.test_cli_runner()
    assert runner.invoke(args=["sequences", "check"]).exit_code == 0
    assert runner.invoke(args=["send-due"]).exit_code == 0
    assert started == []


# --- run_tick ---------------------------------------------------------------------

def test_a_failing_tick_is_logged_and_the_next_one_runs(app, monkeypatch, caplog):
    def broken_tick():
        raise RuntimeError("SMTP configuration exploded")

    monkeypatch.setattr(engine, "tick", broken_tick)
    with caplog.at_level(logging.ERROR, logger="capture.scheduler"):
        assert scheduler.run_tick(app) is None
    [record] = [r for r in caplog.records if r.name == "capture.scheduler"]
    assert record.getMessage() == "scheduler tick failed"
    assert "SMTP configuration exploded" in caplog.text  # with the traceback
    monkeypatch.undo()
    assert isinstance(scheduler.run_tick(app), outcomes.Summary)


def test_a_tick_failing_inside_a_transaction_leaves_the_database_usable(app, monkeypatch,
                                                                       caplog):
    real_tick = engine.tick

    def tick_with_bad_query():
        db.session.execute(text("SELECT * FROM no_such_table"))

    monkeypatch.setattr(engine, "tick", tick_with_bad_query)
    with caplog.at_level(logging.ERROR, logger="capture.scheduler"):
        assert scheduler.run_tick(app) is None
    assert "no_such_table" in caplog.text
    monkeypatch.setattr(engine, "tick", real_tick)
    assert scheduler.run_tick(app).line().startswith("sent 0, ")
