"""`flask leads export`: one CSV row per lead, safe to open in a spreadsheet."""

import csv
import io
import secrets
from datetime import datetime
from decimal import Decimal

import pytest
from sqlalchemy import select

from capture.leads import upgrades as engagement
from capture.db import db
from capture.models import Lead, Page
from tests.conftest import optin

HEADER = [
    "email", "name", "page", "review", "subscription", "utm_source", "utm_medium",
    "utm_campaign", "ref", "created_at", "confirmed_at", "upgrades", "revenue", "tags",
    "pages",
]


def add_lead(app, slug, email, **values):
    """Insert a lead on the page `slug` (None: no page) with the given columns."""
    with app.app_context():
        page_id = db.session.scalar(select(Page.id).where(Page.slug == slug)) if slug else None
        lead = Lead(email=email, public_ref=secrets.token_hex(8), page_id=page_id, **values)
        db.session.add(lead)
        db.session.commit()
        return lead.id


def add_upgrade(app, lead_id, amount):
    with app.app_context():
        engagement.record_upgrade(db.session.get(Lead, lead_id), Decimal(amount), "USD",
                                  f"txn-{lead_id}-{amount}", source="test")
        db.session.commit()


def export(runner, *args):
    result = runner.invoke(args=["leads", "export", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def rows(runner, *args):
    return list(csv.DictReader(io.StringIO(export(runner, *args))))


def emails(runner, *args):
    return [row["email"] for row in rows(runner, *args)]


def test_header_is_exactly_the_spec_columns(runner):
    output = export(runner)
    assert next(csv.reader(io.StringIO(output))) == HEADER
    assert output.count("\n") == 1


def test_one_row_per_lead_with_its_values(app, runner, make_page):
    make_page(slug="offer")
    add_lead(
        app, "offer", "jane@example.com", name="Jane Doe", review="approved",
        subscription="subscribed", utm_source="newsletter", utm_medium="email",
        utm_campaign="spring", ref="partner7",
        created_at=datetime(2025, 3, 1, 9, 30), confirmed_at=datetime(2025, 3, 1, 9, 45),
    )
    assert rows(runner) == [{
        "email": "jane@example.com", "name": "Jane Doe", "page": "offer",
        "review": "approved", "subscription": "subscribed", "utm_source": "newsletter",
        "utm_medium": "email", "utm_campaign": "spring", "ref": "partner7",
        "created_at": "2025-03-01T09:30:00", "confirmed_at": "2025-03-01T09:45:00",
        "upgrades": "0", "revenue": "0.00", "tags": "", "pages": "offer",
    }]


def test_tags_column_holds_the_lead_tags_separated_as_the_import_reads_them(
        app, runner, make_page):
    from capture.leads.tags import add_tags

    make_page(slug="offer")
    lead_id = add_lead(app, "offer", "jane@example.com", review="approved")
    add_lead(app, "offer", "bob@example.com", review="approved")
    with app.app_context():
        add_tags([lead_id], ["webinar", "vip"], "dashboard")
        db.session.commit()
    assert {row["email"]: row["tags"] for row in rows(runner)} == {
        "jane@example.com": "vip;webinar", "bob@example.com": ""}


def test_lead_from_a_real_optin_carries_its_attribution(client, runner, make_page):
    make_page(slug="offer", double_opt_in=False)
    query = "?utm_source=fb&utm_medium=cpc&utm_campaign=launch&ref=alice"
    response = optin(client, "offer", query=query, email="Bob@Example.com", name="Bob")
    assert response.status_code == 303
    [row] = rows(runner)
    assert row["email"] == "bob@example.com"
    assert row["name"] == "Bob"
    assert row["page"] == "offer"
    assert (row["review"], row["subscription"]) == ("approved", "subscribed")
    assert (row["utm_source"], row["utm_medium"], row["utm_campaign"], row["ref"]) == (
        "fb", "cpc", "launch", "alice"
    )
    assert datetime.fromisoformat(row["created_at"])
    assert row["confirmed_at"] == ""


def test_revenue_is_the_page_payout_for_approved_leads_only(app, runner, make_page):
    make_page(slug="offer", payout="2.50")
    add_lead(app, "offer", "approved@example.com", review="approved")
    add_lead(app, "offer", "pending@example.com", review="pending")
    add_lead(app, "offer", "rejected@example.com", review="rejected")
    revenue = {row["email"]: row["revenue"] for row in rows(runner)}
    assert revenue == {
        "approved@example.com": "2.50",
        "pending@example.com": "0.00",
        "rejected@example.com": "0.00",
    }


def test_upgrades_are_counted_and_added_to_revenue(app, runner, make_page):
    make_page(slug="offer", payout="2.50")
    lead_id = add_lead(app, "offer", "buyer@example.com", review="approved")
    add_upgrade(app, lead_id, "10.00")
    add_upgrade(app, lead_id, "5.25")
    [row] = rows(runner)
    assert row["upgrades"] == "2"
    assert row["revenue"] == "17.75"


def test_lead_whose_page_was_deleted_is_still_exported(app, runner):
    add_lead(app, None, "orphan@example.com", review="approved")
    [row] = rows(runner)
    assert row["email"] == "orphan@example.com"
    assert row["page"] == ""
    assert row["pages"] == ""
    assert row["revenue"] == "0.00"


@pytest.mark.parametrize("start", ["=", "+", "-", "@"])
def test_cells_that_would_start_a_formula_are_prefixed_with_a_quote(
    app, runner, make_page, start
):
    make_page(slug="offer")
    add_lead(app, "offer", "x@example.com", name=f"{start}HYPERLINK(\"http://evil\")",
             utm_source=f"{start}1+1", utm_campaign=f"{start}cmd|' /C calc'!A0")
    [row] = rows(runner)
    assert row["name"] == f"'{start}HYPERLINK(\"http://evil\")"
    assert row["utm_source"] == f"'{start}1+1"
    assert row["utm_campaign"] == f"'{start}cmd|' /C calc'!A0"


def test_every_cell_is_quoted_so_a_separator_in_a_value_never_splits_it(
    app, runner, make_page
):
    make_page(slug="offer")
    add_lead(app, "offer", "x@example.com", name="x;=cmd|' /C calc'!A0;y")
    lines = export(runner).splitlines()
    assert lines[0] == ",".join(f'"{column}"' for column in HEADER)
    assert lines[1].startswith('"x@example.com","x;\'=cmd|\' /C calc\'!A0;y","offer",')
    [row] = rows(runner)
    assert row["name"] == "x;'=cmd|' /C calc'!A0;y"


@pytest.mark.parametrize("separator", [";", "\t", "|"])
def test_a_spreadsheet_splitting_at_another_separator_finds_no_formula(
    app, runner, make_page, separator
):
    make_page(slug="offer")
    add_lead(app, "offer", "x@example.com", name=f"x{separator}=cmd|' /C calc'!A0{separator}y",
             utm_source=f"a{separator}+1{separator}@SUM(1)")
    for cells in csv.reader(io.StringIO(export(runner)), delimiter=separator):
        assert not [cell for cell in cells if cell.startswith(("=", "+", "-", "@"))]


def test_ordinary_cells_are_not_quoted(app, runner, make_page):
    make_page(slug="offer")
    add_lead(app, "offer", "x@example.com", name="Ann-Marie O'Neil", utm_source="a=b")
    [row] = rows(runner)
    assert row["name"] == "Ann-Marie O'Neil"
    assert row["utm_source"] == "a=b"


@pytest.fixture
def mixed_leads(app, make_page):
    make_page(slug="offer")
    make_page(slug="other")
    add_lead(app, "offer", "a@example.com", review="approved", subscription="subscribed")
    add_lead(app, "offer", "b@example.com", review="pending", subscription="unconfirmed")
    add_lead(app, "other", "c@example.com", review="rejected", subscription="unsubscribed")
    add_lead(app, "other", "d@example.com", review="approved", subscription="bounced")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("approved", ["a@example.com", "d@example.com"]),
        ("pending", ["b@example.com"]),
        ("rejected", ["c@example.com"]),
        ("subscribed", ["a@example.com"]),
        ("unconfirmed", ["b@example.com"]),
        ("unsubscribed", ["c@example.com"]),
        ("bounced", ["d@example.com"]),
    ],
)
def test_status_filters_by_review_or_subscription_state(runner, mixed_leads, status, expected):
    assert emails(runner, "--status", status) == expected


