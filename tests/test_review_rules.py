"""Review rules: country, required fields, blocked and disposable domains reject a lead
automatically (stored, with a reason); manual pages wait; auto pages approve."""

import pytest
from sqlalchemy import select

from capture.db import db
from capture.models import Event, Lead
from tests.conftest import lead_of, optin

EMAIL_AND_COUNTRY = [
    {"name": "email", "label": "Email", "type": "email", "required": True},
    {"name": "country", "label": "Country", "type": "country", "required": False},
]


def events(app, email):
    with app.app_context():
        rows = db.session.scalars(
            select(Event).join(Lead).where(Lead.email == email).order_by(Event.id)
        ).all()
        for row in rows:
            db.session.expunge(row)
        return rows


def kinds(app, email):
    return [event.kind for event in events(app, email)]


def assert_rejected(app, email, reason_part):
    lead = lead_of(app, email)
    assert lead is not None, "a rejected lead is still stored"
    assert lead.review == "rejected"
    assert reason_part in lead.review_reason
    assert lead.reviewed_at is not None
    [reject] = [event for event in events(app, email) if event.kind == "reject"]
    assert reject.data["by"] == "rules"
    assert reason_part in reject.data["reason"]
    assert "approve" not in kinds(app, email)


def test_lead_from_unlisted_country_is_rejected_with_reason_naming_it(app, client, make_page):
    make_page(slug="dach", fields=EMAIL_AND_COUNTRY, rules={"countries": ["DE", "AT", "CH"]})
    response = optin(client, "dach", email="fr@example.com", country="FR")
    assert response.status_code == 303
    assert_rejected(app, "fr@example.com", "FR")


def test_lead_from_listed_country_is_approved(app, client, make_page):
    make_page(slug="dach", fields=EMAIL_AND_COUNTRY, rules={"countries": ["de", "AT"]})
    optin(client, "dach", email="de@example.com", country="DE")
    lead = lead_of(app, "de@example.com")
    assert lead.review == "approved"
    assert lead.country == "DE"


def test_country_rule_rejects_lead_that_gave_no_country(app, client, make_page):
    make_page(slug="dach", fields=EMAIL_AND_COUNTRY, rules={"countries": ["DE"]})
    optin(client, "dach", email="none@example.com", country="")
    assert_rejected(app, "none@example.com", "country missing")


def test_rule_required_field_left_empty_is_rejected_with_reason(app, client, make_page):
    make_page(
        slug="quote",
        fields=[
            {"name": "email", "label": "Email", "type": "email", "required": True},
            {"name": "phone", "label": "Phone number", "type": "tel", "required": False},
        ],
        rules={"required": ["phone"]},
    )
    response = optin(client, "quote", email="nophone@example.com", phone="")
    assert response.status_code == 303
    assert_rejected(app, "nophone@example.com", "missing Phone number")

    optin(client, "quote", email="phone@example.com", phone="+1 555 0100")
    assert lead_of(app, "phone@example.com").review == "approved"


def test_rule_required_name_left_empty_is_rejected(app, client, make_page):
    make_page(slug="named", rules={"required": ["name"]})
    optin(client, "named", email="anon@example.com", name="   ")
    assert_rejected(app, "anon@example.com", "missing Name")


@pytest.mark.parametrize(
    "address",
    ["someone@competitor.com", "someone@mail.competitor.com", "SOMEONE@Competitor.COM"],
)
def test_blocked_domain_and_its_subdomains_are_rejected(app, client, make_page, address):
    make_page(slug="open", rules={"block_domains": ["Competitor.com"]})
    optin(client, "open", email=address)
    assert_rejected(app, address.lower(), "competitor.com")


def test_domain_merely_ending_like_a_blocked_one_is_not_rejected(app, client, make_page):
    make_page(slug="open", rules={"block_domains": ["competitor.com"]})
    optin(client, "open", email="someone@notcompetitor.com")
    assert lead_of(app, "someone@notcompetitor.com").review == "approved"


@pytest.mark.parametrize("address", ["throwaway@mailinator.com", "x@sub.mailinator.com"])
def test_disposable_address_is_rejected_when_blocked(app, client, make_page, address):
    make_page(slug="open", rules={"block_disposable": True})
    optin(client, "open", email=address)
    assert_rejected(app, address, "disposable")


