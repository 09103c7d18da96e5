"""`flask pages list / export / import`: pages as JSON for version control."""

import json
import secrets

from sqlalchemy import delete, func, select

from capture.db import db
from capture.models import Lead, Page
from tests.conftest import optin

FULL_PAGE = {
    "slug": "full",
    "title": "Everything set",
    "headline": "A headline",
    "body": "Some **Markdown** body.\n\n- one\n- two",
    "fields": [
        {"name": "email", "label": "Your email", "type": "email", "required": True},
        {"name": "name", "label": "Name", "type": "text", "required": True},
        {"name": "phone", "label": "Phone", "type": "tel", "required": False},
        {"name": "country", "label": "Country", "type": "country", "required": True},
        {"name": "plan", "label": "Plan", "type": "select", "required": True,
         "options": ["Basic", "Pro"]},
        {"name": "terms", "label": "I accept", "type": "checkbox", "required": True},
    ],
    "button": "Get it",
    "consent": "Send me emails. Unsubscribe any time.",
    "double_opt_in": False,
    "proof_of_work": True,
    "sequence": "welcome",
    "thank_you": "",
    "redirect_url": "https://shop.example.com/welcome?x=1",
    "review": "manual",
    "rules": {
        "countries": ["DE", "FR"],
        "required": ["name", "phone"],
        "block_domains": ["spam.example"],
        "block_disposable": True,
    },
    "payout": "2.50",
    "currency": "EUR",
    "template": "video.html",
    "language": "de",
    "image": "",
    "image_alt": "The author at her desk",
    "video_url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
    "published": False,
    "allowed_origins": [],
    "tags": ["guide"],
    "variants": [{"key": "b", "weight": 30, "paused": False, "headline": "Another headline",
                  "button": "Send it"}],
    "variant_a_weight": 70,
}


