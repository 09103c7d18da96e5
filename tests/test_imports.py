"""List import (`flask --app wsgi leads import`, capture.leads.imports.importer): the report, the rows
it writes, consent and confirmation, merging, suppression, the file formats, dry runs
and streaming."""

import secrets
import tracemalloc
from datetime import datetime

import pytest
from sqlalchemy import select

from capture import scheduler
from capture.leads import confirmations
from capture.leads.imports import importer as imports
from capture.db import db
from capture.models import Enrollment, Event, Lead, Suppression
from tests.conftest import count, create_page, lead_of
from tests.factories import FIELDS, HEADER, run_import, write


def add_lead(app, email: str, **values) -> None:
    with app.app_context():
        db.session.add(Lead(email=email, public_ref=secrets.token_hex(8), **values))
        db.session.commit()


def suppress(app, email: str) -> None:
    with app.app_context():
        db.session.add(Suppression(email=email, reason="deleted by owner"))
        db.session.commit()


def events_of(app, email: str) -> list[tuple[str, dict]]:
    with app.app_context():
        lead_id = db.session.scalar(select(Lead.id).where(Lead.email == email))
        return [(event.kind, event.data) for event in db.session.scalars(
            select(Event).where(Event.lead_id == lead_id).order_by(Event.id))]


def emails(app) -> list[str]:
    with app.app_context():
        return sorted(db.session.scalars(select(Lead.email)))


@pytest.fixture
def page(app):
    """A double opt-in page with the welcome sequence, a country and a plan field."""
    return create_page(app, sequence="welcome", fields=FIELDS)


# --- the report ---------------------------------------------------------------------

def test_good_bad_duplicate_and_suppressed_rows_give_exactly_the_expected_report(
        app, page, tmp_path):
    add_lead(app, "old@example.com", name="", country="FR")
    suppress(app, "gone@example.com")
    path = write(tmp_path, HEADER + (
        "ann@example.com,Ann,DE,yes,news\n"          # 2 created, subscribed
        "not-an-address,Bob,US,yes,\n"               # 3 rejected: email
        "cat@example.com,Cat,Narnia,no,\n"           # 4 rejected: country
        "Old@Example.com,Olga,DE,yes,\n"             # 5 merged into the existing lead
        "gone@example.com,Gone,,yes,\n"              # 6 suppressed
        "dan@example.com,Dan,fr,no,ads\n"            # 7 created, to confirm
        "ANN@example.com,Annie,,yes,\n"              # 8 repeated in the file
    ))

    report = run_import(app, path)

    assert (report.rows, report.created, report.merged, report.repeated, report.suppressed,
            report.rejected) == (7, 2, 1, 1, 1, 2)
    assert (report.subscribed, report.to_confirm) == (1, 1)
    assert [(r.line, r.email, r.detail.split(":")[0]) for r in report.rejections] == [
        (3, "not-an-address", "invalid email 'not-an-address'"),
        (4, "cat@example.com", "unknown country 'Narnia'"),
    ]
    assert emails(app) == ["ann@example.com", "dan@example.com", "old@example.com"]
    assert lead_of(app, "old@example.com").name == "Olga"  # an empty field filled
    assert lead_of(app, "ann@example.com").name == "Ann"   # a repeat fills nothing set


def test_cli_prints_every_rejected_row_and_the_counts(app, page, tmp_path):
    path = write(tmp_path, HEADER + "a@example.com,A,DE,yes,\nbad,B,,yes,\n"
                 "c@example.com,C,XX,yes,\n")

    result = app.test_cli_runner().invoke(args=["leads", "import", str(path), "--page", "offer"])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("line 3: invalid email 'bad'")
    assert lines[1] == "line 4: unknown country 'XX'"
    assert "list.csv → page offer: 3 rows" in lines[2]
    assert "created: 1 (1 subscribed" in result.output
    assert "rejected: 2" in result.output


