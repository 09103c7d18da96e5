"""List import: the rows of a CSV file become leads of one page.

The file is read as a stream (`files`) and written in batches of
IMPORT_BATCH_ROWS rows, one transaction each, so a file of any length needs the
memory of one batch. Each row is checked like an opt-in (`rows`), then:
an address that is already a lead is merged (its empty fields filled, nothing else
changed), a suppressed one is skipped, a new one becomes a lead that the page's review
rules judge as they judge opt-ins. A bad row is rejected with its line number and the
reason; nothing else stops the import.

A new lead is made by the opt-in's own parts (`capture.leads.optin.new_lead_row` and
`opening_events`), not by `submit_optin`: that one looks up, writes and commits one
address at a time, where a batch looks up all its addresses in three queries and
writes its new leads in one flush (`bench/import_100k.py` measures what that is worth).
The rest differs on purpose: a known address is merged, not a repeat opt-in; consent
comes from the file; an import fires no webhooks. A `tags` column (names separated by
";") adds its tags to the row's lead, new or merged, with the cause `import`.

Consent comes from the file: a row whose consent column says yes (or that has a
consent date) is subscribed at once, and enrolled when approved; any other row is
unconfirmed and must confirm by email. Those emails are sent by the scheduler within
the sending rate cap (`confirmations.send_queued`), never by the import itself:
100,000 emails at 600 a minute take almost three hours.
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from capture import clock
from capture import suppression
from capture.leads import optin, tags
from capture.mail import membership
from capture.db import db
from capture.leads.imports.files import (
    SAMPLE_ROWS,
    UNREADABLE,
    CsvFile,
    UnusableFile,
    check_mapping,
    inspect,
    mapping_with,
    page_fields,
    parse_map_options,
    sample_rows,
)
from capture.leads.imports.rows import Rejected, Row, check_row
from capture.models import Lead, Page
from capture.leads.fields import one_line
from capture.timeline import record_event

# Rejected rows a report keeps for the dashboard (the command line prints every one).
KEPT_REJECTIONS = 1000
# The same batch is tried again when a parallel opt-in took one of its addresses.
BATCH_ATTEMPTS = 3

__all__ = ["OUTCOMES", "UnusableFile", "Report", "RowResult", "import_file",
           "parse_map_options", "run"]


# What can become of a row, each row exactly one: a new lead (created, or created and
# rejected by the page's rules), merged into a lead that was there before, repeated (an
# address of an earlier row), suppressed, or rejected (not imported). By key, its label.
OUTCOMES = {"created": "created", "rules_rejected": "rejected by the page's rules",
            "merged": "merged", "repeated": "repeated", "suppressed": "suppressed",
            "rejected": "rejected"}


@dataclass
class RowResult:
    """What became of one row (a key of OUTCOMES); `detail` says how or why."""

    line: int
    email: str
    outcome: str
    detail: str = ""

    @property
    def label(self) -> str:
        return OUTCOMES[self.outcome]


@dataclass
class Report:
    """The counts of an import and its rejected rows (the first KEPT_REJECTIONS).

    Every row counts in exactly one outcome, so the outcomes add up to `rows`; the
    created leads split into subscribed and to_confirm, and pending_review counts
    those of them that wait for the owner's review."""

    source: str
    page: str
    dry_run: bool = False
    rows: int = 0
    created: int = 0
    rules_rejected: int = 0
    merged: int = 0
    repeated: int = 0
    suppressed: int = 0
    rejected: int = 0
    subscribed: int = 0
    to_confirm: int = 0
    pending_review: int = 0
    rejections: list[RowResult] = field(default_factory=list)

    def add(self, result: RowResult, *, subscribed: bool = False, review: str = "") -> None:
        """Count one row."""
        self.rows += 1
        setattr(self, result.outcome, getattr(self, result.outcome) + 1)
        if result.outcome == "rejected" and len(self.rejections) < KEPT_REJECTIONS:
            self.rejections.append(result)
        if result.outcome == "created":
            self.subscribed += subscribed
            self.to_confirm += not subscribed
            self.pending_review += review == "pending"

    def lines(self) -> list[str]:
        """The summary, one count a line, as the command line prints it."""
        would = "would be " if self.dry_run else ""
        first = f"{self.source} → page {self.page}: {self.rows} rows"
        return [
            first + (" (dry run: nothing was written)" if self.dry_run else ""),
            f"{would}created: {self.created} ({self.subscribed} subscribed, "
            f"{self.to_confirm} asked to confirm by email; {self.pending_review} of them "
            "pending review)",
            f"{would}created and rejected by the page's rules: {self.rules_rejected} "
            "(kept as rejected leads: no email, no sequence)",
            f"{would}merged into existing leads: {self.merged + self.repeated} "
            f"({self.repeated} repeated in the file)",
            f"skipped, suppressed: {self.suppressed}",
            f"rejected: {self.rejected} (not imported)",
        ]


