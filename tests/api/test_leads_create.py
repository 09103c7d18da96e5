"""POST /api/v1/leads: the same validation and rules as the page's form."""

import pytest
from sqlalchemy import select

from capture.db import db
from capture.models import Event, Lead, Suppression
from tests.api.conftest import error_of
from tests.conftest import count, lead_of, send_confirmations

FIELDS = [
    {"name": "name", "label": "Name", "type": "text", "required": False},
    {"name": "email", "label": "Email", "type": "email", "required": True},
    {"name": "phone", "label": "Phone", "type": "tel", "required": True},
    {"name": "country", "label": "Country", "type": "country", "required": False},
    {"name": "plan", "label": "Plan", "type": "select", "required": False,
     "options": ["basic", "pro"]},
    {"name": "newsletter", "label": "Newsletter", "type": "checkbox", "required": False},
]


@pytest.fixture
def page(make_page):
    """A page with one field of each kind, a consent box and double opt-in."""
    return make_page(slug="offer", fields=FIELDS, consent="Email me the guide.",
                     double_opt_in=True)


def valid(**changes):
    body = {"page": "offer", "email": "Ann@Example.com", "name": "Ann Lee",
            "country": "DE", "consent": True,
            "fields": {"phone": "+49 30 1234567", "plan": "pro", "newsletter": True}}
    body.update(changes)
    return body


def test_valid_lead_is_created_and_answered_with_201(app, api, page):
    response = api.post("/leads", valid())
    assert response.status_code == 201
    lead = response.get_json()["lead"]
    assert response.get_json()["duplicate"] is False
    assert lead["email"] == "ann@example.com"
    assert lead["page"] == "offer"
    assert lead["fields"] == {"phone": "+49 30 1234567", "plan": "pro", "newsletter": True}
    assert lead["country"] == "DE"
    assert lead["consent_text"] == "Email me the guide."
    assert response.headers["Location"] == f"/api/v1/leads/{lead['public_ref']}"
    stored = lead_of(app, "ann@example.com")
    assert stored.public_ref == lead["public_ref"] and stored.name == "Ann Lee"


def test_double_opt_in_page_emails_the_confirmation(app, api, page, outbox):
    api.post("/leads", valid())
    assert outbox.messages() == []  # queued: the scheduler sends it
    send_confirmations(app)
    [message] = outbox.to("ann@example.com")
    assert "/confirm/" in message.get_body(preferencelist=("plain",)).get_content()


def test_attribution_from_the_body_is_stored(app, api, page):
    api.post("/leads", valid(utm_source="store", utm_campaign="spring", ref="partner7",
                             referrer="https://shop.example/cart", ip="203.0.113.9"))
    lead = lead_of(app, "ann@example.com")
    assert (lead.utm_source, lead.utm_campaign, lead.ref) == ("store", "spring", "partner7")
    assert lead.referrer == "https://shop.example/cart"
    assert lead.consent_ip == "203.0.113.9"


def test_ref_of_another_lead_makes_a_referral(api, page):
    referrer = api.post("/leads", valid()).get_json()["lead"]["public_ref"]
    body = valid(email="bob@example.com", ref=referrer)
    lead = api.post("/leads", body).get_json()["lead"]
    assert lead["referred_by"] == referrer
    assert lead["attribution"]["ref"] == referrer


def test_field_errors_come_back_per_property_and_store_nothing(app, api, page):
    response = api.post("/leads", valid(email="not-an-address", consent=False,
                                        country="XX", fields={"phone": "call me"}))
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_failed"
    assert set(error["fields"]) == {"email", "consent", "country", "fields.phone"}
    assert error["fields"]["email"] == "An email address needs an @, like name@example.com."
    assert count(app, Lead) == 0


def test_a_name_with_a_link_is_refused_like_on_the_form(app, api, page, outbox):
    response = api.post("/leads", valid(name="Ann https://evil.example/claim"))
    assert response.status_code == 422
    assert error_of(response)["fields"] == {"name": "Enter just your name: no web addresses."}
    assert count(app, Lead) == 0
    assert outbox.messages() == []


def test_missing_required_page_field_is_named(api, page):
    body = valid(fields={"plan": "pro"})
    error = error_of(api.post("/leads", body))
    assert error["fields"] == {"fields.phone": "Phone is required."}