@pytest.mark.parametrize("args, message", [
    (["/nonexistent/list.csv", "--page", "offer"], "cannot read the file"),
    (["{path}", "--page", "nope"], "no page with slug 'nope'"),
    (["{nomail}", "--page", "offer"], "no email column"),
    (["{path}", "--page", "offer", "--map", "Mobile=phone"], "no column 'Mobile'"),
    (["{path}", "--page", "offer", "--map", "name=shoe_size"], "no field 'shoe_size'"),
])
def test_unusable_input_is_one_line_and_exit_1(app, page, tmp_path, args, message):
    path = write(tmp_path, HEADER + "a@example.com,A,DE,yes,\n")
    nomail = write(tmp_path, "name,country\nA,DE\n", name="nomail.csv")
    args = [arg.format(path=path, nomail=nomail) for arg in args]

    result = app.test_cli_runner().invoke(args=["leads", "import", *args])

    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and message in result.output
    assert count(app, Lead) == 0


# --- consent, confirmation, sequence ------------------------------------------------------

def test_consenting_row_is_subscribed_approved_and_enrolled(app, page, tmp_path):
    run_import(app, write(tmp_path, HEADER + "ann@example.com,Ann,DE,yes,news\n"))

    lead = lead_of(app, "ann@example.com")
    assert (lead.subscription, lead.review, lead.utm_source) == ("subscribed", "approved", "news")
    assert lead.consent_text == "Imported from list.csv (line 2), consent column consent=yes"
    assert count(app, Enrollment) == 1
    kinds = [kind for kind, _ in events_of(app, "ann@example.com")]
    assert kinds == ["import", "approve", "enroll"]


def test_row_without_consent_is_unconfirmed_and_gets_the_confirmation_email(
        make_app, smtp, tmp_path):
    app = make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port)
    create_page(app, slug="offer", sequence="welcome")
    run_import(app, write(tmp_path, HEADER + "dan@example.com,Dan,FR,no,\n"))
    assert lead_of(app, "dan@example.com").subscription == "unconfirmed"
    assert smtp.messages == []  # the import itself sends nothing

    scheduler.run_confirmations(app)

    [message] = smtp.to("dan@example.com")
    assert "confirm" in message["Subject"].lower()
    lead = lead_of(app, "dan@example.com")
    assert lead.subscription == "unconfirmed" and lead.confirmation_sent_at is not None
    assert count(app, Enrollment) == 0
    scheduler.run_confirmations(app)
    assert len(smtp.to("dan@example.com")) == 1  # sent once


def test_confirmations_stay_within_the_sending_rate_cap(make_app, smtp, tmp_path):
    app = make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port,
                   SEND_RATE_PER_MINUTE=2)
    create_page(app, slug="offer")
    rows = "".join(f"p{i}@example.com,P,,no,\n" for i in range(3))
    run_import(app, write(tmp_path, HEADER + rows))

    with app.app_context():
        assert confirmations.send_queued() == 2
        assert confirmations.send_queued() == 0
    assert len(smtp.messages) == 2


def test_a_confirmation_the_mail_server_refused_for_now_is_sent_by_the_next_run(
        make_app, smtp, tmp_path, clock):
    app = make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port)
    create_page(app, slug="offer")
    run_import(app, write(tmp_path, HEADER + "dan@example.com,Dan,FR,no,\n"))
    smtp.data_replies.append("451 4.3.0 try again later")

    with app.app_context():
        assert confirmations.send_queued() == 0
        assert confirmations.send_queued() == 0  # not before its retry time
        clock.advance(seconds=confirmations.RETRY_MIN_SECONDS)
        assert confirmations.send_queued() == 1
    assert len(smtp.to("dan@example.com")) == 1


def test_send_due_sends_the_queued_confirmations_and_says_so(app, page, tmp_path, outbox):
    run_import(app, write(tmp_path, HEADER + "dan@example.com,Dan,FR,no,\n"))

    result = app.test_cli_runner().invoke(args=["send-due"])

    assert result.exit_code == 0
    assert result.output.strip().endswith("; queued confirmations 1")
    assert len(outbox.to("dan@example.com")) == 1


