"""The intake: sign-ups from the opt-in page and the embedded form, stored by the
request as one durable append and folded in by the scheduler's processor.

With CAPTURE_OPTIN_PROCESSING=queued (the default) a sign-up that passed validation,
the bot traps and the rate limit is one `intake` row, committed before the visitor
gets the answer: a crash of any process after that loses nothing. `process` (a
scheduler job every CAPTURE_INTAKE_INTERVAL_SECONDS, also in the embedded scheduler
of `make run`) takes a batch of rows and makes of each what `optin.store_optin`
makes (the lead or the repeat, events, tags, enrolment, webhooks, the confirmation
email queued), dated when the visitor signed up, and deletes the rows in the same
transaction. A crash before its commit leaves the rows to the next run; after it
they are gone: each sign-up is folded in exactly once. Two processors take disjoint
batches (PostgreSQL: SKIP LOCKED; SQLite: the DELETE takes the one write lock).

A row that fails for a reason of its own (its page deleted meanwhile, a bug) is kept
as `failed` with the error, so nothing is lost, and the dashboard says so;
`flask --app wsgi intake retry` queues failed rows again. With `direct`, the request
stores the sign-up itself, as the API always does (it answers with the lead).

A person's click (not a scanner's) is queued the same way, as a `click` row beside
its click event (capture.leads.engagement): the processor gives the link's tag and
starts the click-triggered sequences, dated when the person clicked.

The rows hold personal data until they are folded in, and a failed one for as long as
it is kept: `holding` finds a person's rows, which their data export shows
(capture.leads.personal_data) and their erasure deletes (`forget`).
"""

import dataclasses
import logging
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import ColumnElement, bindparam, delete, insert, select, update

from capture import clock
from capture.claims import unexpected
from capture.db import db, is_unavailable
from capture.leads import engagement, optin
from capture.mail.library import looked_at_once
from capture.models import Intake, Lead, Page
from capture.pages import variants

log = logging.getLogger(__name__)

_APPEND = insert(Intake.__table__)
_ANY_WAITING = select(Intake.id).where(Intake.state == "waiting").limit(1)
_WAITING = (select(Intake.id).where(Intake.state == "waiting").order_by(Intake.id)
            .limit(bindparam("limit")).with_for_update(skip_locked=True))
_TAKEN = (Intake.id, Intake.kind, Intake.page_id, Intake.payload, Intake.created_at)
_ERASED = select(Lead.id).where(Lead.id == bindparam("lead_id"),
                                Lead.subscription == "erased")
_TAKE = (delete(Intake).where(Intake.id.in_(_WAITING.scalar_subquery()))
         .returning(*_TAKEN).execution_options(synchronize_session=False))
_TAKE_ONE = (delete(Intake).where(Intake.id == bindparam("intake_id"),
                                  Intake.state == "waiting")
             .returning(*_TAKEN).execution_options(synchronize_session=False))


def receive(page: Page, signup: optin.OptIn) -> None:
    """A sign-up the form accepted: appended for the processor (committed before
    returning), or with CAPTURE_OPTIN_PROCESSING=direct stored at once."""
    if current_app.config["OPTIN_PROCESSING"] == "direct":
        optin.submit_optin(page, signup)
        return
    db.session.connection().execute(_APPEND, {
        "kind": "optin", "page_id": page.id, "payload": dataclasses.asdict(signup),
        "created_at": clock.utcnow(), "state": "waiting"})
    db.session.commit()


@dataclass
class Folded:
    """What one run of the processor did."""

    stored: int = 0  # sign-ups and clicks
    failed: int = 0
    clicks: int = 0  # of `stored`

    def line(self) -> str:
        failed = f", {self.failed} failed (kept)" if self.failed else ""
        clicks = f", {self.clicks} clicks followed" if self.clicks else ""
        return f"intake: {self.stored - self.clicks} sign-ups stored{clicks}{failed}"


