"""The report rollups (`capture.numbers.rollups`) after changes made once a report already read
them: each change shows in the next report, exactly as counting the rows gives it.

The data set is the one of tests/test_metrics.py (tests/metrics_data.py: two pages, D1
and D2 in the period).
"""

from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy import inspect, select, update

from capture.leads.imports import importer as imports
from capture.leads import erasure
from capture.leads import lifecycle as leads
from capture.numbers import metrics
from capture.numbers import rollups
from capture.db import db
from capture.models import Delivery, Event, Lead, Page, RollupUnsent, Visit
from capture.timeline import insert_event
from tests.conftest import POSTGRES_URL, create_page
from tests.factories import FIELDS, HEADER, run_import, write
from tests.metrics_data import (
    ALPHA,
    BETA,
    D1,
    D2,
    END,
    OLD,
    START,
    add_delivery,
    add_lead,
    add_page,
    add_upgrade,
    add_visit,
    at,
    seed,
)

REPORTS = [{}, {"start": START, "end": END}, {"start": OLD, "end": END}]


@pytest.fixture
def pages(app, clock):
    return seed(app)


def counted(app, **arguments) -> metrics.Report:
    """The report from the rollups, checked against the same report counted from the
    rows (every grouping)."""
    with app.app_context():
        report = metrics.report(**arguments)
        assert metrics.uses_rollups(arguments.get("start"), arguments.get("end"))
        for by in (None, *metrics.DIMENSIONS):
            from_rollups = metrics.report(**arguments, by=by)
            from_tables = metrics._from_tables(arguments.get("start"), arguments.get("end"),
                                               arguments.get("page_id"), by)
            assert {key: _plain(numbers) for key, numbers in from_rollups.rows.items()} == {
                key: _plain(numbers) for key, numbers in _rows(from_tables, by).items()}
        return report


def _rows(groups: dict, by: str | None) -> dict:
    if by is None:
        return {}
    rows = {("(none)" if group is None else str(group)): numbers
            for group, numbers in groups.items()}
    if by == "page":
        slugs = dict(db.session.execute(select(Page.id, Page.slug)).all())
        rows = {slugs.get(int(k), k) if k.isdigit() else k: v for k, v in rows.items()}
    return rows


def _plain(numbers: metrics.Numbers) -> dict:
    values = dict(vars(numbers))
    for name in metrics.MONEY:
        values[name] = Decimal(str(values[name] or 0)).quantize(Decimal("0.01"))
    return values


def lead_by_email(address: str) -> Lead:
    return db.session.scalar(select(Lead).where(Lead.email == address))


def test_approving_a_pending_lead_later_moves_it_to_approved_and_payout(app, pages):
    before = counted(app, start=START, end=END).total
    with app.app_context():
        leads.approve(lead_by_email("l3@example.com"))
    after = counted(app, start=START, end=END).total
    assert (after.approved, after.pending) == (before.approved + 1, before.pending - 1)
    assert after.payout == before.payout + ALPHA


def test_rejecting_an_approved_lead_later_takes_its_payout_back(app, pages):
    before = counted(app).total
    with app.app_context():
        leads.reject(lead_by_email("l4@example.com"), "fake address")
    after = counted(app).total
    assert (after.approved, after.rejected) == (before.approved - 1, before.rejected + 1)
    assert after.payout == before.payout - BETA


def test_confirming_a_lead_later_counts_it_confirmed(app, clock):
    with app.app_context():
        page = add_page("alpha", ALPHA)
        add_lead(page, "late@example.com", at(D1, 9), "approved")
        db.session.commit()
    assert counted(app).total.confirmed == 0
    with app.app_context():
        leads.confirm(lead_by_email("late@example.com"), "127.0.0.1")
    assert counted(app).total.confirmed == 1


@pytest.mark.parametrize("arguments", REPORTS)
def test_erasing_a_lead_keeps_every_number_of_past_reports(app, pages, arguments):
    # L1: an approved lead on alpha with two emails, opens, a click, an unsubscribe,
    # two upgrades and a repeat opt-in: erased, it still counts for all of them, in
    # every grouping, from the rollups and from the rows alike (`counted`).
    def every_grouping() -> dict:
        with app.app_context():
            return {by: {key: _plain(numbers) for key, numbers in
                         metrics.report(**arguments, by=by).rows.items()}
                    for by in metrics.DIMENSIONS} | {
                None: _plain(metrics.report(**arguments).total)}

    counted(app, **arguments)
    before = every_grouping()
    with app.app_context():
        erasure.erase(lead_by_email("l1@example.com"))
        assert lead_by_email("l1@example.com") is None
    counted(app, **arguments)
    assert every_grouping() == before
    with app.app_context():
        with db.engine.connect() as connection:
            rollups.rebuild(connection)
    assert every_grouping() == before