def test_a_file_without_consent_column_asks_everyone_to_confirm(app, page, tmp_path):
    report = run_import(app, write(tmp_path, "email\nann@example.com\n"))

    assert (report.subscribed, report.to_confirm) == (0, 1)
    lead = lead_of(app, "ann@example.com")
    assert lead.subscription == "unconfirmed"
    assert lead.consent_text.endswith("no consent column; asked to confirm by email")


def test_a_consent_date_is_consent_and_kept_as_its_time(app, page, tmp_path):
    run_import(app, write(tmp_path, "email,consent date\n"
                          "ann@example.com,2024-05-31T14:30:00+02:00\nbob@example.com,\n"))

    ann, bob = lead_of(app, "ann@example.com"), lead_of(app, "bob@example.com")
    assert ann.subscription == "subscribed"
    assert ann.consent_at == datetime(2024, 5, 31, 12, 30)
    assert bob.subscription == "unconfirmed"


@pytest.mark.parametrize("value, reason", [
    ("maybe", "consent: 'maybe' is not yes or no"),
])
def test_a_consent_value_that_is_neither_yes_nor_no_rejects_the_row(
        app, page, tmp_path, value, reason):
    report = run_import(app, write(tmp_path, HEADER + f"ann@example.com,Ann,DE,{value},\n"))

    assert [(r.line, r.detail) for r in report.rejections] == [(2, reason)]
    assert count(app, Lead) == 0


def test_page_rules_judge_imported_rows_as_they_judge_opt_ins(app, tmp_path):
    create_page(app, slug="offer", fields=FIELDS, rules={"countries": ["DE"]})
    create_page(app, slug="manual", review="manual")
    path = write(tmp_path, HEADER + "de@example.com,D,DE,yes,\nfr@example.com,F,FR,yes,\n")

    report = run_import(app, path)
    run_import(app, write(tmp_path, HEADER + "m@example.com,M,,yes,\n", "m.csv"), "manual")

    assert report.rules_rejected == 1
    fr = lead_of(app, "fr@example.com")
    assert (fr.review, fr.review_reason) == ("rejected", "country FR not accepted")
    assert lead_of(app, "de@example.com").review == "approved"
    assert lead_of(app, "m@example.com").review == "pending"


def test_a_rejected_lead_gets_no_confirmation_email(app, tmp_path, outbox):
    create_page(app, slug="offer", fields=FIELDS, rules={"countries": ["DE"]})
    run_import(app, write(tmp_path, HEADER + "fr@example.com,F,FR,no,\n"))

    with app.app_context():
        assert confirmations.send_queued() == 0
    assert outbox.messages() == []


# --- merging ------------------------------------------------------------------------------

def test_merge_fills_empty_fields_and_never_changes_the_leads_state(app, page, tmp_path):
    add_lead(app, "old@example.com", name="Olga", subscription="unsubscribed",
             review="rejected", review_reason="spam")
    path = write(tmp_path, "email,name,plan,utm_source\nold@example.com,Other,pro,list\n")

    report = run_import(app, path)

    assert report.merged == 1
    lead = lead_of(app, "old@example.com")
    assert (lead.name, lead.subscription, lead.review) == ("Olga", "unsubscribed", "rejected")
    assert (lead.fields, lead.utm_source) == ({"plan": "Pro"}, "list")
    assert events_of(app, "old@example.com") == [
        ("import_merge", {"file": "list.csv", "line": 2, "filled": ["utm_source", "plan"]})]


# --- mapping ------------------------------------------------------------------------------

def test_map_option_overrides_the_guessed_columns(app, page, tmp_path):
    path = write(tmp_path, "Email,Work email,Name\npriv@example.com,work@example.com,Ann\n")

    run_import(app, path, overrides=imports.parse_map_options(
        ["Work email=email", "Email=", "Name=ignore"]))

    assert emails(app) == ["work@example.com"]
    assert lead_of(app, "work@example.com").name == ""


