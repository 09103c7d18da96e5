"""Upgrading a database that holds rows: a migration that rebuilds a table (SQLite's
batch mode copies, drops and renames it) must not run the ON DELETE actions of the
tables that point at it."""

from sqlalchemy import text

from capture.db import db

BEFORE_TAGS = "9d3e5a7c1f20"

ROWS = [
    "INSERT INTO pages (id, slug, title, headline, body, fields, button, consent,"
    " double_opt_in, thank_you, review, rules, payout, currency, template, published,"
    " allowed_origins, created_at, updated_at) VALUES (1, 'guide', 'Guide', '', '', '[]',"
    " 'Go', '', false, '', 'auto', '{}', 5, 'USD', 'default.html', true, '[]',"
    " '2026-11-01 09:00:00', '2026-11-01 09:00:00')",
    "INSERT INTO visits (id, page_id, visitor_id, created_at, is_bot)"
    " VALUES (1, 1, 'v1', '2026-11-01 09:00:00', false)",
    "INSERT INTO leads (id, email, name, fields, public_ref, page_id, visit_id, consent_text,"
    " consent_at, review, review_reason, subscription, imported, created_at)"
    " VALUES (1, 'ann@example.com', 'Ann', '{}', 'ref1', 1, 1, '', '2026-11-01 09:01:00',"
    " 'approved', '', 'subscribed', false, '2026-11-01 09:01:00')",
    "INSERT INTO deliveries (id, lead_id, sequence, step, filename, status, attempts,"
    " created_at, subject, error) VALUES (1, 1, 'welcome', 'hello', '01-hello.md', 'sent', 1,"
    " '2026-11-01 10:00:00', 'Hello', '')",
    "INSERT INTO links (id, token, delivery_id, url) VALUES (1, 'tok1', 1, 'https://example.com')",
    "INSERT INTO events (id, lead_id, page_id, kind, created_at, delivery_id, machine, data)"
    " VALUES (1, 1, 1, 'click', '2026-11-01 11:00:00', 1, false, '{}')",
]


def test_upgrading_keeps_the_rows_that_point_at_a_rebuilt_table(fresh_app):
    runner = fresh_app.test_cli_runner()
    result = runner.invoke(args=["db", "upgrade", BEFORE_TAGS])
    assert result.exit_code == 0, result.output
    with fresh_app.app_context():
        with db.engine.begin() as connection:
            for statement in ROWS:
                connection.execute(text(statement))
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    with fresh_app.app_context(), db.engine.connect() as connection:
        lead = connection.execute(text("SELECT page_id, visit_id FROM leads")).one()
        visits = connection.execute(text("SELECT count(*) FROM visits")).scalar()
        links = connection.execute(text("SELECT count(*) FROM links")).scalar()
        event = connection.execute(text("SELECT delivery_id FROM events")).scalar()
        page_tags = connection.execute(text("SELECT tags FROM pages")).scalar()
    assert tuple(lead) == (1, 1)
    assert (visits, links, event) == (1, 1, 1)
    assert page_tags in ("[]", [])


def test_downgrading_below_sequence_entries_keeps_the_first_entry_and_no_orphans(fresh_app):
    runner = fresh_app.test_cli_runner()
    result = runner.invoke(args=["db", "upgrade", BEFORE_TAGS])
    assert result.exit_code == 0, result.output
    with fresh_app.app_context(), db.engine.begin() as connection:
        for statement in ROWS:
            connection.execute(text(statement))
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    with fresh_app.app_context(), db.engine.begin() as connection:
        # The lead went through the sequence a second time: its second entry's email,
        # with a link and a click.
        connection.execute(text(
            "INSERT INTO deliveries (id, lead_id, sequence, step, filename, status, attempts,"
            " created_at, subject, error, entry) VALUES (2, 1, 'welcome', 'hello',"
            " '01-hello.md', 'sent', 1, '2026-11-08 10:00:00', 'Hello', '', 2)"))
        connection.execute(text(
            "INSERT INTO links (id, token, delivery_id, url) VALUES (2, 'tok2', 2, 'https://example.com')"))
        connection.execute(text(
            "INSERT INTO events (id, lead_id, page_id, kind, created_at, delivery_id, machine,"
            " data) VALUES (2, 1, 1, 'click', '2026-11-08 11:00:00', 2, false, '{}')"))
    result = runner.invoke(args=["db", "downgrade", "3c1e7a9b5d21"])
    assert result.exit_code == 0, result.output
    with fresh_app.app_context(), db.engine.connect() as connection:
        deliveries = connection.execute(text("SELECT id FROM deliveries")).scalars().all()
        links = connection.execute(text("SELECT delivery_id FROM links")).scalars().all()
        events = connection.execute(
            text("SELECT id, delivery_id FROM events ORDER BY id")).all()
    assert deliveries == [1] and links == [1]
    assert [tuple(row) for row in events] == [(1, 1), (2, None)]


BEFORE_OPTINS = "b18e2a5d7c10"


def test_upgrading_gives_every_lead_its_first_optin_and_keeps_the_numbers(fresh_app):
    from capture.numbers import metrics

    runner = fresh_app.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade", BEFORE_TAGS]).exit_code == 0
    with fresh_app.app_context(), db.engine.begin() as connection:
        for statement in ROWS:
            connection.execute(text(statement))
    assert runner.invoke(args=["db", "upgrade", BEFORE_OPTINS]).exit_code == 0
    with fresh_app.app_context(), db.engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO leads (id, email, name, fields, public_ref, page_id, consent_text,"
            " consent_at, consent_ip, review, review_reason, subscription, imported,"
            " utm_source, created_at) VALUES (2, 'bo@example.com', 'Bo', '{}', 'ref2', 1,"
            " 'Yes please', '2026-11-02 09:00:00', '192.0.2.7', 'rejected', 'fake', 'subscribed',"
            " false, 'ads', '2026-11-02 09:00:00')"))
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    with fresh_app.app_context(), db.engine.connect() as connection:
        optins = connection.execute(text(
            "SELECT lead_id, page_id, first, review, review_reason, utm_source, consent_text,"
            " consent_ip FROM optins ORDER BY lead_id")).all()
    assert [tuple(row) for row in optins] == [
        (1, 1, True, "approved", "", None, "", None),
        (2, 1, True, "rejected", "fake", "ads", "Yes please", "192.0.2.7")]
    with fresh_app.app_context():
        guide = metrics.report(by="page").rows["guide"]
        total = metrics.report().total
    assert (guide.leads, guide.optins, guide.approved, guide.rejected) == (2, 2, 1, 1)
    assert (total.leads, total.payout) == (2, 5)