def export(runner, *args):
    result = runner.invoke(args=["pages", "export", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def import_file(runner, tmp_path, data, name="pages.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return runner.invoke(args=["pages", "import", str(path)]), str(path)


def page_rows(app):
    with app.app_context():
        return {
            page.slug: {key: getattr(page, key) for key in ("title", "headline", "payout")}
            for page in db.session.scalars(select(Page))
        }


def add_lead(app, slug, email, **values):
    with app.app_context():
        page_id = db.session.scalar(select(Page.id).where(Page.slug == slug))
        db.session.add(Lead(email=email, public_ref=secrets.token_hex(8), page_id=page_id,
                            **values))
        db.session.commit()


def test_export_prints_a_json_list_of_every_page(runner, make_page):
    make_page(slug="beta", title="Beta")
    make_page(slug="alpha", title="Alpha")
    pages = export(runner)
    assert isinstance(pages, list)
    assert [page["slug"] for page in pages] == ["alpha", "beta"]
    assert pages[0]["title"] == "Alpha"
    assert set(pages[0]) == set(FULL_PAGE)


def test_export_of_an_empty_database_is_an_empty_list(runner):
    assert export(runner) == []


def test_export_then_import_reproduces_every_field(app, runner, make_page, tmp_path):
    make_page(**FULL_PAGE)
    make_page(slug="plain", title="Plain")
    exported = export(runner)
    assert exported[0] == FULL_PAGE
    with app.app_context():
        db.session.execute(delete(Page))
        db.session.commit()
    assert export(runner) == []

    result, _ = import_file(runner, tmp_path, exported)
    assert result.exit_code == 0, result.output
    assert export(runner) == exported


def test_reimporting_an_export_restores_edited_pages(app, runner, make_page, tmp_path):
    make_page(**FULL_PAGE)
    exported = export(runner)
    with app.app_context():
        page = db.session.scalar(select(Page).where(Page.slug == "full"))
        page.title = "Edited"
        page.fields = []
        page.rules = {}
        page.published = True
        db.session.commit()

    result, _ = import_file(runner, tmp_path, exported)
    assert result.exit_code == 0, result.output
    assert "0 created, 1 updated" in result.stdout
    assert export(runner) == exported


def test_export_slug_prints_only_that_page(runner, make_page):
    make_page(slug="alpha", title="Alpha")
    make_page(slug="beta", title="Beta")
    pages = export(runner, "beta")
    assert [page["slug"] for page in pages] == ["beta"]


def test_export_of_an_unknown_slug_fails_with_a_message(runner, make_page):
    make_page(slug="alpha")
    result = runner.invoke(args=["pages", "export", "nope"])
    assert result.exit_code != 0
    assert "no page with slug 'nope'" in result.stderr
    assert result.stdout == ""


def test_import_creates_new_pages_and_updates_existing_ones_by_slug(
    app, runner, make_page, tmp_path
):
    make_page(slug="offer", title="Old title", payout="1.00")
    result, _ = import_file(runner, tmp_path, [
        {"slug": "offer", "title": "New title", "payout": "3.00"},
        {"slug": "fresh", "title": "Fresh page", "headline": "Hello"},
    ])
    assert result.exit_code == 0, result.output
    assert "Imported 2 page(s): 1 created, 1 updated." in result.stdout
    rows = page_rows(app)
    assert set(rows) == {"offer", "fresh"}
    assert rows["offer"]["title"] == "New title"
    assert str(rows["offer"]["payout"]) == "3.00"
    assert rows["fresh"]["headline"] == "Hello"


def test_import_of_a_single_object_creates_that_page(app, runner, tmp_path):
    result, _ = import_file(runner, tmp_path, {"slug": "solo", "title": "Solo"})
    assert result.exit_code == 0, result.output
    assert set(page_rows(app)) == {"solo"}


def test_import_reads_standard_input_with_a_dash(app, runner):
    result = runner.invoke(
        args=["pages", "import", "-"], input=json.dumps([{"slug": "piped", "title": "Piped"}])
    )
    assert result.exit_code == 0, result.output
    assert set(page_rows(app)) == {"piped"}


def test_imported_page_is_live_at_its_url(client, runner, tmp_path):
    result, _ = import_file(runner, tmp_path, [
        {"slug": "live", "title": "Live page", "headline": "Read me first"},
    ])
    assert result.exit_code == 0, result.output
    response = client.get("/p/live")
    assert response.status_code == 200
    assert "Read me first" in response.get_data(as_text=True)


BROKEN_FILE = [
    {"slug": "Bad Slug!", "title": "One"},
    {"slug": "colours", "title": "Two", "colour": "red"},
    {"slug": "untitled"},
    {"slug": "typed", "title": "Four", "fields": [
        {"name": "email", "label": "Email", "type": "email", "required": True},
        {"name": "phone", "label": "Phone", "type": "telephone"},
    ]},
    {"slug": "choose", "title": "Five", "fields": [{"name": "plan", "type": "select"}]},
    {"slug": "money", "title": "Six", "currency": "DOLLARS"},
    {"slug": "negative", "title": "Seven", "payout": "-1.00"},
    {"slug": "script", "title": "Eight", "redirect_url": "javascript:alert(1)"},
    {"slug": "nosequence", "title": "Nine", "sequence": "nope"},
    {"slug": "ruled", "title": "Ten", "rules": {"colour": ["red"]}},
    {"slug": "valid", "title": "Valid"},
    {"slug": "valid", "title": "Twice"},
    {"slug": "offer", "title": "Would change the existing page"},
]
EXPECTED_PROBLEMS = [
    (1, "Bad Slug!", "slug", "lowercase letters, digits and dashes"),
    (2, "colours", "colour", "unknown field"),
    (3, "untitled", "title", "required"),
    (4, "typed", "fields[1] (phone).type", "must be one of text, email, tel"),
    (5, "choose", "fields[0] (plan).options", "a select needs a list of options"),
    (6, "money", "currency", "'DOLLARS' is not an ISO 4217 currency code"),
    (7, "negative", "payout", "must be between 0 and 1000000"),
    (8, "script", "redirect_url", "must be an absolute http(s) URL"),
    (9, "nosequence", "sequence", "no folder nope"),
    (10, "ruled", "rules.colour", "unknown rule"),
    (12, "valid", "slug", "used by another page in this file"),
]


def test_import_prints_each_problem_on_its_own_line_naming_page_and_field(
    runner, make_page, tmp_path
):
    make_page(slug="offer", title="Old title")
    result, path = import_file(runner, tmp_path, BROKEN_FILE)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    for number, slug, field, message in EXPECTED_PROBLEMS:
        prefix = f"{path}: page {number} ({slug}): {field}: "
        matching = [line for line in lines if line.startswith(prefix)]
        assert len(matching) == 1, (prefix, lines)
        assert message in matching[0]
    assert lines[-1] == f"{len(EXPECTED_PROBLEMS)} problem(s); nothing was changed."
    assert len(lines) == len(EXPECTED_PROBLEMS) + 1
    assert "Traceback" not in result.output


def test_import_with_problems_changes_nothing(app, runner, make_page, tmp_path):
    make_page(slug="offer", title="Old title")
    before = page_rows(app)
    result, _ = import_file(runner, tmp_path, BROKEN_FILE)
    assert result.exit_code == 1
    assert page_rows(app) == before
    assert "valid" not in page_rows(app)


def test_import_of_invalid_json_fails_with_one_message_and_changes_nothing(
    app, runner, make_page, tmp_path
):
    make_page(slug="offer", title="Old title")
    before = page_rows(app)
    result, path = import_file(runner, tmp_path, '[{"slug": "new", "title": "New"},')
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0].startswith(f"{path}: not valid JSON")
    assert "Traceback" not in result.output
    assert page_rows(app) == before


def test_import_reports_values_of_the_wrong_json_type_without_crashing(
    app, runner, tmp_path
):
    result, path = import_file(runner, tmp_path, [
        {"slug": ["a", "list"], "title": "List slug"},
        {"slug": "required", "title": "Odd rule", "rules": {"required": [["name"]]}},
        {"slug": "broken-url", "title": "Odd URL", "redirect_url": "http://[::1"},
        {"slug": "numbers", "title": 5, "fields": "email", "published": "yes"},
        "not an object",
    ])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    text = result.stderr
    assert f"{path}: page 1: slug: required" in text
    assert f"{path}: page 2 (required): rules.required: " in text
    assert f"{path}: page 3 (broken-url): redirect_url: " in text
    assert f"{path}: page 4 (numbers): title: required text" in text
    assert f"{path}: page 4 (numbers): fields: must be a list" in text
    assert f"{path}: page 4 (numbers): published: must be true or false" in text
    assert f"{path}: page 5: page: must be a JSON object" in text
    assert page_rows(app) == {}


def test_list_shows_each_page_with_its_lead_count(app, runner, make_page):
    make_page(slug="alpha", title="Alpha guide")
    make_page(slug="beta", title="Beta guide", published=False, review="manual")
    add_lead(app, "alpha", "one@example.com")
    add_lead(app, "alpha", "two@example.com")
    result = runner.invoke(args=["pages", "list"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert set(rows) == {"alpha", "beta"}
    assert rows["alpha"].split()[:5] == ["alpha", "published", "auto", "-", "2"]
    assert rows["alpha"].endswith("Alpha guide")
    assert rows["beta"].split()[:5] == ["beta", "draft", "manual", "-", "0"]


def test_list_with_no_pages_says_how_to_add_one(runner):
    result = runner.invoke(args=["pages", "list"])
    assert result.exit_code == 0
    assert "No pages yet" in result.stdout
    assert "pages import" in result.stdout


def test_list_counts_leads_from_real_optins(app, client, runner, demo_page):
    optin(client, email="a@example.com", consent="y")
    optin(client, email="b@example.com", consent="y")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Lead)) == 2
    result = runner.invoke(args=["pages", "list"])
    demo_row = next(line for line in result.stdout.splitlines() if line.startswith("demo "))
    assert demo_row.split()[:5] == ["demo", "published", "auto", "welcome", "2"]
