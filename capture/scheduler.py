"""The scheduler: APScheduler interval jobs, kept as data in `JOBS`: the intake's
processor that folds in the queued sign-ups every CAPTURE_INTAKE_INTERVAL_SECONDS, the
tick (the
winners of broadcast subject tests, `engine.tick`, webhooks, the retention of
unconfirmed leads, rollups) every CAPTURE_SCHEDULER_INTERVAL_SECONDS, the fast
lane that sends the queued confirmation emails every CAPTURE_CONFIRM_INTERVAL_SECONDS
(a visitor is waiting for that email), and, when CAPTURE_BOUNCE_MAILBOX is set, the
bounce mailbox every CAPTURE_BOUNCE_INTERVAL_SECONDS (a job of its own: a slow mailbox
never holds up sending).

`flask --app wsgi scheduler` runs them in its own process (production, any number of
them); CAPTURE_SCHEDULER=embedded runs them inside the web process, started on the
first request so that only a serving process runs them (never a CLI command, never the
debug reloader's watcher process).
"""

import logging
import os
import threading

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from flask import Flask
from sqlalchemy.exc import OperationalError

from capture.leads import confirmations, erasure, intake
from capture.numbers import rollups, subject_winners
from capture.mail import engine, mailbox, outcomes
from capture.webhooks import delivery
from capture.db import db

log = logging.getLogger(__name__)
JOB_ID = "capture-send-due"
CONFIRM_JOB_ID = "capture-confirmations"
BOUNCE_JOB_ID = "capture-bounces"
INTAKE_JOB_ID = "capture-intake"


def run_tick(app: Flask) -> outcomes.Summary | None:
    """One tick inside an app context: the emails, then the webhooks. Each part's
    errors are logged and never stop the other part or the scheduler. (The queued
    confirmation emails have their own, faster job: `run_confirmations`.)"""
    with app.app_context():
        _pick_winners()
        try:
            summary = engine.tick()
        except Exception:  # a bad tick must not kill the scheduler thread
            log.exception("scheduler tick failed")
            db.session.rollback()
            summary = None
        else:
            if summary.sent or summary.failed or summary.retried or summary.unknown:
                log.info("scheduler: %s", summary.line())
        _deliver_webhooks()
        _erase_unconfirmed()
        _fold_rollups()
        return summary


def _pick_winners() -> None:
    """Pick the winners of the broadcast subject tests whose wait is over, before the
    tick, which then sends them to the rest."""
    try:
        subject_winners.pick_due()
    except Exception:
        log.exception("picking the winners of subject tests failed")
        db.session.rollback()


def _erase_unconfirmed() -> None:
    """Erase a batch of leads unconfirmed past CAPTURE_UNCONFIRMED_RETENTION_DAYS."""
    try:
        erased = erasure.erase_unconfirmed()
    except Exception:
        log.exception("erasing unconfirmed leads failed")
        db.session.rollback()
        return
    if erased:
        log.info("scheduler: erased %s leads unconfirmed past the retention", erased)


def _fold_rollups() -> None:
    """Fold new rows into the report rollups, so a dashboard load has little left to do."""
    try:
        with db.engine.connect() as connection:
            rollups.refresh(connection)
    except OperationalError as error:  # locked by a long writer: the next tick folds
        log.warning("report rollups not folded this tick: %s", error)
    except Exception:
        log.exception("folding the report rollups failed")


def run_intake(app: Flask) -> None:
    """Fold in the sign-ups the opt-in forms queued (capture.leads.intake), inside an
    app context; errors are logged, and the sign-ups wait for the next run."""
    with app.app_context():
        try:
            folded = intake.process()
        except Exception:
            log.exception("folding in the queued sign-ups failed")
            db.session.rollback()
            return
        if folded.stored or folded.failed:
            log.info("scheduler: %s", folded.line())


def run_confirmations(app: Flask) -> None:
    """The fast lane, inside an app context: email the queued leads their
    confirmation link, within the rate cap; errors are logged."""
    with app.app_context():
        _send_queued_confirmations()


def _send_queued_confirmations() -> None:
    try:
        sent = confirmations.send_queued()
    except Exception:
        log.exception("queued confirmation emails failed")
        db.session.rollback()
        return
    if sent:
        log.info("scheduler: sent %s queued confirmation emails", sent)


def _deliver_webhooks() -> None:
    """Post the due webhook deliveries (inside the app context)."""
    try:
        result = delivery.deliver_due()
    except Exception:
        log.exception("webhook delivery run failed")
        db.session.rollback()
        return
    if result.busy():
        log.info("scheduler: %s", result.line())


def run_bounces(app: Flask) -> None:
    """Read the bounce mailbox, inside an app context: its own job, so a mailbox that
    refuses the login, drops the connection or is slow never holds up sending; its
    failure is one log line."""
    with app.app_context():
        try:
            done = mailbox.fetch()
        except mailbox.MailboxError as error:
            log.warning("bounce mailbox not read: %s", error)
            db.session.rollback()
            return
        except Exception:
            log.exception("reading the bounce mailbox failed")
            db.session.rollback()
            return
        if done is not None and (done.handled or done.left):
            log.info("scheduler: %s", done.line())


# The jobs: what runs, under which id, every how many seconds (a setting's name), and
# the setting that must be set for it to run at all.
JOBS = (
    {"func": run_tick, "id": JOB_ID, "interval": "SCHEDULER_INTERVAL_SECONDS"},
    {"func": run_intake, "id": INTAKE_JOB_ID, "interval": "INTAKE_INTERVAL_SECONDS"},
    {"func": run_confirmations, "id": CONFIRM_JOB_ID, "interval": "CONFIRM_INTERVAL_SECONDS"},
    {"func": run_bounces, "id": BOUNCE_JOB_ID, "interval": "BOUNCE_INTERVAL_SECONDS",
     "when": "BOUNCE_MAILBOX"},
)


def _add_jobs(scheduler, app: Flask) -> None:
    for job in JOBS:
        if job.get("when") and not app.config[job["when"]]:
            continue
        scheduler.add_job(
            job["func"], "interval", args=[app], id=job["id"],
            seconds=app.config[job["interval"]],
            max_instances=1, coalesce=True, replace_existing=True,
        )


def run_foreground(app: Flask) -> None:
    """Run the jobs in this process until interrupted (the `scheduler` command)."""
    scheduler = BlockingScheduler(timezone="UTC")
    _add_jobs(scheduler, app)
    run_intake(app)
    run_confirmations(app)
    run_tick(app)
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass


def init_app(app: Flask) -> None:
    """With CAPTURE_SCHEDULER=embedded, start the job in the first serving request."""
    if app.config["SCHEDULER"] != "embedded" or app.testing:
        return
    if app.debug and os.environ.get("WERKZEUG_RUN_MAIN") != "true":
        return  # the reloader's watcher process serves nothing
    lock = threading.Lock()
    state: dict[str, BackgroundScheduler | None] = {"scheduler": None}

    @app.before_request
    def _start_embedded_scheduler() -> None:
        if state["scheduler"] is not None:
            return
        with lock:
            if state["scheduler"] is None:
                scheduler = BackgroundScheduler(timezone="UTC", daemon=True)
                _add_jobs(scheduler, app)
                scheduler.start()
                state["scheduler"] = scheduler
                log.info("embedded scheduler started (every %ss, confirmations every %ss)",
                         app.config["SCHEDULER_INTERVAL_SECONDS"],
                         app.config["CONFIRM_INTERVAL_SECONDS"])
