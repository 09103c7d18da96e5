"""Handing emails to the mail backend: render, claim, hand over, record the outcome.

Every email is rendered by `render`; a chunk's emails then go to the connections of a
`capture.mail.connections.Sender`, a retry's to the backend here (`deliver`). A
delivery row is committed as `sending` before its message goes to the backend and
updated after, so a crash in between leaves it `sending`, which the reaper turns
`unknown` after SENDING_TIMEOUT_MINUTES: visible to the owner, never resent silently.
No transaction is open while the backend works (an SMTP wait never holds a database
lock)."""

import logging
from collections.abc import Callable

from sqlalchemy import bindparam, update

from capture import claims, clock, links
from capture.db import db
from capture.mail import backends, compose, membership, mime, outcomes, tracked_links, work_queue
from capture.mail import layouts as email_layouts
from capture.mail.connections import StopBatch, enrollments_of
from capture.mail.outcomes import Outgoing, Summary
from capture.mail.sequences import Sequence, Step
from capture.models import Delivery, Enrollment, Lead

log = logging.getLogger(__name__)


def render(sequence: Sequence, step: Step, lead: Lead, delivery_id: int, *,
           link_rows: list[dict] | None = None,
           layouts: email_layouts.Layouts | None = None) -> tuple[mime.Email | None, str]:
    """The email of one delivery, with its tracked links, open pixel and unsubscribe
    link; or None and why it cannot be rendered for this lead (the template's error,
    or an unexpected error's class and message). A retry's links go to the session
    (an earlier try may have stored some); a new delivery's are appended to
    `link_rows`, for `tracked_links.insert_links`."""
    try:
        message = compose.step_message(
            sequence, step, lead, lead.page, delivery_id=delivery_id,
            unsubscribe_url=links.unsubscribe_url(lead.public_ref, delivery_id),
            track_link=tracked_links.link_tracker(delivery_id, new=link_rows is not None,
                                               into=link_rows),
            pixel_url=tracked_links.pixel_url(delivery_id), layouts=layouts,
        )
    except compose.RenderError as error:
        return None, str(error)
    except Exception as error:
        log.exception("rendering delivery %s failed", delivery_id)
        return None, claims.unexpected(error)
    return message, ""


def render_all(emails: list[Outgoing], leads: dict[int, Lead], summary: Summary,
               between: Callable[[], None] | None = None) -> list[Outgoing]:
    """Render a chunk's new emails (`leads` by delivery id) and store their links
    and subjects in one transaction. A step that cannot be rendered for its lead
    fails (the lead moves on). Returns the emails to send. `between` is called
    every few emails (no transaction is open then): the Sender keeps its
    connections fed meanwhile."""
    link_rows: list[dict] = []
    layouts = email_layouts.Layouts()  # rendered once per page and language of the chunk
    ready, failed, broken = [], [], []
    # `broken`: the links could not be stored; the emails go back unsent.
    for index, email in enumerate(emails):
        if between is not None and index % 10 == 9:
            between()
        email.message, error = render(email.sequence, email.step, leads[email.delivery_id],
                                      email.delivery_id, link_rows=link_rows,
                                      layouts=layouts)
        if email.message is None:
            failed.append((email, error))
            continue
        email.subject = str(email.message["Subject"])[:300]
        ready.append(email)
    try:
        tracked_links.insert_links(link_rows)
        if ready:
            db.session.connection().execute(_RENDERED, [
                {"b_id": email.delivery_id, "b_subject": email.subject,
                 "b_message_id": str(email.message["Message-ID"])} for email in ready])
        db.session.commit()
    except Exception:
        log.exception("storing the links of deliveries %s failed",
                      [email.delivery_id for email in emails])
        db.session.rollback()
        broken, ready = emails, []
        failed = []
    for email, error in failed:
        delivery = db.session.get(Delivery, email.delivery_id)
        enrollment = (db.session.get(Enrollment, email.enrollment_id)
                      if email.enrollment_id else None)
        outcomes.fail(delivery, enrollment, email.sequence, email.step, error, summary)
    if broken:
        work_queue.give_back(unsent=[email.delivery_id for email in broken],
                             enrollments=enrollments_of(broken), hold=True)
    return ready


_DELIVERIES = Delivery.__table__
_RENDERED = (update(_DELIVERIES).where(_DELIVERIES.c.id == bindparam("b_id"))
             .values(subject=bindparam("b_subject"), message_id=bindparam("b_message_id")))
def deliver(delivery: Delivery, enrollment: Enrollment | None, sequence: Sequence,
            step: Step, backend: backends.Backend, summary: Summary) -> None:
    """Send one claimed delivery (a retry): render, commit the claim with the
    email's links, hand the message over with no transaction open (an SMTP wait
    never holds a database lock), then record what happened. StopBatch when the
    mail server or our account failed."""
    lead = delivery.lead
    message, error = render(sequence, step, lead, delivery.id)
    if message is None:
        db.session.rollback()  # the links it may have added
        outcomes.fail(delivery, enrollment, sequence, step, error, summary)
        return
    delivery.status, delivery.claimed_at = "sending", clock.utcnow()
    delivery.attempts += 1
    delivery.subject = str(message["Subject"])[:300]
    delivery.message_id = str(message["Message-ID"])
    # Kept for after the commit, which expires the rows (reloading them costs more).
    email = Outgoing(delivery.id, enrollment.id if enrollment is not None else None,
                     lead.id, lead.page_id, sequence, step, message, delivery.subject)
    db.session.commit()
    try:
        backend.send(message)
    except backends.MailError as error:
        outcomes.mail_error(delivery, enrollment, sequence, step, error, summary)
        if error.transport:
            raise StopBatch(str(error)) from error
        return
    except Exception as error:
        backend.close()
        outcomes.unexpected_send_error(error, email.delivery_id, email.enrollment_id,
                                       sequence, step, summary)
        return
    # An owner's resend of an earlier email never moves the lead back.
    move_on = enrollment is not None and not membership.is_past(
        enrollment, step.key, step.filename, sequence)
    writes = outcomes.sent_writes([email], summary, move_on=move_on)
    outcomes.write(db.session.connection(), writes)
    db.session.commit()