def test_an_email_sent_after_a_report_counts_its_lead_delivered(app, clock):
    with app.app_context():
        page = add_page("alpha", ALPHA)
        lead = add_lead(page, "queued@example.com", at(D1, 9), "approved")
        delivery = add_delivery(lead, "01", None, status="sending")
        db.session.commit()
        delivery_id = delivery.id
    assert counted(app, start=START, end=END).total.delivered == 0
    with app.app_context():
        db.session.execute(update(Delivery).where(Delivery.id == delivery_id)
                           .values(status="sent", sent_at=at(D2, 8)))
        db.session.commit()
    assert counted(app, start=START, end=END).total.delivered == 1


def test_a_queued_broadcast_email_counts_its_lead_delivered_once_sent(app, clock):
    # A broadcast's recipients are queued all at once: folding does not recompute
    # their leads then, only remembers the rows, and counts each one once it is sent.
    with app.app_context():
        page = add_page("alpha", ALPHA)
        lead = add_lead(page, "queued@example.com", at(D1, 9), "approved")
        delivery = add_delivery(lead, "news", None, status="queued")
        db.session.commit()
        delivery_id = delivery.id
    assert counted(app, start=START, end=END).total.delivered == 0
    with app.app_context():
        assert db.session.scalar(select(sa.func.count()).select_from(RollupUnsent)) == 1
        db.session.execute(update(Delivery).where(Delivery.id == delivery_id)
                           .values(status="sent", sent_at=at(D2, 8)))
        db.session.commit()
    assert counted(app, start=START, end=END).total.delivered == 1


def test_opens_recorded_after_a_report_count_each_lead_once_over_the_period(app, pages):
    before = counted(app, start=OLD, end=END).total
    with app.app_context():
        lead = lead_by_email("l5@example.com")
        delivery = db.session.scalar(select(Delivery).where(Delivery.lead_id == lead.id))
        insert_event(lead.id, lead.page_id, "open", delivery_id=delivery.id)
        insert_event(lead.id, lead.page_id, "open", delivery_id=delivery.id)
        db.session.commit()
    after = counted(app, start=OLD, end=END).total
    assert (after.opened, after.opens_raw) == (before.opened, before.opens_raw + 2)


def test_a_visit_on_an_earlier_day_recorded_later_counts_its_visitor_once(app, pages):
    before = counted(app, start=START, end=END)
    with app.app_context():
        # c4 first came on D2; a view of D1 arrives late (an import, a clock skew).
        page = db.session.get(Page, pages["beta"])
        add_visit(page, "c4", at(D1, 6), utm_source="google", utm_campaign="summer")
        db.session.commit()
    after = counted(app, start=START, end=END)
    assert after.total.visitors == before.total.visitors
    with app.app_context():
        by_day = metrics.report(start=START, end=END, by="day").rows
    assert by_day["2026-03-01"].visitors == 4


def test_an_upgrade_after_a_report_adds_its_amount(app, pages):
    before = counted(app, start=START, end=END).total
    with app.app_context():
        add_upgrade(lead_by_email("l4@example.com"), "19.99", at(D2, 9, 30))
        db.session.commit()
    after = counted(app, start=START, end=END).total
    assert (after.upgrades, after.revenue) == (before.upgrades + 1,
                                               before.revenue + Decimal("19.99"))