def test_headers_are_recognised_by_common_names_and_page_labels(app, page, tmp_path):
    path = write(tmp_path, "E-Mail Address;Full name;Country code;Opt-in;Plan;Phone\n"
                 "ann@example.com;Ann;de;Yes;basic;+49 30 1234567\n")

    report = run_import(app, path)

    assert report.created == report.subscribed == 1
    lead = lead_of(app, "ann@example.com")
    assert (lead.name, lead.country, lead.fields) == (
        "Ann", "DE", {"plan": "Basic", "phone": "+49 30 1234567"})


def test_a_bad_address_is_explained_in_plain_words(app, page, tmp_path):
    path = write(tmp_path, "email\nann@@example.com\n")
    [rejection] = run_import(app, path).rejections
    assert rejection.detail == ("invalid email 'ann@@example.com': "
                                "This email address has two @ signs.")


def test_a_name_with_a_link_an_address_or_a_number_rejects_the_row(app, page, tmp_path):
    path = write(tmp_path, "email,name\n"
                 "ok@example.com,Ann Lee\n"
                 "url@example.com,Claim at https://evil.example/win\n"
                 "mail@example.com,Write to boss@evil.example\n"
                 "tel@example.com,Call +1-555-0100\n")
    report = run_import(app, path)
    assert [(r.line, r.detail) for r in report.rejections] == [
        (3, "name: Enter just your name: no web addresses."),
        (4, "name: Enter just your name: no email addresses."),
        (5, "name: Enter just your name: no phone numbers or other long numbers."),
    ]
    assert emails(app) == ["ok@example.com"]


def test_page_field_values_are_checked_like_the_form_checks_them(app, page, tmp_path):
    path = write(tmp_path, "email,plan,phone\na@example.com,Gold,\nb@example.com,,call me\n")

    report = run_import(app, path)

    assert [(r.line, r.detail) for r in report.rejections] == [
        (2, "Plan: 'Gold' is not one of the page's choices"),
        (3, "Phone: 'call me' is not a phone number"),
    ]


# --- file formats ------------------------------------------------------------------------

def test_bom_and_semicolons_are_read(app, page, tmp_path):
    path = write(tmp_path, "\ufeffemail;name\r\nann@example.com;Ann\r\n")

    run_import(app, path)

    assert lead_of(app, "ann@example.com").name == "Ann"


def test_quoted_values_keep_delimiters_and_line_breaks_and_lines_count_from_the_file(
        app, page, tmp_path):
    path = write(tmp_path, 'email,name\n"ann@example.com","Smith, Ann ""Annie"""\n'
                 '"bob@example.com","Bob\nBuilder"\nbad,x\n')

    report = run_import(app, path)

    assert lead_of(app, "ann@example.com").name == 'Smith, Ann "Annie"'
    assert lead_of(app, "bob@example.com").name == "Bob Builder"
    assert [r.line for r in report.rejections] == [5]


def test_formula_values_are_stored_as_plain_data(app, page, tmp_path):
    path = write(tmp_path, 'email,name,utm_source\nann@example.com,"=HYPERLINK(""x"")",@SUM(1)\n')

    run_import(app, path)

    lead = lead_of(app, "ann@example.com")
    assert (lead.name, lead.utm_source) == ('=HYPERLINK("x")', "@SUM(1)")


def test_a_file_in_another_encoding_needs_its_name(app, page, tmp_path):
    path = write(tmp_path, "email,name\nzoe@example.com,Zoë\n", encoding="cp1252")
    runner = app.test_cli_runner()

    refused = runner.invoke(args=["leads", "import", str(path), "--page", "offer"])
    done = runner.invoke(args=["leads", "import", str(path), "--page", "offer",
                               "--encoding", "cp1252"])

    assert refused.exit_code == 1 and "not utf-8 text" in refused.output
    assert done.exit_code == 0
    assert lead_of(app, "zoe@example.com").name == "Zoë"


def test_a_row_with_bytes_that_are_not_text_is_rejected_alone(app, page, tmp_path):
    path = tmp_path / "list.csv"
    path.write_bytes(b"email,name\nann@example.com,Ann\n" + b"x" * 70000 + b"\n"
                     b"bob@example.com,B\xffb\n")

    report = run_import(app, path)

    assert [r.line for r in report.rejections][-1] == 4
    assert "not text in the file's encoding" in report.rejections[-1].detail
    assert lead_of(app, "ann@example.com") is not None