def test_disposable_address_is_accepted_without_the_rule(app, client, make_page):
    make_page(slug="open")
    optin(client, "open", email="throwaway@mailinator.com")
    assert lead_of(app, "throwaway@mailinator.com").review == "approved"


def test_manual_review_page_leaves_lead_pending_without_review_event(app, client, make_page):
    make_page(slug="manual", review="manual")
    response = optin(client, "manual", email="wait@example.com")
    assert response.status_code == 303
    lead = lead_of(app, "wait@example.com")
    assert lead.review == "pending"
    assert lead.reviewed_at is None
    assert "approve" not in kinds(app, "wait@example.com")
    assert "reject" not in kinds(app, "wait@example.com")


def test_manual_review_page_still_rejects_by_rules(app, client, make_page):
    make_page(slug="manual", review="manual", rules={"block_domains": ["spam.example"]})
    optin(client, "manual", email="x@spam.example")
    assert_rejected(app, "x@spam.example", "spam.example")


def test_auto_review_page_approves_with_an_approve_event(app, client, make_page):
    make_page(slug="auto", review="auto")
    optin(client, "auto", email="ok@example.com")
    lead = lead_of(app, "ok@example.com")
    assert lead.review == "approved"
    assert lead.reviewed_at is not None
    [approve] = [event for event in events(app, "ok@example.com") if event.kind == "approve"]
    assert approve.data["by"] == "rules"
    assert "reject" not in kinds(app, "ok@example.com")


def test_rejected_lead_gets_the_normal_thanks_and_no_confirmation_email(
    app, client, make_page, outbox
):
    make_page(slug="open", rules={"block_disposable": True})
    response = optin(client, "open", email="throwaway@mailinator.com")
    assert response.status_code == 303
    assert response.headers["Location"] == "/p/open/thanks"
    assert lead_of(app, "throwaway@mailinator.com").review == "rejected"
    assert outbox.to("throwaway@mailinator.com") == []
    assert "confirmation_sent" not in kinds(app, "throwaway@mailinator.com")


def test_pending_lead_gets_a_confirmation_email(app, client, make_page, outbox):
    make_page(slug="manual", review="manual")
    optin(client, "manual", email="wait@example.com")
    assert len(outbox.to("wait@example.com")) == 1


# International domains (issue 15.8): a rule and an address match in either form.

@pytest.mark.parametrize("address", ["x@xn--yaho-sqa.com", "x@yahóo.com"])
def test_disposable_international_domain_is_rejected_in_either_form(app, client, make_page,
                                                                   address):
    make_page(slug="open", rules={"block_disposable": True})
    assert optin(client, "open", email=address).status_code == 303
    assert_rejected(app, "x@yahóo.com", "disposable")


@pytest.mark.parametrize(("blocked", "address"), [
    ("münchen.de", "max@xn--mnchen-3ya.de"),
    ("xn--mnchen-3ya.de", "max@münchen.de"),
    ("MÜNCHEN.de", "max@post.münchen.de"),
])
def test_owner_blocks_an_international_domain_in_either_form(app, client, make_page,
                                                             blocked, address):
    make_page(slug="open", rules={"block_domains": [blocked]})
    assert optin(client, "open", email=address).status_code == 303
    stored = address.replace("xn--mnchen-3ya.de", "münchen.de")
    assert_rejected(app, stored, "münchen.de is blocked")


def _checked_block_domains(app, domains):
    from capture.pages.definition import page_templates_dir, validate_page

    page = {"slug": "open", "title": "Open",
            "fields": [{"name": "email", "label": "Email", "type": "email", "required": True}],
            "rules": {"block_domains": domains}}
    clean, problems = validate_page(page, sequences_dir=app.config["SEQUENCES_DIR"],
                                    templates_dir=page_templates_dir())
    return clean["rules"]["block_domains"], [str(problem) for problem in problems]


def test_international_blocked_domain_is_kept_in_its_unicode_form(app):
    domains, problems = _checked_block_domains(app, ["XN--MNCHEN-3YA.DE", "пример.рф"])
    assert not problems
    assert domains == ["münchen.de", "пример.рф"]
    _, problems = _checked_block_domains(app, ["bad..de"])
    assert problems and "'bad..de' is not a domain" in problems[0]
