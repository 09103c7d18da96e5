"""What needs the owner's attention: the warnings the dashboard's overview shows.

Each check is a plain function over the app's settings and database (no request),
returning an `OwnerWarning` when its condition holds, else None.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from flask import current_app, g
from sqlalchemy import func, or_, select

from capture import clock
from capture.db import db
from capture.models import Delivery, Event, Intake, Lead
from capture.mail import mailbox
from capture.mail.library import Library
from capture.wording import counted

# The days (a dashboard period) over which a source's spend is weighed against its
# revenue.
LOSING_DAYS, LOSING_PERIOD = 30, "30d"
# The mailbox providers' limits over the last 30 days, as (per, of): a complaint rate
# of 1 per 1,000 leads delivered (0.1 %), a bounce rate of 1 per 50 (2 %); judged only
# from DELIVERABILITY_MIN_DELIVERED leads delivered on, and the worst source among those
# with WORST_SOURCE_MIN_DELIVERED.
COMPLAINT_LIMIT, BOUNCE_LIMIT = (1, 1000), (1, 50)
DELIVERABILITY_MIN_DELIVERED, WORST_SOURCE_MIN_DELIVERED = 100, 20
# A mail-server failure older than this no longer counts as "SMTP is failing".
SMTP_FAILURE_HOURS = 24
# Queued sign-ups are folded in within about a second; one waiting longer than this
# means no scheduler is folding them in.
INTAKE_LATE_SECONDS = 60
# How capture.mail.backends words errors that concern the server or our account, not one message
# (connection and login trouble, a refused sender, a relay refusal 5.7.x).
_TRANSPORT_ERRORS = ("%SMTP connection:%", "%sender refused:%",
                     "%recipient refused: SMTP 5%5.7.%")


@dataclass(frozen=True)
class OwnerWarning:
    """One thing the owner should act on: a sentence, and where to act on it."""

    kind: str
    message: str
    count: int = 1
    # The dashboard area to go to (an endpoint name and its query), and the link's words.
    endpoint: str | None = None
    action: str = ""
    params: dict[str, str] = field(default_factory=dict)


def missing_postal_address() -> OwnerWarning | None:
    """CAN-SPAM wants a postal address in every email footer."""
    if current_app.config["POSTAL_ADDRESS"].strip():
        return None
    return OwnerWarning(
        "postal_address",
        "Your emails have no postal address: set CAPTURE_POSTAL_ADDRESS to your "
        "business address (the law requires it in every marketing email) and restart.",
    )


def sequence_problems() -> OwnerWarning | None:
    """Broken sequence files: their steps are held until fixed."""
    broken = {sequence.name: len(sequence.all_problems()) for sequence in Library.current().all()}
    broken = {name: count for name, count in broken.items() if count}
    if not broken:
        return None
    count = sum(broken.values())
    problems = "problem" if count == 1 else "problems"
    return OwnerWarning(
        "sequence_problems",
        f"{count} {problems} in your sequence files ({', '.join(sorted(broken))}): "
        "the emails they affect are held, so fix the files listed under Sequences.",
        count=count, endpoint="admin.sequences", action="See the problems",
    )


def unknown_deliveries() -> OwnerWarning | None:
    """Emails whose sender stopped mid-send: they may or may not have gone out."""
    count = db.session.scalar(
        select(func.count()).select_from(Delivery).where(Delivery.status == "unknown")
    ) or 0
    if not count:
        return None
    emails = "email is" if count == 1 else "emails are"
    return OwnerWarning(
        "unknown_deliveries",
        f"{count} {emails} in state unknown (the sender stopped while sending, so they "
        "may not have arrived): check them under Deliveries and resend on purpose if needed.",
        count=count, endpoint="admin.deliveries", action="Review deliveries",
    )


def smtp_failing(now: datetime | None = None) -> OwnerWarning | None:
    """The mail server refused us recently (connection, login, sender, relay), for a
    sequence email or a confirmation email, and no email has gone out since."""
    now = now or clock.utcnow()
    since = now - timedelta(hours=SMTP_FAILURE_HOURS)
    failures = [failure for failure in (_sequence_failure(since), _confirmation_failure(since))
                if failure is not None]
    if not failures:
        return None
    failed_at, error, confirmation = max(failures)
    last_sent = max((moment for moment in (
        db.session.scalar(select(func.max(Delivery.sent_at)).where(Delivery.status == "sent")),
        db.session.scalar(select(func.max(Event.created_at))
                          .where(Event.kind == "confirmation_sent")),
    ) if moment is not None), default=None)
    if last_sent is not None and last_sent > failed_at:
        return None
    deliveries = db.session.scalar(
        select(func.count()).select_from(Delivery)
        .where(*_failed_deliveries(since), Delivery.status.in_(("retry", "claimed")))
    ) or 0
    confirmations = db.session.scalar(
        select(func.count()).select_from(Lead)
        .where(Lead.confirmation_due_at.is_not(None), Lead.subscription == "unconfirmed",
               Lead.review != "rejected")
    ) or 0
    waiting = deliveries + confirmations
    retried = (f"; {waiting} waiting {'email is' if waiting == 1 else 'emails are'} "
               "retried automatically" if waiting else "")
    if confirmations:
        retried += (" (confirmation emails: " if confirmations > 1
                    else " (confirmation email: ") + f"{confirmations})"
    link = ({"endpoint": "admin.leads", "action": "See unconfirmed leads",
             "params": {"subscription": "unconfirmed"}} if confirmation
            else {"endpoint": "admin.deliveries", "action": "See deliveries"})
    return OwnerWarning(
        "smtp_failing",
        f"Emails are not going out because the mail server refused us "
        f"({error[:160]}): check the CAPTURE_SMTP_* settings and your mail "
        f"account{retried}.",
        count=waiting, **link,
    )


def bounce_mailbox_failing() -> OwnerWarning | None:
    """The scheduler's last read of the bounce mailbox failed (login refused, server
    gone or slow): the bounces and complaints arriving there wait until it can."""
    failure = mailbox.last_failure()
    if failure is None:
        return None
    failed_at, error = failure
    return OwnerWarning(
        "bounce_mailbox",
        f"The bounce mailbox could not be read at {failed_at:%Y-%m-%d %H:%M} UTC "
        f"({error[:160]}): the bounces and complaints in it are not recorded until it "
        "can be. Check CAPTURE_BOUNCE_MAILBOX and the mail account; sending goes on.",
    )


@dataclass(frozen=True)
class Backlog:
    """The rows that wait (`clicks` of them a person's clicks, the rest sign-ups),
    since when, and the failed ones with one of their errors."""

    waiting: int
    oldest: datetime | None
    failed: int
    error: str | None
    clicks: int = 0

    def waiting_words(self) -> str:
        """"1 sign-up waits", "2 sign-ups and 1 click wait", "3 clicks wait"."""
        signups = self.waiting - self.clicks
        words = [counted(n, noun)
                 for n, noun in ((signups, "sign-up"), (self.clicks, "click")) if n]
        return f"{' and '.join(words)} wait{'s' if self.waiting == 1 else ''}"


def intake_backlog() -> Backlog:
    """What the intake (capture.leads.intake) holds now: the overview and
    `intake status` show it."""
    waiting, oldest, clicks = db.session.execute(
        select(func.count(), func.min(Intake.created_at),
               func.count().filter(Intake.kind == "click"))
        .where(Intake.state == "waiting")).one()
    failed, error = db.session.execute(
        select(func.count(), func.max(Intake.error)).where(Intake.state == "failed")).one()
    return Backlog(waiting or 0, oldest, failed or 0, error, clicks or 0)


def signups_waiting(now: datetime | None = None) -> OwnerWarning | None:
    """Sign-ups the opt-in forms queued (or clicks the processor follows) wait longer
    than INTAKE_LATE_SECONDS (no scheduler runs, or it fails), or some could not be
    stored."""
    held = intake_backlog()
    now = now or clock.utcnow()
    late = held.oldest is not None and (now - held.oldest).total_seconds() > INTAKE_LATE_SECONDS
    if not late and not held.failed:
        return None
    parts = []
    if late:
        parts.append(f"{held.waiting_words()} to be stored, the oldest since "
                     f"{held.oldest:%Y-%m-%d %H:%M} UTC: is the scheduler running? "
                     "(`flask --app wsgi scheduler`, or CAPTURE_SCHEDULER=embedded)")
    if held.failed:
        signups = "sign-up" if held.failed == 1 else "sign-ups"
        parts.append(f"{held.failed} {signups} could not be stored ({(held.error or '')[:160]}) "
                     "and are kept: after fixing the cause, run `flask --app wsgi intake "
                     "retry`")
    return OwnerWarning("signups_waiting", " ".join(parts),
                        count=held.waiting + held.failed)


def _failed_deliveries(since: datetime) -> tuple:
    """Sequence emails the server or our account refused since then."""
    return (
        or_(*(Delivery.error.like(pattern) for pattern in _TRANSPORT_ERRORS)),
        Delivery.status.in_(("retry", "claimed", "failed")),
        Delivery.claimed_at >= since,
    )


def _sequence_failure(since: datetime) -> tuple[datetime, str, bool] | None:
    """When and why the latest sequence email failed for the server's sake."""
    latest = db.session.execute(
        select(Delivery.claimed_at, Delivery.error).where(*_failed_deliveries(since))
        .order_by(Delivery.claimed_at.desc()).limit(1)
    ).first()
    return None if latest is None else (latest.claimed_at, latest.error, False)


def _confirmation_failure(since: datetime) -> tuple[datetime, str, bool] | None:
    """When and why the latest confirmation email failed for the server's sake (its
    `confirmation_failed` event, see `confirmations`)."""
    error = Event.data["error"].as_string()
    latest = db.session.execute(
        select(Event.created_at, error.label("error"))
        .where(Event.kind == "confirmation_failed", Event.created_at >= since,
               or_(*(error.like(pattern) for pattern in _TRANSPORT_ERRORS)))
        .order_by(Event.created_at.desc()).limit(1)
    ).first()
    return None if latest is None else (latest.created_at, latest.error, True)


def broken_pages() -> OwnerWarning | None:
    """Published pages whose design file or sequence folder is gone: the page
    fails for visitors, or its leads get no emails."""
    from capture.pages.definition import page_templates_dir
    from capture.models import Page

    templates = Path(page_templates_dir())
    problems = []
    for page in db.session.scalars(select(Page).where(Page.published)):
        if not (templates / page.template).is_file():
            problems.append(f"/p/{page.slug} uses the missing design {page.template}")
        if page.sequence and Library.current().get(page.sequence) is None:
            problems.append(f"/p/{page.slug} sends to the missing sequence {page.sequence}")
    if not problems:
        return None
    return OwnerWarning(
        "broken_pages",
        "Fix these pages: " + "; ".join(problems[:3])
        + (f" and {len(problems) - 3} more" if len(problems) > 3 else "") + ".",
        count=len(problems), endpoint="admin.pages", action="See pages",
    )


def _by_source(now: datetime | None):
    """The report by source of the last LOSING_DAYS days, made once per request (or
    app context) for the checks that read it."""
    from capture.numbers import metrics, periods

    period = periods.period(LOSING_PERIOD, now=now)
    made = g.setdefault("attention_by_source", {})
    key = (period.start, period.end)
    if key not in made:
        made[key] = metrics.report(start=period.start, end=period.end, by="source")
    return made[key]


def losing_sources(now: datetime | None = None) -> OwnerWarning | None:
    """Sources whose ad spend of the last LOSING_DAYS days is above what they brought:
    a cost per approved lead above their payout and upgrades per approved lead."""
    rows = _by_source(now).rows
    losing = sorted(((name, numbers) for name, numbers in rows.items()
                     if numbers.loses_money), key=lambda item: item[1].profit)
    if not losing:
        return None
    words = []
    for name, numbers in losing[:3]:
        earned = (numbers.revenue / numbers.approved).quantize(Decimal("0.01")) \
            if numbers.approved else Decimal("0.00")
        cost = numbers.cost_per_approved_lead
        words.append(f"{name} ({cost:.2f} per approved lead, {earned:.2f} earned per "
                     f"approved lead)" if cost is not None
                     else f"{name} ({numbers.spend:.2f} spent, no approved lead)")
    more = f" and {len(losing) - 3} more" if len(losing) > 3 else ""
    return OwnerWarning(
        "losing_sources",
        (f"This source loses money over the last {LOSING_DAYS} days: " if len(losing) == 1
         else f"These sources lose money over the last {LOSING_DAYS} days: ")
        + "; ".join(words) + more + ". Lower their bids or stop them.",
        count=len(losing), endpoint="admin.sources", action="See sources",
        params={"period": LOSING_PERIOD, "sort": "profit", "dir": "asc"},
    )


def high_complaint_rate(now: datetime | None = None) -> OwnerWarning | None:
    """A complaint rate at or above 0.1 % of the leads delivered in the last 30 days."""
    return _rate_warning("complaint", COMPLAINT_LIMIT, "0.1 %", now,
                         "Check where these leads come from (do they expect your emails?) "
                         "and send less to those who do not open.")


def high_bounce_rate(now: datetime | None = None) -> OwnerWarning | None:
    """A bounce rate at or above 2 % of the leads delivered in the last 30 days."""
    return _rate_warning("bounce", BOUNCE_LIMIT, "2 %", now,
                         "Check where these leads come from (typos, made-up or old "
                         "addresses) and turn on confirmation for that source's pages.")


def _rate_warning(kind: str, limit: tuple[int, int], limit_words: str,
                  now: datetime | None, advice: str) -> OwnerWarning | None:
    """The warning on the bounce or complaint rate of the last LOSING_DAYS days
    (`kind`: "bounce" or "complaint"), naming the worst source."""
    report = _by_source(now)

    def count_of(numbers) -> int:
        return getattr(numbers, kind + "s")

    per, of = limit
    total = report.total
    if (total.delivered < DELIVERABILITY_MIN_DELIVERED
            or count_of(total) * of < per * total.delivered):
        return None
    worst = max(((name, numbers) for name, numbers in report.rows.items()
                 if numbers.delivered >= WORST_SOURCE_MIN_DELIVERED and count_of(numbers)),
                key=lambda item: (count_of(item[1]) / item[1].delivered, count_of(item[1])),
                default=None)
    named = ""
    if worst is not None:
        name, numbers = worst
        named = (f" The worst source is {name}: {_rate(count_of(numbers), numbers.delivered)} "
                 f"({count_of(numbers)} of {numbers.delivered} leads delivered).")
    return OwnerWarning(
        f"high_{kind}_rate",
        f"Your {kind} rate over the last {LOSING_DAYS} days is "
        f"{_rate(count_of(total), total.delivered)} ({count_of(total)} of {total.delivered} "
        f"leads delivered), at or above the {limit_words} at which mailbox providers start "
        f"sending your emails to spam.{named} {advice}",
        count=count_of(total), endpoint="admin.sources", action="See sources",
        params={"period": LOSING_PERIOD, "sort": f"{kind}_rate", "dir": "desc"},
    )


def _rate(count: int, delivered: int) -> str:
    """A rate as the owner reads it: "0.25 %"."""
    return f"{count / delivered * 100:.2f} %"


CHECKS = (missing_postal_address, signups_waiting, smtp_failing, bounce_mailbox_failing,
          broken_pages, unknown_deliveries, sequence_problems, losing_sources,
          high_complaint_rate, high_bounce_rate)


def for_owner() -> list[OwnerWarning]:
    """Every warning that holds now, most urgent first."""
    return [warning for check in CHECKS if (warning := check()) is not None]