def process() -> Folded:
    """Fold in the waiting sign-ups and clicks, a batch per transaction, until none
    waits. A batch that fails is done again one row at a time, so only the row at
    fault is kept as failed. Database trouble propagates: the rows
    stay for the next run."""
    size = current_app.config["INTAKE_BATCH_SIZE"]
    folded = Folded()
    if db.session.scalar(_ANY_WAITING) is None:  # a read: no write lock while idle
        db.session.commit()
        return folded
    while True:
        connection = db.session.connection()
        rows = sorted(connection.execute(_TAKE, {"limit": size}).all())
        if not rows:
            db.session.commit()
            break
        try:
            _store(rows)
            db.session.commit()
            folded.stored += len(rows)
            folded.clicks += sum(row.kind == "click" for row in rows)
        except Exception as error:
            db.session.rollback()
            if is_unavailable(error):
                raise
            for row in rows:
                outcome = _one(row.id)
                if outcome == "stored":
                    folded.stored += 1
                    folded.clicks += row.kind == "click"
                elif outcome == "failed":
                    folded.failed += 1
        if len(rows) < size:
            break
    return folded


def _store(rows) -> None:
    with looked_at_once():  # a sequence edited meanwhile counts from the next batch
        _store_each(rows)


def _store_each(rows) -> None:
    pages: dict[int, Page | None] = {}
    for row in rows:
        if row.kind == "click":
            _follow(row)
            continue
        if row.page_id not in pages:
            pages[row.page_id] = db.session.get(Page, row.page_id)
        page = pages[row.page_id]
        if page is None:
            raise LookupError(f"page {row.page_id} was deleted before the sign-up was stored")
        signup = optin.OptIn(**row.payload)
        with clock.as_of(row.created_at):
            optin.store_optin(variants.page_as(page, signup.variant), signup)


def _follow(row) -> None:
    """A person's click: its tag and click-triggered sequences, unless the person was
    erased meanwhile (a deleted lead is skipped by both)."""
    click = row.payload
    connection = db.session.connection()
    if connection.execute(_ERASED, {"lead_id": click["lead_id"]}).first() is None:
        with clock.as_of(row.created_at):
            engagement.follow_click(click["lead_id"], click["url"], click.get("tag"),
                                    connection)


def _one(intake_id: int) -> str:
    """One row on its own: "stored", "failed" (the row kept so, with the error) or
    "gone" (another processor took it meanwhile: it counts there)."""
    try:
        rows = db.session.connection().execute(_TAKE_ONE, {"intake_id": intake_id}).all()
        if not rows:
            db.session.commit()
            return "gone"
        _store(rows)
        db.session.commit()
        return "stored"
    except Exception as error:
        db.session.rollback()
        if is_unavailable(error):
            raise
        log.error("intake: sign-up %s not stored: %s", intake_id, unexpected(error))
        db.session.execute(update(Intake).where(Intake.id == intake_id)
                           .values(state="failed", error=unexpected(error)[:300]))
        db.session.commit()
        return "failed"


def retry_failed() -> int:
    """Queue the failed rows again; how many."""
    count = db.session.execute(update(Intake).where(Intake.state == "failed")
                               .values(state="waiting", error=None)).rowcount
    db.session.commit()
    return count


def holding(email: str, lead_id: int | None = None) -> ColumnElement[bool]:
    """Which intake rows hold this person: the sign-ups from the address (as stored,
    `addresses.stored_form`), waiting or failed, and the lead's queued clicks."""
    person = (Intake.kind == "optin") & (Intake.payload["email"].as_string() == email)
    if lead_id is not None:
        person |= (Intake.kind == "click") & (Intake.payload["lead_id"].as_integer() == lead_id)
    return person


def forget(email: str, lead_id: int | None = None, *,
           older_than: datetime | None = None) -> int:
    """Delete the person's intake rows (in the caller's transaction); how many.
    `older_than` (the retention of unconfirmed leads): only the sign-ups that failed
    before that moment; one that waits, or failed since, is the person signing up
    again, which nobody asked to drop. Their queued clicks go either way (an erased
    lead's are skipped)."""
    which = holding(email, lead_id)
    if older_than is not None:
        which &= ((Intake.kind == "click")
                  | ((Intake.state == "failed") & (Intake.created_at < older_than)))
    return db.session.execute(delete(Intake).where(which)
                              .execution_options(synchronize_session=False)).rowcount
