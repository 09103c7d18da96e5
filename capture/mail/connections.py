"""Sending over CAPTURE_SMTP_CONNECTIONS connections at once, with the bookkeeping batched.

A tick's rendered emails go to a `Sender`. It marks them `sending` a group at a
time (one UPDATE … RETURNING, committed with the outcomes of the emails that came
back meanwhile, written with one statement each), puts them on a queue, and records
what each connection answered. Each connection is a thread with a backend of its own
(one SMTP connection; the next email's envelope goes with the previous email's body,
`backends._Pipelining`). Only the thread that made the Sender touches the database.

Exactly once:
- An email is marked before a connection takes it, and at most AHEAD emails per
  connection are marked without an outcome: a crash leaves at most those `sending`
  (the reaper makes them `unknown`), never one sent twice.
- Connections are opened one by one, a new one only after an email went: a server
  that is down or refuses us sees one try, and the batch stops, as over one connection.
- A connection that drops before an email's body left, once the server took an
  email on any connection, gives that email to a fresh connection once (it never
  reached the server). Before any went, it is the server's failure. Any other
  server or account failure (`MailError.transport`) records that email's outcome
  and stops the batch: nothing more is marked, the marked emails no connection took
  yet are unmarked and given back with the rest, the others' outcomes are recorded.
"""

import logging
import queue
import threading
from collections import deque
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import bindparam, select, update

from capture import clock
from capture.db import db
from capture.mail import backends, outcomes, work_queue
from capture.mail.outcomes import Outgoing, Summary
from capture.models import Delivery, Enrollment, Lead

log = logging.getLogger(__name__)

# Emails marked per connection at most: one on the wire, one whose envelope went
# with it, one waiting, so a connection never waits for the next mark.
AHEAD = 3


class StopBatch(Exception):
    """The mail server or our account failed: the rest of the batch would too."""


_DELIVERIES, _LEADS, _ENROLLMENTS = (Delivery.__table__, Lead.__table__,
                                     Enrollment.__table__)
# The mark before an email goes also asks, in the same statement, whether it may still
# go: the lead is still subscribed (not unsubscribed, bounced or erased since its chunk
# was claimed and rendered) and its sequence was not stopped for it (left, stop tag).
# An email refused so is not sent; the reaper hands it back later, and the retry's
# own checks then record why.
_SENDING = (update(_DELIVERIES)
            .where(_DELIVERIES.c.id.in_(bindparam("b_ids", expanding=True)),
                   _DELIVERIES.c.status == "claimed",
                   select(_LEADS.c.id).where(_LEADS.c.id == _DELIVERIES.c.lead_id,
                                             _LEADS.c.subscription == "subscribed").exists(),
                   ~select(_ENROLLMENTS.c.id)
                   .where(_ENROLLMENTS.c.id == _DELIVERIES.c.enrollment_id,
                          _ENROLLMENTS.c.state == "stopped").exists())
            .values(status="sending", attempts=_DELIVERIES.c.attempts + 1,
                    claimed_at=bindparam("b_now"))
            .returning(_DELIVERIES.c.id))
# A marked email no connection took before the batch stopped: claimed again, untried.
_UNMARKED = (update(_DELIVERIES)
             .where(_DELIVERIES.c.id.in_(bindparam("b_ids", expanding=True)),
                    _DELIVERIES.c.status == "sending")
             .values(status="claimed", attempts=_DELIVERIES.c.attempts - 1))
_DONE = object()  # tells a connection to close


@dataclass
class _Answer:
    """What a connection did with one email: sent (error None), failed, or not tried;
    `fatal`: the thread died with `error` (a BaseException) while handing it over."""

    email: Outgoing
    error: BaseException | None = None
    untried: bool = False
    fatal: bool = False


def limit() -> int:
    """How many connections a Sender opens at most: SMTP_CONNECTIONS for SMTP; one
    for the outbox and console backends, which gain nothing from more."""
    config = current_app.config
    return config["SMTP_CONNECTIONS"] if config["MAIL_BACKEND"] == "smtp" else 1