def import_file(path: str | Path, page_slug: str, *, overrides: dict[str, str] | None = None,
                dry_run: bool = False, encoding: str = "utf-8", delimiter: str | None = None,
                on_row: Callable[[RowResult], None] | None = None) -> Report:
    """The command line's import: find the page, read the header, map the columns
    (guessed, then `overrides` by header name), import. Raises UnusableFile."""
    page = db.session.scalar(select(Page).where(Page.slug == page_slug))
    if page is None:
        raise UnusableFile(f"no page with slug {page_slug!r}")
    shape = inspect(path, encoding=encoding, delimiter=delimiter)
    mapping = mapping_with(shape.headers, page, overrides or {},
                           sample_rows(shape, SAMPLE_ROWS))
    return run(shape, page, mapping, source=Path(path).name, dry_run=dry_run, on_row=on_row)


def run(shape: CsvFile, page: Page, mapping: list[str | None], *, source: str,
        dry_run: bool = False, on_row: Callable[[RowResult], None] | None = None,
        limit: int | None = None) -> Report:
    """Import the rows of `shape` into `page`, `mapping` giving each column's field
    (or None). `dry_run` checks everything and writes nothing; `limit` stops after
    that many rows (the preview); `on_row` hears of each row once its batch is done.
    Raises UnusableFile for a mapping without an email column."""
    check_mapping(shape.headers, mapping, page)
    job = _Import(shape, page, mapping, source=one_line(source)[:100] or "upload", dry_run=dry_run)
    report = Report(source=job.source, page=page.slug, dry_run=dry_run)
    batch_size = current_app.config["IMPORT_BATCH_ROWS"]
    batch: list[tuple[int, list[str]]] = []
    with shape.open() as handle:
        for line, cells in shape.reader(handle):
            batch.append((line, cells))
            if limit is not None and report.rows + len(batch) >= limit:
                break
            if len(batch) >= batch_size:
                job.finish(batch, report, on_row)
                batch = []
    if batch:
        job.finish(batch, report, on_row)
    return report


