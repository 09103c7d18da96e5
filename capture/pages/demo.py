"""The demo page and sequence that `init` installs so a newcomer sees a working loop."""

import shutil
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from capture.db import db
from capture.models import Page
from capture.pages.definition import apply_page, page_templates_dir, validate_page
from config import ROOT

DEMO_PAGE = {
    "slug": "demo",
    "title": "The One-Page Lead Magnet Checklist",
    "headline": "Turn visitors into subscribers with a page that does one thing well",
    "body": (
        "Most opt-in pages ask for too much and promise too little. This free checklist "
        "walks you through the twelve decisions that make a capture page convert:\n\n"
        "- **One promise**, stated in the headline, kept in the first email\n"
        "- **One field** more than you need is one field too many\n"
        "- **Follow-up that sends itself**, timed from the moment someone confirms\n\n"
        "Enter your email and the checklist is in your inbox in a minute."
    ),
    "fields": [
        {"name": "name", "label": "First name", "type": "text", "required": False},
        {"name": "email", "label": "Email", "type": "email", "required": True},
    ],
    "button": "Send me the checklist",
    "consent": "Email me the checklist and occasional tips. Unsubscribe any time.",
    "double_opt_in": True,
    "sequence": "welcome",
    "thank_you": (
        "## You're in!\n\nThe checklist is on its way. The next emails arrive over the "
        "coming days; each one takes two minutes to read."
    ),
    "redirect_url": None,
    "review": "auto",
    "rules": {"block_disposable": True},
    "payout": "1.50",
    "currency": "USD",
    "template": "split.html",
    "published": True,
}


def install() -> list[str]:
    """Add the demo sequence folder and the demo page where missing; say what was added."""
    added = []
    sequences = Path(current_app.config["SEQUENCES_DIR"])
    target = sequences / "welcome"
    source = ROOT / "sequences" / "welcome"
    if not target.exists() and source.is_dir():
        sequences.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, target)
        added.append(f"sequence {target}")
    if db.session.scalar(select(Page.id).where(Page.slug == DEMO_PAGE["slug"])) is None:
        clean, problems = validate_page(
            DEMO_PAGE, sequences_dir=str(sequences), templates_dir=page_templates_dir()
        )
        if problems:
            raise RuntimeError("demo page is invalid: " + "; ".join(problems))
        db.session.add(apply_page(Page(), clean))
        db.session.commit()
        added.append("page /p/demo")
    return added
