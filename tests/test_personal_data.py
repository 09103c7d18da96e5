"""A person's data: `leads data` and the API's `/leads/<ref>/data` give all of it and
nothing of anyone else; `leads erase`, `DELETE /api/v1/leads/<ref>` and the retention of
unconfirmed leads erase it, keeping the rows the numbers count and the address only as
a keyed hash on the suppression list."""

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from capture.db import db
from capture.leads import erasure, intake, tags
from capture.models import (Delivery, Event, Intake, Lead, LeadTag, Optin, Page, Suppression,
                            Visit)
from capture.settings import SettingError
from capture import suppression
from tests.api.conftest import ApiClient, new_token
from tests.conftest import lead_of, optin
from tests.factories import add_lead, three_steps, tick
from tests.test_migrations import BEFORE_TAGS, ROWS


def unconfirmed_lead(app, email: str, created_at) -> int:
    """A lead still waiting for its double opt-in confirmation since `created_at`."""
    lead_id = add_lead(app, email, created_at=created_at)
    with app.app_context():
        db.session.get(Lead, lead_id).subscription = "unconfirmed"
        db.session.commit()
    return lead_id

ANN, BOB = "ann@example.com", "bob@example.com"


@pytest.fixture
def app(make_app, tmp_path):
    """The app, with a sequences folder of its own (the tests write step files)."""
    folder = tmp_path / "sequences"
    folder.mkdir()
    return make_app(SEQUENCES_DIR=str(folder))


@pytest.fixture
def two_people(app, client, make_page, clock):
    """Ann and Bob opted in on a page (Ann from a campaign, with a field and a tag) and
    got the first email of its sequence; Ann opened it."""
    three_steps(app)
    make_page(slug="offer", double_opt_in=False, sequence="course", consent="Email me.",
              tags=["guide"], fields=[
                  {"name": "email", "label": "Email", "type": "email", "required": True},
                  {"name": "name", "label": "Name", "type": "text", "required": False},
                  {"name": "company", "label": "Company", "type": "text", "required": False}])
    optin(client, "offer", query="?utm_source=news&utm_campaign=spring",
          headers={"User-Agent": "AnnBrowser/1.0"}, email=ANN, name="Ann Lee",
          company="Ann Corp", consent="y")
    # Bob on the same computer: the same visitor cookie.
    optin(client, "offer", headers={"User-Agent": "BobBrowser/2.0"}, email=BOB,
          name="Bob Stone", company="Bob Inc", consent="y")
    tick(app)
    ann = lead_of(app, ANN)
    with app.app_context():
        tags.add_tags([ann.id], ["vip"], "dashboard")
        delivery = db.session.scalar(select(Delivery).where(Delivery.lead_id == ann.id))
        db.session.add(Event(lead_id=ann.id, kind="open", delivery_id=delivery.id,
                             data={"user_agent": "AnnMail/3"}))
        db.session.commit()
    return ann, lead_of(app, BOB)


def _texts(document) -> str:
    return json.dumps(document)