@pytest.mark.parametrize("encoding, message", [
    ("utf-16", "not utf-16 text: it does not start with a byte order mark; give the byte "
               "order (utf-16-le or utf-16-be)"),
    ("rot13", "unknown text encoding 'rot13'"),
    ("base64", "unknown text encoding 'base64'"),
    ("idna", "cannot be read as idna text"),
    ("no-such-thing", "unknown text encoding 'no-such-thing'"),
])
def test_an_encoding_that_cannot_read_the_file_is_one_line(app, page, tmp_path, encoding,
                                                          message):
    path = write(tmp_path, HEADER + "ann@example.com,Ann,DE,yes,\n")

    result = app.test_cli_runner().invoke(
        args=["leads", "import", str(path), "--page", "offer", "--encoding", encoding])

    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.count("\n") == 1 and message in result.output, result.output
    assert count(app, Lead) == 0


def test_a_utf16_file_with_its_byte_order_mark_or_order_given_is_read(app, page, tmp_path):
    with_bom = write(tmp_path, "email,name\nann@example.com,Änne\n", encoding="utf-16")
    little = write(tmp_path, "email,name\nbob@example.com,Bob\n", "le.csv", "utf-16-le")

    run_import(app, with_bom, encoding="utf-16")
    run_import(app, little, encoding="utf-16-le")

    assert (lead_of(app, "ann@example.com").name, lead_of(app, "bob@example.com").name) == (
        "Änne", "Bob")


def test_bytes_the_encoding_cannot_decode_end_the_reading_with_the_line(app, page, tmp_path):
    path = tmp_path / "odd.csv"
    path.write_bytes("email,name\nann@example.com,Ann\n".encode("utf-16") + b"\x00")

    report = run_import(app, path, encoding="utf-16")

    assert report.created == 1
    assert [r.line for r in report.rejections] == [3]
    assert "the rest of the file was not read" in report.rejections[0].detail


def test_a_file_with_too_many_columns_is_refused_before_reading_rows(app, page, tmp_path):
    path = write(tmp_path, "email," + ",".join(f"c{i}" for i in range(20_000)) + "\n"
                 "ann@example.com\n")

    result = app.test_cli_runner().invoke(args=["leads", "import", str(path), "--page", "offer"])

    assert result.exit_code == 1
    assert "list.csv: 20,001 columns, more than the 200 an import takes" in result.output
    assert result.output.count("\n") == 1 and count(app, Lead) == 0


def test_a_file_without_an_email_column_is_refused_before_any_row(app, page, tmp_path):
    path = write(tmp_path, "name,country\nAnn,DE\nBob,FR\n")

    result = app.test_cli_runner().invoke(args=["leads", "import", str(path), "--page", "offer"])

    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "no email column" in result.output and "line" not in result.output


def test_the_email_column_is_found_by_its_values_when_no_header_names_it(app, page, tmp_path):
    path = write(tmp_path, "Contact,Name\nann@example.com,Ann\nbob@example.com,Bob\n")

    report = run_import(app, path)

    assert report.created == 2
    assert lead_of(app, "bob@example.com").name == "Bob"


@pytest.mark.parametrize("text, first, last", [
    # The quote is never closed: the end of the file.
    ('bob@example.com,"Bob\ncat@example.com,Cat\ndan@example.com,Dan\n', 3, 5),
    # A later quote closes it, with text after it.
    ('bob@example.com,"Bob\ncat@example.com,Cat\ndan@example.com,"Dan"\n', 3, 5),
    # A later quote closes it where a value may end.
    ('bob@example.com,"Bob\ncat@example.com,Cat"\ndan@example.com,Dan\n', 3, 4),
])
def test_a_quote_left_open_is_reported_with_its_lines_not_merged(app, page, tmp_path, text,
                                                                 first, last):
    path = write(tmp_path, "email,name\nann@example.com,Ann\n" + text)

    report = run_import(app, path)

    assert [(r.line, r.detail) for r in report.rejections] == [(first, (
        f"a quote opened on line {first} is not closed where it should be: lines "
        f"{first}–{last} were read as one row; add the missing quote and import those "
        "lines again"))]
    assert lead_of(app, "ann@example.com") is not None
    assert lead_of(app, "bob@example.com") is None
    assert (lead_of(app, "dan@example.com") is not None) == (last < 5)