class _Import:
    """One import under way: the page, the columns and the addresses seen so far."""

    def __init__(self, shape: CsvFile, page: Page, mapping: list[str | None], *,
                 source: str, dry_run: bool) -> None:
        self.page = page
        self.page_id = page.id
        self.columns = [(index, target) for index, target in enumerate(mapping) if target]
        self.consent_column = next((shape.headers[index] for index, target in self.columns
                                    if target == "consent"), None)
        self.page_fields = page_fields(page)
        self.source = source
        self.dry_run = dry_run
        # The addresses of done batches, to tell a repeat in the file from a lead that
        # was there before: 8-byte digests keep 100,000 of them small.
        self.seen: set[bytes] = set()

    def finish(self, batch: list[tuple[int, list[str]]], report: Report,
               on_row: Callable[[RowResult], None] | None) -> None:
        """Check, write and commit one batch, then count it. An opt-in of one of its
        addresses in the meantime makes the commit fail: the batch is done again."""
        for attempt in range(1, BATCH_ATTEMPTS + 1):
            try:
                done = self._batch(batch)
                if self.dry_run:
                    db.session.rollback()  # ends the reads: no transaction stays open
                else:
                    db.session.commit()
                break
            except IntegrityError:
                db.session.rollback()
                if attempt == BATCH_ATTEMPTS:
                    raise
        for result, digest, subscribed, review in done:
            if digest is not None:
                self.seen.add(digest)
            report.add(result, subscribed=subscribed, review=review)
            if on_row is not None:
                on_row(result)

    def _batch(self, batch: list[tuple[int, list[str]]]) -> list[tuple]:
        """Decide every row of a batch and (unless a dry run) write it, uncommitted.
        Returns (result, digest to remember, subscribed, review) per row."""
        now = clock.utcnow()
        rows: list[Row | RowResult] = []
        for line, cells in batch:
            try:
                rows.append(check_row(line, cells, self.columns, self.page_fields, now))
            except Rejected as reason:
                rows.append(RowResult(line, self._email_cell(cells), "rejected", str(reason)))
        found = _Lookups([row for row in rows if isinstance(row, Row)])
        done: list[tuple] = []
        timeline: list[tuple[str, Lead, Row, list[str]]] = []
        new_here: dict[str, Lead | None] = {}
        for row in rows:
            if isinstance(row, RowResult):
                done.append((row, None, False, ""))
                continue
            digest = _digest(row.email)
            repeat = digest in self.seen or row.email in new_here or row.email in found.merged
            if row.email in found.suppressed:
                done.append((RowResult(row.line, row.email, "suppressed",
                                       "on the suppression list"), None, False, ""))
            elif repeat or row.email in found.existing:
                lead = found.existing.get(row.email) or new_here.get(row.email)
                filled = _fill(lead, row, apply=not self.dry_run) if lead is not None else []
                if lead is not None and not self.dry_run:
                    timeline.append(("import_merge", lead, row, filled))
                found.merged.add(row.email)
                into = "an earlier row" if repeat else "the existing lead"
                outcome = "repeated" if repeat else "merged"
                detail = f"merged into {into}" + (f", filled {', '.join(filled)}" if filled else "")
                done.append((RowResult(row.line, row.email, outcome, detail), digest, False, ""))
            else:
                values = optin.new_lead_row(self.page, _optin(row), self._consent(row, now),
                                            now=now, referrer_of=found.referrers.get)
                review, reason = values["review"], values["review_reason"]
                lead = None
                if not self.dry_run:
                    # The empty columns are left to their defaults (None too): every
                    # keyword costs the ORM as much again, at 100,000 rows seconds.
                    lead = Lead(**{name: value for name, value in values.items()
                                   if value is not None}, imported=True)
                    db.session.add(lead)
                    timeline.append(("import", lead, row, []))
                new_here[row.email] = lead
                outcome = "rules_rejected" if review == "rejected" else "created"
                done.append((RowResult(row.line, row.email, outcome,
                                       _created_text(row, review, reason)),
                             digest, row.consented, review))
        if timeline:
            db.session.flush()  # one INSERT for the batch's new leads, and their ids
            with db.session.no_autoflush:
                for kind, lead, row, filled in timeline:
                    self._record(kind, lead, row, filled)
            _add_tags(timeline)
        return done

    def _email_cell(self, cells: list[str]) -> str:
        if len(cells) == 1 and cells[0].startswith(UNREADABLE):
            return ""
        index = next(index for index, target in self.columns if target == "email")
        return one_line(cells[index])[:254] if index < len(cells) else ""

    def _consent(self, row: Row, now: datetime) -> optin.Consent:
        """The row's consent: what it rests on, when it was given (the import's time
        without a date), and whether the lead must still confirm it by email."""
        return optin.Consent(text=self._consent_evidence(row), at=row.consented_at or now,
                             ip=None, to_confirm=not row.consented)

    def _consent_evidence(self, row: Row) -> str:
        """What the lead's consent rests on, kept with the lead."""
        where = f"Imported from {self.source} (line {row.line})"
        if self.consent_column is not None:
            said = f"consent column {self.consent_column}={row.consent_value or '(empty)'}"
            return f"{where}, {said}" + ("" if row.consented else "; asked to confirm by email")
        if row.consented_at is not None:
            return f"{where}, consent date {row.consented_at:%Y-%m-%d %H:%M} UTC"
        return f"{where}, no consent column; asked to confirm by email"

    def _record(self, kind: str, lead: Lead, row: Row, filled: list[str]) -> None:
        """The timeline entries of a written row; a new lead joins its sequence when
        it is approved and subscribed, as an opt-in does."""
        if kind == "import_merge":
            record_event(lead, kind, self.page_id, file=self.source, line=row.line,
                         filled=filled)
            return
        for event, data in optin.opening_events("import", lead.review, lead.review_reason,
                                                file=self.source, line=row.line,
                                                consent=lead.consent_text):
            record_event(lead, event, **data)
        membership.enroll(lead, self.page, new=True)