def test_a_row_inserted_after_deleting_the_newest_rows_is_still_counted(app, clock):
    # SQLite gives the next row the highest id left + 1: an id the last fold passed.
    with app.app_context():
        page = add_page("alpha", ALPHA)
        kept = add_lead(page, "kept@example.com", at(D1, 9), "approved")
        gone = add_lead(page, "gone@example.com", at(D1, 9), "approved")
        add_visit(page, "v1", at(D1, 9))
        db.session.commit()
        kept_id, gone_id, page_id = kept.id, gone.id, page.id
    assert counted(app).total.leads == 2
    with app.app_context():
        db.session.delete(db.session.get(Lead, gone_id))  # rows can still go (a page's)
        db.session.commit()
        add_lead(db.session.get(Page, page_id), "new@example.com", at(D1, 10), "pending")
        db.session.commit()
        insert_event(kept_id, page_id, "unsubscribe")
        db.session.commit()
    total = counted(app).total
    assert (total.leads, total.pending, total.unsubscribes) == (2, 1, 1)


def test_deleting_a_page_moves_its_leads_to_none_and_its_visitors_out(app, pages):
    with app.app_context():
        metrics.report()
        db.session.delete(db.session.get(Page, pages["beta"]))
        db.session.commit()
    report = counted(app, start=START, end=END)
    assert report.total.visitors == 4  # c1, c2, c3, c6 on alpha
    with app.app_context():
        rows = metrics.report(start=START, end=END, by="page").rows
    assert list(rows) == ["(none)", "alpha"]
    assert (rows["(none)"].leads, rows["(none)"].payout) == (3, Decimal("0.00"))


def test_rebuilding_gives_the_numbers_the_folds_gave(app, pages):
    with app.app_context():
        leads.approve(lead_by_email("l3@example.com"))
        metrics.report()
        folded = {by: metrics.report(start=START, end=END, by=by) for by in
                  (None, *metrics.DIMENSIONS)}
        with db.engine.connect() as connection:
            rollups.rebuild(connection)
        for by, report in folded.items():
            assert metrics.report(start=START, end=END, by=by) == report


def test_rebuild_command_puts_right_a_change_made_with_plain_sql(app, pages):
    with app.app_context():
        before = metrics.report(start=START, end=END).total
        db.session.execute(update(Lead).where(Lead.email == "l3@example.com")
                           .values(review="approved"))  # no note_changed: not seen
        db.session.commit()
        assert metrics.report(start=START, end=END).total.approved == before.approved

    result = app.test_cli_runner().invoke(args=["rollups", "rebuild"])

    assert result.exit_code == 0
    assert result.output.startswith("Rebuilt the report rollups in ")
    after = counted(app, start=START, end=END).total
    assert (after.approved, after.payout) == (before.approved + 1, before.payout + ALPHA)


def test_visits_of_bots_never_count(app, clock):
    with app.app_context():
        page = add_page("alpha", ALPHA)
        add_visit(page, "a", at(D1, 9))
        db.session.commit()
        metrics.report()
        db.session.add(Visit(page_id=page.id, visitor_id="crawler", created_at=at(D2, 9),
                             is_bot=True))
        db.session.add(Event(lead_id=add_lead(page, "x@example.com", at(D2, 9), "pending").id,
                             page_id=page.id, kind="open", created_at=at(D2, 9),
                             machine=True, data={}))
        db.session.commit()
    total = counted(app, start=START, end=END).total
    assert (total.visitors, total.opened, total.opens_raw) == (1, 0, 1)


def test_a_report_for_part_of_a_day_counts_the_rows(app, pages):
    with app.app_context():
        assert not metrics.uses_rollups(at(D1, 12), END)
        total = metrics.report(start=at(D2, 0), end=at(D2, 7)).total
    assert (total.visitors, total.leads) == (4, 3)  # c3, c4, c5, c1; L3, L4, L5


def test_upgrading_a_database_with_rows_keeps_every_report_number(
    app, fresh_app,
):
    # The rows are made with today's models, then copied into a database at the
    # revision before the rollups (the columns it has; later ones did not exist).
    pages = seed(app)
    with app.app_context():
        page = db.session.get(Page, pages["beta"])
        listed = add_lead(page, "listed@example.com", at(D2, 8), "approved",
                          utm_source="newsletter")
        insert_event(listed.id, page.id, "import", file="list.csv", line=2)
        add_upgrade(listed, "20.00", at(D2, 9))
        db.session.commit()
    runner = fresh_app.test_cli_runner()
    result = runner.invoke(args=["db", "upgrade", "7a02d6e3ac2b"])
    assert result.exit_code == 0, result.output
    copy_rows(app, fresh_app)
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    with fresh_app.app_context():
        before = {(by, period): metrics._from_tables(*period, None, by)
                  for by in (None, *metrics.DIMENSIONS) for period in ((None, None), (START, END))}
        total = metrics.report(start=START, end=END, page_id=None).total
        # The lead with an import on its timeline is imported now, not an opt-in.
        assert (total.leads, total.imported, total.approved) == (6, 1, 4)
        assert (total.imported_payout, total.imported_upgrade_revenue) == (
            Decimal("4.00"), Decimal("20.00"))
        for (by, period), groups in before.items():
            report = metrics.report(start=period[0], end=period[1], by=by)
            wanted = _rows(groups, by) if by else {}
            assert {k: _plain(v) for k, v in report.rows.items()} == {
                k: _plain(v) for k, v in wanted.items()}
            if by is None:
                assert _plain(report.total) == _plain(groups[None])