def test_text_after_a_closing_quote_is_reported_with_its_line(app, page, tmp_path):
    path = write(tmp_path, 'email,name\nann@example.com,"Ann" Smith\nbob@example.com,Bob\n')

    report = run_import(app, path)

    assert [(r.line, r.detail) for r in report.rejections] == [
        (2, 'text after a closing quote; a quote inside a quoted value is written twice ("")')]
    assert lead_of(app, "bob@example.com") is not None


def test_every_row_counts_in_exactly_one_outcome(app, tmp_path):
    create_page(app, slug="offer", fields=FIELDS, rules={"block_disposable": True})
    add_lead(app, "old@example.com")
    suppress(app, "gone@example.com")
    path = write(tmp_path, HEADER + "ann@example.com,Ann,,yes,\n"
                 "trash@mailinator.com,T,,yes,\n"       # disposable: rejected by the rules
                 "old@example.com,O,,no,\nann@example.com,A,,no,\n"
                 "gone@example.com,G,,yes,\nbad,B,,no,\ndan@example.com,Dan,,no,\n")

    result = app.test_cli_runner().invoke(args=["leads", "import", str(path), "--page",
                                                "offer", "--dry-run"])
    report = run_import(app, path)

    outcomes = [getattr(report, name) for name in imports.OUTCOMES]
    assert outcomes == [2, 1, 1, 1, 1, 1] and sum(outcomes) == report.rows == 7
    assert (report.subscribed, report.to_confirm) == (1, 1)
    assert lead_of(app, "trash@mailinator.com").review == "rejected"
    assert "would be created: 2 (1 subscribed, 1 asked to confirm" in result.output
    assert "would be created and rejected by the page's rules: 1" in result.output


# --- dry run and streaming ---------------------------------------------------------------

def test_dry_run_reports_the_same_and_writes_nothing(app, page, tmp_path):
    add_lead(app, "old@example.com")
    suppress(app, "gone@example.com")
    path = write(tmp_path, HEADER + "ann@example.com,Ann,DE,yes,\nold@example.com,O,,yes,\n"
                 "gone@example.com,G,,no,\nbad,B,,no,\nann@example.com,A,,no,\n")
    before = {model: count(app, model) for model in (Lead, Event, Enrollment)}

    dry = run_import(app, path, dry_run=True)

    assert {model: count(app, model) for model in before} == before
    assert "(dry run: nothing was written)" in dry.lines()[0]
    real = run_import(app, path)
    assert (dry.created, dry.merged, dry.repeated, dry.suppressed, dry.rejected) == (
        real.created, real.merged, real.repeated, real.suppressed, real.rejected)


def test_rows_are_written_in_batches_with_memory_that_does_not_grow_with_the_file(
        make_app, tmp_path):
    """A smaller stand-in for bench/import_100k.py: 1,200 rows need no more memory than
    300 (beyond a few bytes an address for telling repeats apart)."""
    app = make_app(IMPORT_BATCH_ROWS=100)
    create_page(app, slug="offer")

    def peak(rows: int) -> int:
        lines = "".join(f"user{rows}-{i}@example.com,User {i},DE,no,\n" for i in range(rows))
        path = write(tmp_path, HEADER + lines, name=f"{rows}.csv")
        with app.app_context():
            tracemalloc.start()
            try:
                report = imports.import_file(path, "offer")
                return tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
                assert report.created == rows

    small, large = peak(300), peak(1200)

    assert large < small + 512 * 1024, (small, large)
    assert count(app, Lead) == 1500