class Sender:
    """The emails of one tick, handed to the connections; `submit` each chunk, then
    `close` (which waits for the outcomes). StopBatch from `submit` or `close` when
    the server or our account failed; the unsent emails are back in the queue."""

    def __init__(self, summary: Summary) -> None:
        self.summary = summary
        self.app = current_app._get_current_object()
        self.limit = limit()
        self.ready: queue.SimpleQueue = queue.SimpleQueue()
        self.answers: queue.SimpleQueue = queue.SimpleQueue()
        self.backlog: deque[Outgoing] = deque()  # rendered, not marked yet
        self.marked = 0  # marked and without an outcome yet
        self.sent: list[Outgoing] = []  # sent, to be written with the next marks
        self.untried: list[Outgoing] = []
        self.threads: list[threading.Thread] = []
        self.stopped: str | None = None
        # Set by the connection that met the failure, at once: the others take no more.
        self.halted = threading.Event()
        # Set when the server took an email on any connection: it is up, so a
        # connection it drops is that connection's trouble.
        self.answered = threading.Event()
        self.reported = False
        # What killed a connection's thread (the process dies): raised again here.
        self.crashed: BaseException | None = None
        self.connection = db.engine.connect()

    # -- the thread that made it --

    def submit(self, emails: list[Outgoing]) -> None:
        """Queue a chunk's rendered emails; marks as many as the connections can
        take and records the outcomes that came back. A caller may render the next
        chunk meanwhile."""
        self.backlog.extend(emails)
        self._pump(wait=False)
        while len(self.backlog) > self.limit * AHEAD and not self.stopped:
            self._pump(wait=True)
        self._raise_once()

    def pump(self) -> None:
        """Record the outcomes that came back and feed the connections, without
        waiting (called while the next chunk is rendered)."""
        self._pump(wait=False)

    def close(self) -> None:
        """Wait for every marked email's outcome, write them, let the connections go."""
        try:
            while (self.backlog and not self.stopped) or self.marked:
                self._pump(wait=True)
            self._pump(wait=False)  # the last outcomes and unmarks
        finally:
            for _ in self.threads:
                self.ready.put(_DONE)
            for thread in self.threads:
                thread.join(timeout=60)
            self.connection.close()
        self._raise_once()

    def _raise_once(self) -> None:
        if self.stopped and not self.reported:
            self.reported = True
            if self.crashed is not None:
                raise self.crashed
            raise StopBatch(self.stopped)

    def _pump(self, wait: bool) -> None:
        """Record the answers that came (waiting for one with `wait`), then mark and
        queue what the connections can take, in one transaction."""
        if wait and self.marked:
            self._record(self.answers.get())
        while True:
            try:
                self._record(self.answers.get_nowait())
            except queue.Empty:
                break
        group = []
        if not self.stopped:
            while self.backlog and self.marked + len(group) < self.limit * AHEAD:
                group.append(self.backlog.popleft())
        if not (group or self.sent or self.untried):
            return
        untried, self.untried = self.untried, []
        marked = self._write(group, untried)
        if untried:
            _give_back(untried)
        for email in group:
            if email.delivery_id in marked:
                self.ready.put(email)
                self.marked += 1
        if group and not self.threads:
            self._open_connection()

    def _write(self, group: list[Outgoing], untried: list[Outgoing]) -> set[int]:
        """Write the outcomes, unmark the untried, mark the group: one commit. The ids
        marked; on a database error the group and the rest are given back, held."""
        sent, self.sent = self.sent, []
        try:
            outcomes.write(self.connection, outcomes.sent_writes(sent, self.summary))
            if untried:
                self.connection.execute(_UNMARKED,
                                        {"b_ids": [e.delivery_id for e in untried]})
            marked = set(self.connection.execute(_SENDING, {
                "b_ids": [e.delivery_id for e in group], "b_now": clock.utcnow()
            }).scalars()) if group else set()
            self.connection.commit()
            return marked
        except Exception:
            log.exception("marking deliveries %s failed", [e.delivery_id for e in group])
            self.connection.rollback()
            rest = group + list(self.backlog)
            self.backlog.clear()
            work_queue.give_back(unsent=[e.delivery_id for e in rest],
                                 enrollments=enrollments_of(rest), hold=True)
            return set()

    def _record(self, answer: _Answer) -> None:
        """One connection's answer: the outcome is written with the next marks (sent)
        or at once (a failure, rare: the ORM's path)."""
        self.marked -= 1
        email, error = answer.email, answer.error
        if answer.untried:
            self.untried.append(email)
            return
        if answer.fatal:  # no outcome: the email stays `sending`, as after a crash
            self.crashed = self.crashed or error
            if not self.stopped:
                self._stop(f"a connection died: {error!r}")
            return
        if error is None:
            self.sent.append(email)
            if len(self.threads) < self.limit and (self.backlog or self.marked):
                self._open_connection()
            return
        if not isinstance(error, backends.MailError):
            outcomes.unexpected_send_error(error, email.delivery_id, email.enrollment_id,
                                           email.sequence, email.step, self.summary)
            return
        delivery = db.session.get(Delivery, email.delivery_id,
                                  options=work_queue.WITH_LEAD[Delivery])
        enrollment = (db.session.get(Enrollment, email.enrollment_id)
                      if email.enrollment_id else None)
        outcomes.mail_error(delivery, enrollment, email.sequence, email.step, error,
                            self.summary)
        if error.transport and not self.stopped:
            self._stop(str(error))

    def _stop(self, reason: str) -> None:
        """The server or our account failed: mark nothing more, give the rest back."""
        self.stopped = reason
        self.halted.set()
        rest, self.backlog = list(self.backlog), deque()
        if rest:
            _give_back(rest)

    def _open_connection(self) -> None:
        thread = threading.Thread(target=self._connection, daemon=True,
                                  name=f"smtp-{len(self.threads) + 1}")
        self.threads.append(thread)
        thread.start()

    # -- each connection's thread --

    def _connection(self) -> None:
        """Take marked emails and hand each over, the next one's envelope with it."""
        with self.app.app_context():
            backend = backends.open_backend()
            mine: deque = deque()  # taken from the queue, in order
            fresh_try: set[int] = set()  # emails given a fresh connection once
            try:
                while True:
                    email = mine.popleft() if mine else self.ready.get()
                    if email is _DONE:
                        return
                    if self.halted.is_set() and backend_idle(backend, email):
                        self.answers.put(_Answer(email, untried=True))
                        continue
                    if not mine and not self.halted.is_set():
                        try:
                            mine.append(self.ready.get_nowait())
                        except queue.Empty:
                            pass
                    following = mine[0] if mine and mine[0] is not _DONE else None
                    try:
                        backend.send(email.message,
                                     then=following.message if following else None)
                    except backends.MailError as error:
                        if (error.transport and not error.unknown
                                and self.answered.is_set()
                                and email.delivery_id not in fresh_try):
                            # Dropped before the body left: a new connection takes it.
                            fresh_try.add(email.delivery_id)
                            backend.close()
                            mine.appendleft(email)
                            continue
                        if error.transport:
                            self.halted.set()
                        self.answers.put(_Answer(email, error))
                        continue
                    except Exception as error:  # a bug, an address it cannot write
                        log.exception("sending delivery %s failed", email.delivery_id)
                        backend.close()
                        self.answers.put(_Answer(email, error))
                        continue
                    except BaseException as error:  # the process is going down
                        self.halted.set()
                        self.answers.put(_Answer(email, error, fatal=True))
                        for held in mine:
                            if held is not _DONE:
                                self.answers.put(_Answer(held, untried=True))
                        return
                    self.answered.set()
                    self.answers.put(_Answer(email))
            finally:
                backend.close()


def backend_idle(backend, email: Outgoing) -> bool:
    """Whether the backend has not started on this email (its envelope not sent)."""
    announced = getattr(backend, "announced", None)
    return announced is None or announced[0] is not email.message


def enrollments_of(emails: list[Outgoing]) -> list[int]:
    """The enrollments of these emails (a broadcast's email has none)."""
    return [email.enrollment_id for email in emails if email.enrollment_id is not None]


def _give_back(emails: list[Outgoing]) -> None:
    work_queue.give_back(unsent=[email.delivery_id for email in emails],
                         enrollments=enrollments_of(emails))
