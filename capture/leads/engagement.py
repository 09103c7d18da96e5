"""What leads do with the emails: opens and clicks (upgrades: `capture.leads.upgrades`).

Plain functions over the session (the tracking blueprint, the CLI and the tests call
them). Opens and clicks that mail scanners or image proxies make are recorded but
marked `machine`, so the metrics can count people only.
"""

import re
from datetime import timedelta

from flask import current_app
from sqlalchemy import bindparam, insert, select

from capture import clock
from capture import links
from capture.web.user_agents import user_agent_matcher
from capture.db import db
from capture.leads import tags
from capture.mail import membership
from capture.models import Delivery, Intake, Lead, Link
from capture.tag_names import tag_problem
from capture.timeline import event_row, insert_events

# Security gateways, link scanners and scripted clients that fetch links in mail
# before (or instead of) the person. Image proxies that fetch when the person opens
# the mail (Gmail's GoogleImageProxy) are not listed: those opens are real.
SCANNER_USER_AGENT = re.compile(
    r"bot\b|bot/|crawl|spider|scan|barracuda|mimecast|proofpoint|urldefense|symantec|"
    r"messagelabs|trend ?micro|forcepoint|fortinet|sophos|ironport|cisco|zscaler|"
    r"safelinks|microsoft office|ms-office|outlook-ios|skype|slack|preview|"
    r"python|curl/|wget/|go-http-client|java/|okhttp|libwww|headlesschrome|phantomjs",
    re.IGNORECASE,
)
_names_a_scanner = user_agent_matcher(SCANNER_USER_AGENT)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# The largest row id a database integer column holds.
_MAX_ID = 2**31 - 1


def is_machine(user_agent: str | None, sent_at, now) -> bool:
    """True for a known scanner, no user agent, or a request too soon after sending
    for a person to have read the email."""
    if not user_agent or _names_a_scanner(user_agent):
        return True
    if sent_at is None:
        return False
    return now - sent_at < timedelta(seconds=current_app.config["MACHINE_SECONDS"])


# One query each for the pixel and the click: the email, its lead's page, the link.
# `erased`: an erased person's old emails still open and redirect, but nothing about
# them is recorded any more (no user agent, no tag, no sequence started).
_OPENED_EMAIL = (
    select(Delivery.id, Delivery.sent_at, Delivery.lead_id, Lead.page_id,
           (Lead.subscription == "erased").label("erased"))
    .join(Lead, Lead.id == Delivery.lead_id)
    .where(Delivery.id == bindparam("id"))
)
_CLICKED_LINK = (
    select(Link.url, Link.tag, Delivery.id, Delivery.sent_at, Delivery.lead_id, Lead.page_id,
           (Lead.subscription == "erased").label("erased"))
    .join(Delivery, Delivery.id == Link.delivery_id)
    .join(Lead, Lead.id == Delivery.lead_id)
    .where(Link.token == bindparam("token"))
)
_QUEUE = insert(Intake.__table__)


def record_open(token: str, user_agent: str | None) -> bool:
    """Log an open of the email behind a pixel token; False (nothing logged) when the
    token is not genuine."""
    value = links.read("open", token)
    if value is None or not value.isdigit() or int(value) > _MAX_ID:
        return False
    # A connection of its own, not the session: the hottest path of all has no use
    # for the unit of work, and skipping it is a tenth of the request.
    with db.engine.begin() as connection:
        email = connection.execute(_OPENED_EMAIL, {"id": int(value)}).first()
        if email is None:
            return False
        if not email.erased:
            _log_engagement(connection, email, "open", user_agent)
    return True


def record_click(token: str, user_agent: str | None) -> str | None:
    """Log a click and return the stored target URL; None for an unknown token."""
    if not _TOKEN.match(token or ""):
        return None
    with db.engine.begin() as connection:
        link = connection.execute(_CLICKED_LINK, {"token": token}).first()
        if link is None:
            return None
        if link.erased:
            return link.url
        machine = _log_engagement(connection, link, "click", user_agent, url=link.url)
        # What a click sets off goes to the person who clicks, not to a mail scanner
        # that fetched the link first.
        if not machine and current_app.config["OPTIN_PROCESSING"] == "direct":
            follow_click(link.lead_id, link.url, link.tag, connection)
        elif not machine:  # queued: the intake's processor does it (capture.leads.intake)
            connection.execute(_QUEUE, {
                "kind": "click", "page_id": link.page_id, "state": "waiting",
                "payload": {"lead_id": link.lead_id, "url": link.url, "tag": link.tag},
                "created_at": clock.utcnow()})
    return link.url


def follow_click(lead_id: int, url: str, tag: str | None, connection) -> None:
    """What a person's click sets off: the link's tag (its name was checked when the
    email was made) and the sequences whose `click` trigger the URL matches. In the
    request with CAPTURE_OPTIN_PROCESSING=direct, else in the intake's processor,
    dated when the person clicked."""
    if tag and tag_problem(tag) is None:
        tags.add_tags([lead_id], [tag], "link", connection=connection)
    membership.on_click(lead_id, url, connection)


def _log_engagement(connection, email, kind: str, user_agent: str | None, **data) -> bool:
    """An open or click of `email` (its delivery id, lead, page and send time) on the
    lead's timeline, marked machine-made by its user agent or how soon it came.
    Returns whether it was marked machine-made."""
    machine = is_machine(user_agent, email.sent_at, clock.utcnow())
    insert_events([event_row(email.lead_id, email.page_id, kind, delivery_id=email.id,
                             machine=machine, user_agent=(user_agent or "")[:200], **data)],
                  connection)
    return machine
