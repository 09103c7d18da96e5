"""A body that claims to be JSON but is not, sent to every form endpoint: a clear
answer (400, 401, 403, 404, 415 or 422), never a 500 (issue 15, item 14)."""

import pytest
from werkzeug.routing import Rule

from capture import create_app
from tests.api.conftest import new_token
from tests.conftest import create_page

GARBAGE = b"\xff\xfe\x00garbage"
BLOG = "https://blog.example.com"
CLEAR = (400, 401, 403, 404, 415, 422)


def post_rules() -> list[Rule]:
    """Every URL rule of the app that takes a POST (read from a bare app)."""
    app = create_app({"TESTING": True, "SECRET_KEY": "x", "POSTBACK_SECRET": "x",
                      "DATABASE_URL": "sqlite://"})
    return sorted((rule for rule in app.url_map.iter_rules() if "POST" in rule.methods),
                  key=lambda rule: rule.rule)


def url_of(rule: Rule) -> str:
    """The rule with values that name things which exist (the demo page, lead 1 …)."""
    values = {"slug": "offer", "token": "abc", "name": "demo", "step_key": "01"}
    return rule.rule.replace("<int:", "<").replace("<", "{").replace(">", "}").format_map(
        _Defaults(values))


class _Defaults(dict):
    def __missing__(self, key: str) -> str:
        return "1"


RULES = post_rules()


@pytest.fixture
def site(app):
    """A page that blog.example.com may embed, and an API token."""
    create_page(app, allowed_origins=[BLOG])
    return new_token(app)


@pytest.mark.parametrize("rule", RULES, ids=[rule.rule for rule in RULES])
@pytest.mark.parametrize("who", ["visitor", "owner"])
def test_invalid_json_body_is_a_clear_error_on_every_form_endpoint(
        app, site, owner, rule, who):
    client = owner if who == "owner" else app.test_client()
    response = client.post(url_of(rule), data=GARBAGE, content_type="application/json",
                           headers={"Origin": BLOG, "Authorization": f"Bearer {site}",
                                    "Accept": "text/html"})
    assert response.status_code in CLEAR, (response.status_code, rule.rule)
    body = response.get_data(as_text=True)
    assert "Traceback" not in body


def test_the_opt_in_page_says_it_only_takes_a_form(app, demo_page):
    response = app.test_client().post("/p/demo", data=GARBAGE,
                                      content_type="application/json")
    assert response.status_code == 415
    assert "This address only accepts a submitted form." in response.get_data(as_text=True)


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"5", b"{}"])
def test_json_that_is_not_a_form_is_refused_on_the_dashboard_login(app, body):
    response = app.test_client().post("/admin/login", data=body,
                                      content_type="application/json")
    assert response.status_code == 415