def copy_rows(source_app, target_app) -> None:
    """Every row of `source_app`'s tables into the same tables of `target_app`, with
    the columns the target has."""
    with source_app.app_context():
        rows = {table.name: [dict(row._mapping) for row in db.session.execute(table.select())]
                for table in db.metadata.sorted_tables}
    with target_app.app_context():
        inspector = inspect(db.engine)
        with db.engine.begin() as connection:
            for table in db.metadata.sorted_tables:
                if not rows[table.name] or not inspector.has_table(table.name):
                    continue
                names = {column["name"] for column in inspector.get_columns(table.name)}
                # Only the target's columns: table.insert() would add every column
                # with a default of today's model (leads.imported) to the statement.
                target = sa.table(table.name, *(sa.column(name, table.c[name].type)
                                                for name in names if name in table.c))
                connection.execute(target.insert(), [
                    {name: value for name, value in row.items() if name in names}
                    for row in rows[table.name]])


def test_a_backlog_folded_a_few_rows_at_a_time_gives_the_same_numbers(app, pages,
                                                                       monkeypatch):
    monkeypatch.setattr(rollups, "FOLD_ROWS", 2)
    with app.app_context():
        leads.approve(lead_by_email("l3@example.com"))
    counted(app, start=START, end=END)
    counted(app, start=OLD, end=END)


def test_leads_imported_after_a_report_count_under_their_source(app, clock, tmp_path):
    create_page(app, sequence="welcome", fields=FIELDS)
    before = counted(app).total
    path = write(tmp_path, HEADER + "ann@example.com,Ann,DE,yes,news\n"
                                    "dan@example.com,Dan,fr,no,ads\n")
    assert run_import(app, path).created == 2
    after = counted(app).total
    assert (after.leads, after.imported) == (before.leads, before.imported + 2)
    with app.app_context():
        rows = metrics.report(by="source").rows
    assert (rows["news"].imported, rows["ads"].imported) == (1, 1)
    assert (rows["news"].leads, rows["ads"].leads) == (0, 0)


def test_imported_leads_count_apart_from_opt_ins_and_visitors(app, pages, tmp_path):
    before = counted(app, start=START, end=END).total
    path = write(tmp_path, "email,consent\nlisted@example.com,yes\n")
    with app.app_context():
        assert imports.import_file(path, "alpha").created == 1
        listed = lead_by_email("listed@example.com")
        add_upgrade(listed, "20.00", at(D2, 10))
        db.session.commit()

    after = counted(app, start=START, end=END).total

    assert (after.leads, after.imported, after.approved) == (
        before.leads, before.imported + 1, before.approved + 1)
    assert after.conversion_rate == before.conversion_rate
    assert after.revenue == before.revenue + Decimal("22.50")  # payout 2.50 + upgrade
    assert after.earnings_per_visitor == before.earnings_per_visitor


@pytest.mark.skipif(not POSTGRES_URL, reason="SQLite's writer waits out its 10 s busy timeout")
def test_a_report_while_a_writer_holds_the_tables_counts_the_rows(app, pages, caplog):
    with app.app_context():
        page = db.session.get(Page, pages["alpha"])
        add_visit(page, "c8", at(D2, 9))
        db.session.commit()
        with db.engine.connect() as writer:
            writer.execute(update(Lead).where(Lead.email == "l3@example.com")
                           .values(name="Busy"))  # uncommitted: holds leads
            total = metrics.report(start=START, end=END).total
            writer.rollback()
    assert total.visitors == 8
    assert "reading the tables" in caplog.text