def test_values_of_the_wrong_type_are_named(api, page):
    response = api.post("/leads", valid(name=5, consent="yes",
                                        fields={"phone": "+1 555 0100", "newsletter": "y"}))
    assert response.status_code == 422
    assert error_of(response)["fields"] == {"name": "must be a string",
                                            "consent": "must be true or false",
                                            "fields.newsletter": "must be true or false"}


def test_unknown_properties_and_fields_are_refused(api, page):
    error = error_of(api.post("/leads", valid(colour="red", fields={"phone": "+1 555 0100",
                                                                   "age": "40"})))
    assert error["fields"] == {"colour": "unknown property"}
    error = error_of(api.post("/leads", valid(fields={"phone": "+1 555 0100", "age": "40"})))
    assert error["fields"] == {"fields.age": "page offer has no field 'age'"}


def test_unknown_or_unpublished_page_is_a_field_error(api, make_page):
    make_page(slug="draft", published=False)
    for slug in ("nowhere", "draft"):
        error = error_of(api.post("/leads", {"page": slug, "email": "ann@example.com"}))
        assert "no published page" in error["fields"]["page"]


def test_disposable_address_is_rejected_by_the_page_rule(app, api, make_page):
    make_page(slug="open", rules={"block_disposable": True})
    response = api.post("/leads", {"page": "open", "email": "throwaway@mailinator.com"})
    assert response.status_code == 201
    lead = response.get_json()["lead"]
    assert lead["review"] == "rejected"
    assert "disposable" in lead["review_reason"]
    assert lead_of(app, "throwaway@mailinator.com").review == "rejected"


def test_manual_review_page_leaves_the_lead_pending(api, make_page):
    make_page(slug="manual", review="manual")
    lead = api.post("/leads", {"page": "manual", "email": "wait@example.com"}).get_json()
    assert lead["lead"]["review"] == "pending"


def test_suppressed_address_is_refused_with_409_and_not_stored(app, api, page):
    with app.app_context():
        db.session.add(Suppression(email="ann@example.com", reason="deleted by owner"))
        db.session.commit()
    response = api.post("/leads", valid())
    assert response.status_code == 409
    assert error_of(response)["code"] == "suppressed"
    assert count(app, Lead) == 0


def test_known_address_is_a_duplicate_answered_with_200(app, api, page):
    first = api.post("/leads", valid()).get_json()["lead"]
    response = api.post("/leads", valid(email="ANN@example.com", utm_source="partner"))
    assert response.status_code == 200
    body = response.get_json()
    assert body["duplicate"] is True
    assert body["lead"]["public_ref"] == first["public_ref"]
    assert count(app, Lead) == 1
    with app.app_context():
        [event] = db.session.scalars(select(Event).where(Event.kind == "duplicate")).all()
        assert event.data == {"utm_source": "partner"}


def test_body_that_is_not_json_is_refused(api, page):
    response = api.post("/leads", data="email=ann@example.com",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"
    response = api.post("/leads", data="{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"
    response = api.post("/leads", [valid()])
    assert response.status_code == 400


def test_text_that_cannot_be_stored_is_refused(app, api, page):
    for bad in ("Ann\\u0000", "\\ud800"):
        data = '{"page": "offer", "email": "ann@example.com", "name": "' + bad + '"}'
        response = api.post("/leads", data=data, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, bad
        assert error_of(response)["code"] == "invalid_json"
    assert count(app, Lead) == 0


def test_body_larger_than_the_limit_is_a_json_413(api, page):
    response = api.post("/leads", valid(name="x" * 70_000))
    assert response.status_code == 413
    assert error_of(response)["code"] == "too_large"


def test_known_address_on_another_page_is_a_new_optin_answered_with_201(
        app, api, page, make_page):
    make_page(slug="prices", double_opt_in=False)
    first = api.post("/leads", valid()).get_json()["lead"]
    response = api.post("/leads", {"page": "prices", "email": "ann@example.com",
                                   "utm_source": "partner"})
    assert response.status_code == 201
    body = response.get_json()
    assert (body["duplicate"], body["new_person"]) == (False, False)
    assert body["lead"]["public_ref"] == first["public_ref"]
    assert count(app, Lead) == 1