class _Lookups:
    """What the database knows of a batch's addresses, in three queries."""

    def __init__(self, rows: list[Row]) -> None:
        emails = {row.email for row in rows}
        refs = {row.attribution["ref"] for row in rows if row.attribution.get("ref")}
        self.suppressed = suppression.suppressed_among(emails)
        self.existing = {lead.email: lead for lead in db.session.scalars(
            select(Lead).where(Lead.email.in_(emails)))} if emails else {}
        self.referrers = dict(db.session.execute(
            select(Lead.public_ref, Lead.id).where(Lead.public_ref.in_(refs))
        ).all()) if refs else {}
        # Addresses of this batch already merged once (a second row is a repeat).
        self.merged: set[str] = set()


def _add_tags(timeline: list[tuple[str, Lead, Row, list[str]]]) -> None:
    """The `tags` of the batch's written rows, given to their leads (new and merged:
    tags only ever add), a few statements per set of names, not one per row."""
    by_names: dict[tuple[str, ...], set[int]] = {}
    for _, lead, row, _ in timeline:
        if row.tags:
            by_names.setdefault(tuple(row.tags), set()).add(lead.id)
    for names, lead_ids in by_names.items():
        tags.add_tags(lead_ids, names, "import")


def _optin(row: Row) -> optin.OptIn:
    """A checked row as the opt-in it stands for."""
    return optin.OptIn(email=row.email, name=row.name, country=row.country,
                       fields=row.fields, attribution=row.attribution)


def _digest(email: str) -> bytes:
    return hashlib.blake2b(email.encode(), digest_size=8).digest()


def _fill(lead: Lead, row: Row, *, apply: bool) -> list[str]:
    """Fill the lead's empty values from the row; return the names filled. Nothing
    else changes: not the page, the review, the subscription or the consent."""
    filled = []
    for name, value in (("name", row.name), ("country", row.country), *row.attribution.items()):
        if value and not getattr(lead, name):
            filled.append(name)
            if apply:
                setattr(lead, name, value)
    current = dict(lead.fields or {})
    for name, value in row.fields.items():
        if current.get(name) in (None, ""):
            filled.append(name)
            current[name] = value
    if apply and current != (lead.fields or {}):
        lead.fields = current
    return filled


def _created_text(row: Row, review: str, reason: str) -> str:
    if review == "rejected":
        return f"rejected by the page's rules: {reason}; kept as a rejected lead, no email"
    state = "subscribed" if row.consented else "asked to confirm by email"
    return f"{state}, {'pending review' if review == 'pending' else 'approved'}"
