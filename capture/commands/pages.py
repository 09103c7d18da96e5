"""The `flask --app wsgi pages …` commands: list, export and import opt-in pages as JSON."""

import json
import sys

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import func, select

from capture.db import db
from capture.models import Optin, Page
from capture.pages.definition import apply_page, page_templates_dir, page_to_dict, validate_page

pages_cli = AppGroup("pages", help="List, export and import opt-in pages as JSON.")


@pages_cli.command("list")
def pages_list() -> None:
    """One line per page: slug, state, review mode, sequence, leads (the opt-ins on
    it: a person who opted in on two pages is a lead of each), title."""
    counts = dict(
        db.session.execute(select(Optin.page_id, func.count()).group_by(Optin.page_id)).all()
    )
    pages = db.session.scalars(select(Page).order_by(Page.slug)).all()
    if not pages:
        click.echo("No pages yet. Import some with: .venv/bin/flask --app wsgi pages import FILE")
        return
    click.echo(f"{'slug':<24} {'state':<11} {'review':<7} {'sequence':<16} {'leads':>7}  title")
    for page in pages:
        state = "published" if page.published else "draft"
        click.echo(
            f"{page.slug:<24} {state:<11} {page.review:<7} {page.sequence or '-':<16} "
            f"{counts.get(page.id, 0):>7}  {page.title}"
        )


@pages_cli.command("export")
@click.argument("slug", required=False)
def pages_export(slug: str | None) -> None:
    """Print pages as a JSON list (all of them, or the one named SLUG)."""
    query = select(Page).order_by(Page.slug)
    if slug:
        query = query.where(Page.slug == slug)
    pages = db.session.scalars(query).all()
    if slug and not pages:
        raise click.ClickException(f"no page with slug {slug!r}")
    json.dump([page_to_dict(page) for page in pages], sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


@pages_cli.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8"))
def pages_import(file) -> None:
    """Create or update pages (matched by slug) from a JSON file ('-' for stdin).

    Every page is checked first; if any problem is found, each is printed on its own
    line and nothing is changed."""
    name = getattr(file, "name", "<stdin>")
    try:
        data = json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        _fail([f"{name}: not valid JSON: {error}"])
    items = data if isinstance(data, list) else [data]
    problems: list[str] = []
    cleaned: list[dict] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        clean, errors = validate_page(
            item,
            sequences_dir=current_app.config["SEQUENCES_DIR"],
            templates_dir=page_templates_dir(),
        )
        slug = item.get("slug") if isinstance(item, dict) else None
        where = f"{name}: page {index + 1}" + (f" ({slug})" if isinstance(slug, str) else "")
        if isinstance(slug, str):
            if slug in seen:
                errors.append("slug: used by another page in this file")
            seen.add(slug)
        problems.extend(f"{where}: {error}" for error in errors)
        cleaned.append(clean)
    if problems:
        _fail(problems)

    created = updated = 0
    for clean in cleaned:
        page = db.session.scalar(select(Page).where(Page.slug == clean["slug"]))
        if page is None:
            page = Page()
            db.session.add(page)
            created += 1
        else:
            updated += 1
        apply_page(page, clean)
    db.session.commit()
    click.echo(f"Imported {len(cleaned)} page(s): {created} created, {updated} updated.")


def _fail(lines: list[str]) -> None:
    for line in lines:
        click.echo(line, err=True)
    click.echo(f"{len(lines)} problem(s); nothing was changed.", err=True)
    sys.exit(1)
