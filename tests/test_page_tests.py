"""Page tests (A/B): `variants` in the page definition, which variant a visitor gets
and keeps, the page served, checked and recorded as that variant, pause and promote
(capture.pages.variants, capture.public.optin and render)."""

import json
import random
import time

import pytest
from sqlalchemy import select

from capture.db import db
from capture.models import Lead, Optin, Page, Visit
from capture.numbers import variants as page_tests
from capture.pages import variants
from capture.pages.definition import page_templates_dir, validate_page
from capture.pages.service import pause_variant, promote_variant
from tests.conftest import form_tokens, optin, send_confirmations

FIELDS = [{"name": "name", "label": "Name", "type": "text", "required": False},
          {"name": "email", "label": "Email", "type": "email", "required": True}]
B_FIELDS = [*FIELDS, {"name": "company", "label": "Company", "type": "text", "required": True}]
TEST = {"headline": "Headline A", "thank_you": "Thanks from A", "fields": FIELDS,
        "double_opt_in": False, "payout": "2.00",
        "variants": [{"key": "b", "headline": "Headline B", "thank_you": "Thanks from B",
                      "button": "Get B", "fields": B_FIELDS}]}


def check(app, **values):
    """validate_page of a page with these values: (clean, problems)."""
    data = {"slug": "offer", "title": "Offer", **values}
    with app.app_context():
        return validate_page(data, sequences_dir=app.config["SEQUENCES_DIR"],
                             templates_dir=page_templates_dir())


def visitor_of(app, key: str, slug: str = "offer") -> str:
    """A visitor id that the page's test gives variant `key`."""
    with app.app_context():
        page = db.session.scalar(select(Page).where(Page.slug == slug))
        test = variants.test_of(page)
    for number in range(10_000):
        vid = f"{number:032x}"
        if test.assign(vid) == key:
            return vid
    raise AssertionError(f"no visitor for {key}")


def client_of(app, vid: str):
    client = app.test_client()
    client.set_cookie("capture_vid", vid)
    return client


def visits(app) -> list[Visit]:
    with app.app_context():
        return list(db.session.scalars(select(Visit).order_by(Visit.id)))


# --- the definition ------------------------------------------------------------------

def test_a_valid_test_is_kept_in_its_clean_form(app):
    clean, problems = check(app, fields=FIELDS, variant_a_weight=70, variants=[
        {"key": "b", "weight": 30, "headline": "Other", "fields": B_FIELDS[1:]},
        {"key": "c-2", "paused": True, "button": "Go"}])
    assert problems == []
    assert clean["variant_a_weight"] == 70
    assert clean["variants"] == [
        {"key": "b", "weight": 30, "paused": False, "headline": "Other",
         "fields": B_FIELDS[1:]},
        {"key": "c-2", "weight": None, "paused": True, "button": "Go"}]


@pytest.mark.parametrize("weight", [0, -5, "50", 12.5, True, 10_001])
def test_a_weight_that_is_not_a_positive_whole_number_is_one_problem(app, weight):
    _, problems = check(app, variants=[{"key": "b", "weight": weight, "headline": "B"}])
    assert problems == ["variants[0] (b).weight: must be a positive whole number "
                        "(at most 10000)"]
    _, problems = check(app, variant_a_weight=weight, variants=[{"key": "b"}])
    assert len(problems) == 1 and problems[0].startswith("variant_a_weight: ")


def test_a_key_used_twice_or_malformed_is_one_problem_each(app):
    _, problems = check(app, variants=[{"key": "b"}, {"key": "b", "headline": "x"},
                                       {"key": "a"}, {"key": "Big"}, {"headline": "no key"}])
    assert problems == [
        "variants[1] (b).key: used by another variant",
        *[f"variants[{i}].key: required: lowercase letters, digits, _ and -, 1-20 "
          'characters, not "a" (the page itself)' for i in (2, 3, 4)]]


def test_a_variant_changing_what_it_cannot_is_one_problem_each(app):
    _, problems = check(app, variants=[{"key": "b", "payout": "9.00", "colour": "red",
                                        "headline": "fine"}])
    assert problems == [
        "variants[0] (b).colour: unknown property",
        "variants[0] (b).payout: a variant cannot change this; it can change headline, "
        "body, button, template, fields, consent, thank_you, image, image_alt, video_url"]


def test_a_variant_is_checked_as_a_whole_page_without_repeating_the_pages_problems(app):
    _, problems = check(app, currency="EURO", rules={"required": ["name"]}, fields=FIELDS,
                        variants=[{"key": "b", "headline": "x" * 301,
                                   "template": "missing.html", "fields": B_FIELDS[1:]}])
    assert problems == [
        "currency: 'EURO' is not an ISO 4217 currency code",
        "variants[0] (b).headline: longer than 300 characters",
        "variants[0] (b).rules.required: 'name' is not a field of the page",
        "variants[0] (b).template: no file templates/pages/missing.html"]