def test_page_filters_by_slug(runner, mixed_leads):
    assert emails(runner, "--page", "other") == ["c@example.com", "d@example.com"]


def test_page_filter_and_pages_column_count_every_optin_of_a_person(client, runner, make_page):
    make_page(slug="offer", double_opt_in=False)
    make_page(slug="other", double_opt_in=False)
    for slug, email in (("offer", "ann@example.com"), ("other", "bob@example.com"),
                        ("other", "ann@example.com")):
        assert optin(client, slug, email=email).status_code == 303
    assert {row["email"]: (row["page"], row["pages"]) for row in rows(runner)} == {
        "ann@example.com": ("offer", "offer;other"), "bob@example.com": ("other", "other")}
    assert emails(runner, "--page", "other") == ["ann@example.com", "bob@example.com"]
    assert emails(runner, "--page", "offer") == ["ann@example.com"]


def test_status_and_page_filters_combine(runner, mixed_leads):
    assert emails(runner, "--page", "offer", "--status", "approved") == ["a@example.com"]


def test_unknown_status_is_a_clear_error(runner, mixed_leads):
    result = runner.invoke(args=["leads", "export", "--status", "happy"])
    assert result.exit_code != 0
    assert "unknown status 'happy'" in result.stderr
    assert "approved" in result.stderr and "subscribed" in result.stderr
    assert result.stdout == ""


def test_unknown_page_is_a_clear_error(runner, mixed_leads):
    result = runner.invoke(args=["leads", "export", "--page", "nope"])
    assert result.exit_code != 0
    assert "no page with slug 'nope'" in result.stderr
    assert result.stdout == ""


def test_revenue_adds_the_payout_of_each_approved_later_optin(client, runner, make_page):
    make_page(slug="offer", double_opt_in=False, payout="2.50")
    make_page(slug="other", double_opt_in=False, payout="4.00")
    make_page(slug="manual", double_opt_in=False, payout="9.00", review="manual")
    for slug in ("offer", "other", "manual"):
        assert optin(client, slug, email="ann@example.com").status_code == 303
    [row] = rows(runner)
    assert row["revenue"] == "6.50"  # the pending opt-in on "manual" earns nothing yet
