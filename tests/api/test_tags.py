"""POST /api/v1/leads/<ref>/tags, and tags in the API's lead shape."""

from capture.db import db
from capture.leads.tags import add_tags
from tests.api.conftest import error_of
from tests.factories import add_lead


def test_add_and_remove_answer_the_tags_now_and_what_changed(app, api):
    lead_id = add_lead(app)
    with app.app_context():
        add_tags([lead_id], ["cold"], "dashboard")
        db.session.commit()
    response = api.post("/leads/ref-ann/tags", json={"add": ["vip", "vip", "cold"],
                                                     "remove": ["nope"]})
    assert response.status_code == 200
    assert response.get_json() == {"lead": "ref-ann", "tags": ["cold", "vip"],
                                   "added": ["vip"], "removed": []}
    response = api.post("/leads/ref-ann/tags", json={"remove": ["cold"]})
    assert response.get_json()["removed"] == ["cold"]
    lead = api.get("/leads/ref-ann?include=events").get_json()
    assert lead["lead"]["tags"] == ["vip"]
    assert [(e["kind"], e["data"]) for e in lead["events"] if "tag" in e["kind"]] == [
        ("untag", {"tag": "cold", "cause": "api"}), ("tag", {"tag": "vip", "cause": "api"}),
        ("tag", {"tag": "cold", "cause": "dashboard"})]
    assert api.get("/leads").get_json()["leads"][0]["tags"] == ["vip"]


def test_a_bad_name_is_a_422_naming_the_list_and_changes_nothing(app, api):
    add_lead(app)
    response = api.post("/leads/ref-ann/tags", json={"add": ["ok", "Not ok"]})
    assert response.status_code == 422
    assert error_of(response)["fields"] == {
        "add": "tag 'Not ok' may hold only lowercase letters, digits, _ and -"}
    for body, field in [({"add": "vip"}, "add"), ({}, "add"), ({"add": [1]}, "add"),
                        ({"add": ["a"], "remove": ["a"]}, "remove")]:
        response = api.post("/leads/ref-ann/tags", json=body)
        assert response.status_code == 422, body
        assert field in error_of(response)["fields"]
    assert error_of(api.post("/leads/ref-ann/tags", json={"tags": []}))["code"] == \
        "validation_failed"
    assert api.get("/leads/ref-ann").get_json()["lead"]["tags"] == []


def test_an_unknown_lead_is_404(app, api):
    response = api.post("/leads/nobody/tags", json={"add": ["vip"]})
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"


def test_a_lead_created_through_the_api_on_a_tagged_page_has_its_tags(app, api):
    from tests.conftest import create_page

    create_page(app, slug="guide", tags=["from-api-page"], double_opt_in=False)
    response = api.post("/leads", json={"page": "guide", "email": "zoe@example.com"})
    assert response.status_code == 201
    assert response.get_json()["lead"]["tags"] == ["from-api-page"]