def later_optin(app, email: str, ip: str, query: str, referer: str) -> None:
    """The person opts in on the page "prices" from another address and link."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = ip
    assert optin(client, "prices", query=query, email=email, consent="y",
                 headers={"Referer": referer, "User-Agent": f"{ip} browser"}
                 ).status_code == 303


def optin_row(app, email: str, slug: str) -> Optin:
    with app.app_context():
        return db.session.scalar(select(Optin).join(Lead, Lead.id == Optin.lead_id)
                                 .join(Page, Page.id == Optin.page_id)
                                 .where(Lead.email == email, Page.slug == slug))


@pytest.fixture
def later_optins(app, make_page, two_people):
    """Ann and Bob opted in on a second page too, each from their own address, link
    and referring page."""
    make_page(slug="prices", double_opt_in=False, consent="Send me the prices.",
              payout="5.00")
    later_optin(app, ANN, "203.0.113.7", "?utm_source=ads&ref=partner",
                "https://blog.example/ann-post")
    later_optin(app, BOB, "198.51.100.9", "?utm_source=bobads",
                "https://bob.example/home")
    return two_people


def report_numbers(app, runner) -> tuple:
    """Every report the erasure must leave as it was: the CLI's and the API's."""
    api = ApiClient(app.test_client(), new_token(app))
    reports = tuple(runner.invoke(args=["report", *by]).output
                    for by in ([], ["--by", "source"], ["--by", "page"], ["--days", "1"]))
    return reports, api.get("/metrics?by=campaign").get_json(), api.get(
        "/metrics?by=page").get_json()


# --- the data of one person ----------------------------------------------------------------

def test_data_command_gives_everything_about_the_person_and_nothing_of_another(
        app, runner, two_people):
    result = runner.invoke(args=["leads", "data", "Ann@Example.com"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["lead"]["email"] == ANN and data["lead"]["name"] == "Ann Lee"
    assert data["lead"]["fields"]["company"] == "Ann Corp"
    assert data["lead"]["attribution"]["utm_campaign"] == "spring"
    assert data["consent"]["text"] == "Email me."
    [first] = data["optins"]
    assert (first["page"], first["first"], first["consent"]["text"]) == (
        "offer", True, "Email me.")
    assert {(tag["tag"], tag["cause"]) for tag in data["tags"]} == {
        ("guide", "page:offer"), ("vip", "dashboard")}
    kinds = [event["kind"] for event in data["timeline"]]
    assert {"optin", "tag", "send", "open"} <= set(kinds)
    [email] = data["emails"]
    assert email["subject"] == "Welcome, Ann" and email["status"] == "sent"
    assert any(visit["user_agent"] == "AnnBrowser/1.0" for visit in data["visits"])
    assert data["sequences"][0]["sequence"] == "course"
    everything = _texts(data)
    for of_bob in ("bob@", "Bob Stone", "Bob Inc", "BobBrowser", "Welcome, Bob"):
        assert of_bob not in everything


def test_data_and_erase_of_an_unknown_address_exit_1_with_one_line(app, runner):
    for command in ("data", "erase"):
        result = runner.invoke(args=["leads", command, "nobody@example.com"])
        assert result.exit_code == 1
        assert result.output.strip().count("\n") == 0
        assert "nobody@example.com" in result.output


def test_api_data_is_the_same_document_and_404_for_an_unknown_ref(app, runner, two_people):
    ann, _ = two_people
    api = ApiClient(app.test_client(), new_token(app))
    response = api.get(f"/leads/{ann.public_ref}/data")
    assert response.status_code == 200
    assert response.get_json() == json.loads(
        runner.invoke(args=["leads", "data", ANN]).output)
    missing = api.get("/leads/no-such-ref/data")
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"
    assert app.test_client().get(f"/api/v1/leads/{ann.public_ref}/data").status_code == 401


def test_data_gives_every_optin_with_its_consent_and_attribution(app, runner,
                                                                  later_optins):
    data = json.loads(runner.invoke(args=["leads", "data", ANN]).output)
    first, later = data["optins"]
    assert (first["page"], first["first"], later["page"], later["first"]) == (
        "offer", True, "prices", False)
    assert first["consent"]["text"] == "Email me."
    assert first["attribution"]["utm_campaign"] == "spring"
    assert later["consent"]["text"] == "Send me the prices."
    assert later["consent"]["ip"] == "203.0.113.7" and later["consent"]["at"]
    assert (later["review"], later["payout"]) == ("approved", "5.00")
    assert later["attribution"]["utm_source"] == "ads"
    assert later["attribution"]["ref"] == "partner"
    assert later["attribution"]["referrer"] == "https://blog.example/ann-post"
    assert "utm_source=ads" in later["attribution"]["landing_url"]
    assert [visit["page"] for visit in data["visits"]] == ["offer", "prices"]
    everything = _texts(data)
    for of_bob in ("198.51.100.9", "bobads", "bob.example", "bob@", "Bob Stone"):
        assert of_bob not in everything


# --- erasing ------------------------------------------------------------------------------

def test_erase_leaves_no_personal_value_and_keeps_the_rows(app, runner, client, clock,
                                                          two_people):
    ann, bob = two_people
    result = runner.invoke(args=["leads", "erase", ANN])
    assert result.exit_code == 0, result.output
    assert f"Erased lead #{ann.id}" in result.output
    with app.app_context():
        lead = db.session.get(Lead, ann.id)
        assert lead.subscription == "erased" and lead.email == erasure.placeholder(ann.id)
        assert (lead.name, lead.fields, lead.country, lead.consent_ip) == ("", {}, None, None)
        assert lead.public_ref != ann.public_ref
        assert (lead.review, lead.utm_campaign, lead.page_id) == (
            ann.review, "spring", ann.page_id)
        assert db.session.scalar(select(LeadTag.id).where(LeadTag.lead_id == ann.id)) is None
        kinds = [event.kind for event in db.session.scalars(
            select(Event).where(Event.lead_id == ann.id).order_by(Event.id))]
        assert {"optin", "send", "open"} <= set(kinds) and kinds[-1] == "erase"
        everything = _texts(erasure_dump(ann.id))
        for of_ann in ("ann@", "Ann Lee", "Ann Corp", "AnnBrowser", "AnnMail", "Welcome, Ann"):
            assert of_ann not in everything
        # Bob is untouched.
        assert db.session.get(Lead, bob.id).name == "Bob Stone"
        [row] = db.session.scalars(select(Suppression)).all()
        assert row.email is None and row.email_hash == suppression.address_hash(ANN)
        assert suppression.is_suppressed(ANN) and not suppression.is_suppressed(BOB)
    # Erased means gone for lookups, and a new opt-in is refused as a suppressed one.
    assert runner.invoke(args=["leads", "data", ANN]).exit_code == 1
    assert runner.invoke(args=["leads", "erase", ANN]).exit_code == 1
    assert optin(client, "offer", email=ANN, name="Ann again", consent="y").status_code == 303
    assert lead_of(app, ANN) is None
    # Nothing more is sent to the erased lead (Bob gets his next step).
    clock.advance(days=3)
    tick(app)
    with app.app_context():
        steps = db.session.scalars(select(Delivery.lead_id).where(Delivery.step != "welcome"))
        assert set(steps) == {bob.id}


def test_erase_keeps_the_report_and_the_api_metrics_as_they_were(app, runner, two_people):
    before = report_numbers(app, runner)
    assert "Erased" not in before[0][0] and before[1]["total"]["leads"] == 2
    assert runner.invoke(args=["leads", "erase", ANN]).exit_code == 0
    assert report_numbers(app, runner) == before


def test_erase_blanks_the_later_optins_evidence_and_keeps_them_counted(app, runner,
                                                                       later_optins):
    before = report_numbers(app, runner)
    assert (before[1]["total"]["leads"], before[1]["total"]["optins"]) == (2, 4)
    assert runner.invoke(args=["leads", "erase", ANN]).exit_code == 0
    later = optin_row(app, erasure.placeholder(later_optins[0].id), "prices")
    assert (later.consent_ip, later.referrer, later.landing_url) == (None, None, None)
    assert (later.review, later.utm_source, later.first) == ("approved", "ads", False)
    first = optin_row(app, erasure.placeholder(later_optins[0].id), "offer")
    assert (first.consent_ip, first.referrer, first.landing_url) == (None, None, None)
    with app.app_context():
        visit = db.session.get(Visit, later.visit_id)
        assert (visit.user_agent, visit.referrer, visit.landing_url) == (None, None, None)
    with app.app_context():
        everything = _texts(erasure_dump(later_optins[0].id))
    for of_ann in ("203.0.113.7", "blog.example", "Send me the prices."):
        assert of_ann not in everything
    # Bob's opt-ins keep theirs.
    assert optin_row(app, BOB, "prices").consent_ip == "198.51.100.9"
    assert report_numbers(app, runner) == before


def erasure_dump(lead_id: int) -> list:
    """Every value of the rows of one lead (and its visits), for searching."""
    lead = db.session.get(Lead, lead_id)
    rows = [vars(lead)]
    for model in (Event, Delivery, LeadTag, Optin):
        rows += [vars(row) for row in db.session.scalars(
            select(model).where(model.lead_id == lead_id))]
    visits = select(Optin.visit_id).where(Optin.lead_id == lead_id)
    rows += [vars(row) for row in db.session.scalars(
        select(Visit).where((Visit.id == lead.visit_id) | Visit.id.in_(visits)))]
    return [{key: str(value) for key, value in row.items() if not key.startswith("_")}
            for row in rows]


def test_api_delete_erases_and_a_second_call_is_404(app, two_people):
    ann, bob = two_people
    api = ApiClient(app.test_client(), new_token(app))
    response = api.client.delete(f"/api/v1/leads/{ann.public_ref}",
                                 headers={"Authorization": f"Bearer {api.token}"})
    assert response.status_code == 204
    assert lead_of(app, ANN) is None
    again = api.client.delete(f"/api/v1/leads/{ann.public_ref}",
                              headers={"Authorization": f"Bearer {api.token}"})
    assert again.status_code == 404
    listed = api.get("/leads").get_json()["leads"]
    assert [lead["email"] for lead in listed] == [BOB]


# --- what the intake holds: sign-ups waiting or kept as failed, queued clicks ---------

def hold(app, email: str | None = None, state: str = "failed", click_of: int | None = None):
    """An intake row: a sign-up from `email` (failed: its page was deleted), or a
    queued click of the lead `click_of`."""
    with app.app_context():
        if click_of is not None:
            row = Intake(kind="click", page_id=1, state=state,
                         payload={"lead_id": click_of, "url": "https://example.com/x",
                                  "tag": None})
        else:
            row = Intake(kind="optin", page_id=999, state=state,
                         payload={"email": email, "name": "Held Name", "client_ip": "198.51.100.7"},
                         error="LookupError: page 999 was deleted" if state == "failed" else None)
        db.session.add(row)
        db.session.commit()


def held_rows(app) -> list[tuple]:
    with app.app_context():
        return sorted((row.kind, row.state, row.payload.get("email"), row.payload.get("lead_id"))
                      for row in db.session.scalars(select(Intake)))


def test_data_shows_the_sign_ups_the_intake_holds_for_the_person(app, runner, two_people):
    hold(app, ANN)
    hold(app, BOB, state="waiting")
    data = json.loads(runner.invoke(args=["leads", "data", ANN]).output)
    [row] = data["intake"]
    assert (row["kind"], row["state"], row["values"]["name"]) == ("optin", "failed", "Held Name")
    assert "page 999 was deleted" in row["error"]
    assert BOB not in _texts(data)


def test_erase_deletes_the_persons_intake_rows_and_leaves_anothers(app, runner, two_people):
    ann, bob = two_people
    hold(app, ANN)
    hold(app, ANN, state="waiting")
    hold(app, click_of=ann.id, state="waiting")
    hold(app, BOB, state="waiting")
    hold(app, click_of=bob.id, state="waiting")
    assert runner.invoke(args=["leads", "erase", ANN]).exit_code == 0
    assert held_rows(app) == [("click", "waiting", None, bob.id),
                              ("optin", "waiting", BOB, None)]


def test_retention_deletes_old_failed_sign_ups_and_keeps_the_persons_new_ones(make_app,
                                                                                clock):
    app = make_app(UNCONFIRMED_RETENTION_DAYS=30)
    unconfirmed_lead(app, "late@example.com", clock.now - timedelta(days=31))
    hold(app, "late@example.com")  # failed 31 days before the retention runs
    clock.advance(days=31)
    hold(app, "late@example.com", state="failed")  # signing up again: failed, or
    hold(app, "late@example.com", state="waiting")  # still waiting
    with app.app_context():
        assert erasure.erase_unconfirmed() == 1
    assert held_rows(app) == [("optin", "failed", "late@example.com", None),
                              ("optin", "waiting", "late@example.com", None)]


def test_an_address_whose_only_sign_up_failed_can_be_shown_and_erased(make_app):
    from tests.conftest import create_page

    app = make_app(OPTIN_PROCESSING="queued")
    runner = app.test_cli_runner()
    create_page(app, slug="gone", double_opt_in=False)
    optin(app.test_client(), "gone", email="Eve@Example.com", name="Eve")
    with app.app_context():
        db.session.delete(db.session.scalar(select(Page).where(Page.slug == "gone")))
        db.session.commit()
        assert intake.process().failed == 1
    data = json.loads(runner.invoke(args=["leads", "data", "eve@example.com"]).output)
    assert data["lead"] is None
    assert [(row["state"], row["values"]["name"]) for row in data["intake"]] == [("failed", "Eve")]
    result = runner.invoke(args=["leads", "erase", "EVE@example.com"])
    assert result.exit_code == 0, result.output
    assert result.output == ("No lead with email 'EVE@example.com': erased its 1 sign-up held "
                             "in the intake; its address is suppressed (as a keyed hash).\n")
    assert held_rows(app) == []
    with app.app_context():
        assert suppression.is_suppressed("eve@example.com")
    again = runner.invoke(args=["leads", "erase", "eve@example.com"])
    assert again.exit_code == 1 and "no lead with email" in again.output


def test_an_address_suppressed_before_erasure_existed_stays_suppressed(app, client, make_page):
    make_page(slug="offer", double_opt_in=False)
    with app.app_context():
        db.session.add(Suppression(email="old@example.com", reason="deleted by owner"))
        db.session.commit()
        assert suppression.suppressed_among(["old@example.com", ANN]) == {"old@example.com"}
    optin(client, "offer", email="old@example.com")
    assert lead_of(app, "old@example.com") is None


def test_an_erased_bounced_address_keeps_one_hashed_row(app):
    lead_id = add_lead(app, ANN)
    with app.app_context():
        suppression.suppress(ANN, f"bounce: 550 <{ANN}> unknown")
        db.session.commit()
        erasure.erase(db.session.get(Lead, lead_id))
        [row] = db.session.scalars(select(Suppression)).all()
        assert (row.email, row.reason) == (None, "erased")
        assert suppression.suppressed_among([ANN]) == {ANN}


def test_the_hash_is_keyed_by_the_secret_key_and_survives_its_rotation(make_app):
    app = make_app(SECRET_KEY="first")
    with app.app_context():
        first = suppression.address_hash(ANN)
    rotated = make_app(SECRET_KEY="second", SECRET_KEY_FALLBACKS=["first"])
    with rotated.app_context():
        assert suppression.address_hash(ANN) != first
        db.session.add(Suppression(email=None, email_hash=first, reason="erased"))
        db.session.commit()
        assert suppression.is_suppressed(ANN)


# --- retention ----------------------------------------------------------------------------

def test_unconfirmed_leads_are_erased_after_the_retention_days(make_app, clock):
    app = make_app(UNCONFIRMED_RETENTION_DAYS=30)
    unconfirmed_lead(app, "waiting@example.com", clock.now)
    add_lead(app, "confirmed@example.com", created_at=clock.now)
    with app.app_context():
        clock.advance(days=29)
        assert erasure.erase_unconfirmed() == 0
        clock.advance(days=1, minutes=1)
        assert erasure.erase_unconfirmed() == 1
        states = dict(db.session.execute(select(Lead.name, Lead.subscription)).all())
    assert sorted(states.values()) == ["erased", "subscribed"]
    assert lead_of(app, "waiting@example.com") is None


def test_a_repeat_opt_in_restarts_the_retention_and_retention_does_not_suppress(app, clock):
    from tests.conftest import create_page

    app.config["UNCONFIRMED_RETENTION_DAYS"] = 30
    create_page(app, slug="offer")
    optin(app.test_client(), "offer", email="bob@example.com", name="Bob")
    clock.advance(days=29)
    optin(app.test_client(), "offer", email="bob@example.com", name="Bob")  # sent again
    clock.advance(days=2)
    with app.app_context():
        assert erasure.erase_unconfirmed() == 0
        clock.advance(days=29)
        assert erasure.erase_unconfirmed() == 1
        assert not suppression.is_suppressed("bob@example.com")
    optin(app.test_client(), "offer", email="bob@example.com", name="Bob")
    assert lead_of(app, "bob@example.com").subscription == "unconfirmed"


def test_retention_never_erases_a_lead_who_confirmed_meanwhile(make_app, clock):
    app = make_app(UNCONFIRMED_RETENTION_DAYS=30)
    lead_id = unconfirmed_lead(app, "waiting@example.com", clock.now - timedelta(days=31))
    with app.app_context():
        lead = db.session.get(Lead, lead_id)  # read before the confirmation lands
        db.session.execute(text("UPDATE leads SET subscription = 'subscribed'"))
        db.session.commit()
        assert not erasure.erase(lead, by="retention", suppress=False,
                                 if_subscription="unconfirmed")
    assert lead_of(app, "waiting@example.com").subscription == "subscribed"


def test_retention_0_keeps_unconfirmed_leads(make_app, clock):
    app = make_app(UNCONFIRMED_RETENTION_DAYS=0)
    unconfirmed_lead(app, "waiting@example.com", clock.now - timedelta(days=3650))
    with app.app_context():
        assert erasure.erase_unconfirmed() == 0
    assert lead_of(app, "waiting@example.com") is not None


def test_the_scheduler_tick_runs_the_retention(make_app, clock):
    from capture import scheduler

    app = make_app()
    unconfirmed_lead(app, "waiting@example.com", clock.now - timedelta(days=31))
    scheduler.run_tick(app)
    assert lead_of(app, "waiting@example.com") is None


@pytest.mark.parametrize("value", ["-1", "soon", "1.5"])
def test_a_bad_retention_stops_start_up_with_one_line(make_app, value):
    with pytest.raises(SettingError) as raised:
        make_app(UNCONFIRMED_RETENTION_DAYS=value)
    assert "CAPTURE_UNCONFIRMED_RETENTION_DAYS" in str(raised.value)
    assert "\n" not in str(raised.value)


# --- the migration ------------------------------------------------------------------------

def test_the_migration_keeps_suppressions_and_leads(fresh_app):
    runner = fresh_app.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade", BEFORE_TAGS]).exit_code == 0
    with fresh_app.app_context(), db.engine.begin() as connection:
        for statement in ROWS:
            connection.execute(text(statement))
        connection.execute(text(
            "INSERT INTO suppressions (email, reason, created_at)"
            " VALUES ('gone@example.com', 'deleted by owner', '2026-11-01 09:00:00')"))
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    with fresh_app.app_context():
        assert db.session.scalar(select(Lead.email)) == ANN
        assert suppression.is_suppressed("gone@example.com")
        db.session.add(Suppression(email=None, email_hash=suppression.address_hash(ANN),
                                   reason="erased"))
        db.session.commit()
        assert suppression.suppressed_among([ANN, "gone@example.com", BOB]) == {
            ANN, "gone@example.com"}


def test_an_erased_persons_old_email_still_opens_and_redirects_but_records_nothing(
        smtp_app, smtp, clock):
    import re as regex

    from tests.conftest import HUMAN
    from tests.factories import sequence_folder, write_step

    write_step(sequence_folder(smtp_app), "01-hi.md", "Hi",
               'Read [the guide](https://example.com/guide "tag:guide-reader").\n', delay=0)
    lead_id = add_lead(smtp_app)
    tick(smtp_app)
    html = smtp.messages[0].get_body(("html",)).get_content()
    clock.advance(minutes=10)
    with smtp_app.app_context():
        erasure.erase(db.session.get(Lead, lead_id))
        events_before = db.session.scalar(select(func.count()).select_from(Event))
    base = smtp_app.config["BASE_URL"]
    click = regex.search(rf'href="{base}(/c/[^"]+)"[^>]*>the guide<', html).group(1)
    pixel = regex.search(rf'src="{base}(/o/[^"]+)"', html).group(1)
    client = smtp_app.test_client()
    answer = client.get(click, headers={"User-Agent": HUMAN})
    assert (answer.status_code, answer.headers["Location"]) == (302, "https://example.com/guide")
    assert client.get(pixel, headers={"User-Agent": HUMAN}).status_code == 200
    with smtp_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Event)) == events_before
        assert tags.tags_of([lead_id]) == {lead_id: []}