def test_import_refuses_a_bad_test_with_one_line_each_and_changes_nothing(
        app, runner, make_page, tmp_path):
    make_page(**TEST)
    path = tmp_path / "pages.json"
    path.write_text(json.dumps([{"slug": "offer", "title": "Offer", "headline": "New",
                                 "variants": [{"key": "b", "weight": 0},
                                              {"key": "b", "slug": "x"}]}]))
    result = runner.invoke(args=["pages", "import", str(path)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{path}: page 1 (offer): variants[0] (b).weight: must be a positive whole number "
        "(at most 10000)",
        f"{path}: page 1 (offer): variants[1] (b).key: used by another variant",
        f"{path}: page 1 (offer): variants[1] (b).slug: a variant cannot change this; it "
        "can change headline, body, button, template, fields, consent, thank_you, image, "
        "image_alt, video_url",
        "3 problem(s); nothing was changed."]
    with app.app_context():
        page = db.session.scalar(select(Page))
        assert page.headline == "Headline A"
        assert [v["key"] for v in page.variants] == ["b"]


# --- assignment ----------------------------------------------------------------------

def test_weights_are_respected_within_statistical_bounds():
    test = variants.Test(7, (variants.Arm("a", 70.0), variants.Arm("b", 20.0),
                             variants.Arm("c", 10.0)))
    rng = random.Random(20260302)
    draws = 30_000
    counts = {"a": 0, "b": 0, "c": 0}
    for _ in range(draws):
        counts[test.assign(f"{rng.getrandbits(128):032x}")] += 1
    for key, share in test.shares().items():
        sigma = (share * (1 - share) / draws) ** 0.5
        assert abs(counts[key] / draws - share) < 4 * sigma, (key, counts)


def test_equal_shares_when_no_weight_is_given_and_the_mean_for_one_left_out(app, make_page):
    make_page(variants=[{"key": "b"}, {"key": "c"}])
    make_page(slug="weighted", variants=[{"key": "b", "weight": 60}, {"key": "c", "weight": 20}])
    with app.app_context():
        shares = [variants.test_of(page).shares() for page in db.session.scalars(
            select(Page).order_by(Page.slug))]
    assert shares[0] == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    assert shares[1] == pytest.approx({"a": 1 / 3, "b": 1 / 2, "c": 1 / 6})  # a: mean 40


def test_a_visitor_keeps_their_variant_over_many_visits(app, make_page):
    make_page(**TEST)
    for key in ("a", "b"):
        client = client_of(app, visitor_of(app, key))
        for _ in range(25):
            html = client.get("/p/offer").get_data(as_text=True)
            assert f"Headline {key.upper()}" in html
    assert [visit.variant for visit in visits(app)] == ["a"] * 25 + ["b"] * 25


def test_every_new_visitor_is_given_a_variant_and_keeps_it(app, make_page):
    make_page(**TEST)
    clients = [app.test_client() for _ in range(40)]
    for _ in range(3):
        for client in clients:
            assert client.get("/p/offer").status_code == 200
    rows = visits(app)
    by_visitor: dict[str, set[str]] = {}
    for visit in rows:
        by_visitor.setdefault(visit.visitor_id, set()).add(visit.variant)
    assert len(by_visitor) == 40 and all(len(seen) == 1 for seen in by_visitor.values())
    assert {visit.variant for visit in rows} == {"a", "b"}


def test_adding_a_variant_moves_only_visitors_to_it(app):
    before = variants.Test(1, (variants.Arm("a", 1.0), variants.Arm("b", 1.0)))
    after = variants.Test(1, (*before.arms, variants.Arm("c", 1.0)))
    for number in range(2000):
        vid = f"{number:032x}"
        assert after.assign(vid) in (before.assign(vid), "c")


def test_a_paused_variant_keeps_its_visitors_and_gets_no_new_ones(app, make_page):
    make_page(**TEST)
    vid = visitor_of(app, "b")
    client_of(app, vid).get("/p/offer")
    with app.app_context():
        page = db.session.scalar(select(Page))
        _, problems = pause_variant(page, "b", True, sequences_dir=app.config["SEQUENCES_DIR"],
                                    templates_dir=page_templates_dir())
        assert problems == []
    assert "Headline B" in client_of(app, vid).get("/p/offer").get_data(as_text=True)
    # A returning visitor the draw puts on b but who never saw it: the page itself.
    unpaused = _unpaused(app)
    other = next(f"{n:032x}" for n in range(1, 10_000)
                 if f"{n:032x}" != vid and unpaused.assign(f"{n:032x}") == "b")
    assert "Headline A" in client_of(app, other).get("/p/offer").get_data(as_text=True)
    new = [app.test_client() for _ in range(20)]
    assert all("Headline A" in c.get("/p/offer").get_data(as_text=True) for c in new)


def _page(app) -> Page:
    with app.app_context():
        page = db.session.scalar(select(Page))
        db.session.expunge(page)
        return page


def _unpaused(app) -> variants.Test:
    """The page's test as if nothing were paused."""
    test = variants.test_of(_page(app))
    return variants.Test(test.page_id, tuple(variants.Arm(arm.key, arm.weight)
                                             for arm in test.arms))


def test_assignment_adds_under_five_hundredths_of_a_millisecond(app, make_page):
    make_page(**TEST)
    page = _page(app)
    test = variants.test_of(page)
    ids = [f"{number:032x}" for number in range(5000)]
    started = time.process_time()
    for vid in ids:
        variants.visitor_variant(page, vid, False, None, test)
    per_view_ms = (time.process_time() - started) / len(ids) * 1000
    assert per_view_ms < 0.05, per_view_ms


# --- serving, checking and recording the variant --------------------------------------

def test_the_opt_in_is_checked_against_the_form_of_the_variant_shown(app, make_page):
    make_page(**TEST)
    b = client_of(app, visitor_of(app, "b"))
    page = b.get("/p/offer").get_data(as_text=True)
    assert 'name="company"' in page and "Get B" in page
    response = b.post("/p/offer", data={**form_tokens(page), "email": "bo@example.com"})
    assert response.status_code == 422
    again = response.get_data(as_text=True)
    assert "Headline B" in again and 'name="company"' in again
    a = client_of(app, visitor_of(app, "a"))
    page = a.get("/p/offer").get_data(as_text=True)
    assert 'name="company"' not in page
    assert a.post("/p/offer", data={**form_tokens(page), "email": "al@example.com"}
                  ).status_code == 303


def test_visits_opt_ins_and_leads_store_the_variant(app, make_page, clock):
    make_page(**TEST)
    make_page(slug="other", fields=FIELDS, double_opt_in=False)
    b = client_of(app, visitor_of(app, "b"))
    clock.advance(seconds=5)
    response = optin(b, "offer", email="bo@example.com", company="Acme")
    assert response.status_code == 303
    assert "Thanks from B" in b.get("/p/offer/thanks").get_data(as_text=True)
    a = client_of(app, visitor_of(app, "a"))
    optin(a, "offer", email="al@example.com")
    assert "Thanks from A" in a.get("/p/offer/thanks").get_data(as_text=True)
    # A known person's later opt-in on the test page keeps its variant too.
    optin(client_of(app, visitor_of(app, "b")), "other", email="cy@example.com")
    optin(client_of(app, visitor_of(app, "b")), "offer", email="cy@example.com",
          company="Cy Ltd")
    with app.app_context():
        leads = {lead.email: lead for lead in db.session.scalars(select(Lead))}
        assert (leads["bo@example.com"].variant, leads["al@example.com"].variant) == ("b", "a")
        assert leads["bo@example.com"].fields == {"company": "Acme"}
        assert leads["cy@example.com"].variant is None
        on_offer = dict(db.session.execute(
            select(Lead.email, Optin.variant).join(Lead, Lead.id == Optin.lead_id)
            .join(Page, Page.id == Optin.page_id).where(Page.slug == "offer")).all())
        assert on_offer == {"bo@example.com": "b", "al@example.com": "a",
                            "cy@example.com": "b"}


def test_each_variant_is_rendered_once_and_served_to_its_visitors(app, make_page):
    make_page(**TEST)
    a, b = (client_of(app, visitor_of(app, key)) for key in "ab")
    for _ in range(3):
        assert "Headline A" in a.get("/p/offer").get_data(as_text=True)
        assert "Headline B" in b.get("/p/offer").get_data(as_text=True)
    with app.app_context():
        keys = [key for key in app.extensions["capture.shown_pages"]]
    # The page's version (id, updated_at, language), and that of its variant b.
    assert sorted(len(key) for key in keys) == [3, 4]


def test_a_variant_shows_its_own_image_or_video_and_allows_only_its_player(app, make_page):
    from tests.test_page_designs import YOUTUBE, frame_sources, uploaded

    cover = uploaded(app)
    make_page(**{**TEST, "template": "hero.html", "image": cover, "image_alt": "The cover",
                 "variants": [{"key": "b", "template": "video.html", "video_url": YOUTUBE,
                               "image": "", "image_alt": ""}]})
    a = client_of(app, visitor_of(app, "a")).get("/p/offer")
    b = client_of(app, visitor_of(app, "b")).get("/p/offer")
    assert f"/images/{cover}" in a.get_data(as_text=True)
    assert frame_sources(a) == "'self'"
    assert f"/images/{cover}" not in b.get_data(as_text=True)
    assert frame_sources(b) == "'self' https://www.youtube-nocookie.com"


def test_a_variants_own_image_has_no_description_but_its_own(app, make_page):
    from tests.test_page_designs import uploaded

    cover, other = uploaded(app), uploaded(app, colour=(200, 30, 30))
    make_page(**{**TEST, "template": "hero.html", "image": cover, "image_alt": "The cover",
                 "variants": [{"key": "b", "image": other}]})
    b = client_of(app, visitor_of(app, "b")).get("/p/offer").get_data(as_text=True)
    assert f"/images/{other}" in b and "The cover" not in b


def test_a_variants_image_must_be_an_uploaded_one(app):
    _, problems = check(app, variants=[{"key": "b", "image": "nope.png",
                                        "video_url": "https://example.com/film"}])
    assert [problem.split(":")[0] for problem in problems] == [
        "variants[0] (b).image", "variants[0] (b).video_url"]
    assert "upload it under Images first" in problems[0]


def test_a_page_without_a_test_records_no_variant(app, make_page):
    make_page(fields=FIELDS, double_opt_in=False)
    response = optin(app.test_client(), "offer", email="ann@example.com")
    assert response.status_code == 303
    assert [visit.variant for visit in visits(app)] == [None]
    with app.app_context():
        assert db.session.scalar(select(Lead.variant)) is None


def test_the_embedded_form_stays_outside_the_test(app, make_page):
    make_page(**{**TEST, "double_opt_in": True}, allowed_origins=["https://blog.example.com"])
    headers = {"Origin": "https://blog.example.com"}
    response = app.test_client().post("/p/offer/embed", headers=headers,
                                      data={"email": "em@example.com"})
    assert response.status_code == 303
    with app.app_context():
        assert db.session.scalar(select(Lead.variant)) is None
    assert [visit.variant for visit in visits(app)] == [None]


def test_the_confirmation_page_shows_the_thank_you_of_the_leads_variant(app, make_page,
                                                                          outbox):
    make_page(**{**TEST, "double_opt_in": True})
    optin(client_of(app, visitor_of(app, "b")), "offer", email="bo@example.com",
          company="Acme")
    send_confirmations(app)
    from tests.conftest import confirm
    link = next(line for line in outbox.to("bo@example.com")[0].get_body(
        ("plain",)).get_content().split() if "/confirm/" in line)
    assert "Thanks from B" in confirm(app.test_client(), link).get_data(as_text=True)


# --- promote -------------------------------------------------------------------------

def test_promote_makes_the_variant_the_page_and_keeps_the_history(app, make_page):
    make_page(**TEST)
    optin(client_of(app, visitor_of(app, "b")), "offer", email="bo@example.com",
          company="Acme")
    with app.app_context():
        page = db.session.scalar(select(Page))
        _, problems = promote_variant(page, "b", sequences_dir=app.config["SEQUENCES_DIR"],
                                      templates_dir=page_templates_dir())
        assert problems == []
        page = db.session.scalar(select(Page))
        assert (page.headline, page.button, page.variants, page.variant_a_weight) == (
            "Headline B", "Get B", [], None)
        assert [field["name"] for field in page.fields] == ["name", "email", "company"]
    html = client_of(app, "0" * 32).get("/p/offer").get_data(as_text=True)
    assert "Headline B" in html
    assert [visit.variant for visit in visits(app)] == ["b", None]
    with app.app_context():
        assert db.session.scalar(select(Optin.variant)) == "b"
        rows = page_tests.test_report(db.session.scalar(select(Page))).rows
    assert [(row.key, row.state, row.visitors, row.leads) for row in rows] == [
        ("b", "ended", 1, 1), ("(none)", "outside", 1, 0)]


def test_promote_or_pause_of_an_unknown_variant_is_refused(app, make_page):
    make_page(**TEST)
    with app.app_context():
        page = db.session.scalar(select(Page))
        dirs = {"sequences_dir": app.config["SEQUENCES_DIR"],
                "templates_dir": page_templates_dir()}
        with pytest.raises(ValueError):
            promote_variant(page, "z", **dirs)
        with pytest.raises(ValueError):
            pause_variant(page, "a", True, **dirs)
