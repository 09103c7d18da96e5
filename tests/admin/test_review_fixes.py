"""Dashboard behaviours fixed after review: each one a thing an owner ran into."""

import re

from sqlalchemy import select

from capture.leads import lifecycle as leads
from capture.mail import actions
from capture.numbers import attention as warnings
from capture.db import db
from capture.models import Delivery, Enrollment, Lead, Page
from tests.conftest import create_page
from tests.factories import add_lead, three_steps, tick


def test_enter_in_the_bulk_reason_box_rejects_not_approves(owner, app):
    create_page(app, slug="offer")
    with app.app_context():
        db.session.add(Lead(email="s@example.com", public_ref="s", review="pending"))
        db.session.commit()
    html = owner.get("/admin/leads").get_data(as_text=True)
    form = html[html.index('class="lead-bulk"'):]
    first_button = re.search(r'<button type="submit" name="action" value="(\w+)"', form)
    assert first_button.group(1) == "reject"


def test_a_rejected_lead_approved_again_gets_its_emails(smtp_app, smtp, clock):
    three_steps(smtp_app)
    lead_id = add_lead(smtp_app)
    with smtp_app.app_context():
        lead = db.session.get(Lead, lead_id)
        leads.reject(lead, "looked like spam")
        leads.approve(lead)
    tick(smtp_app)
    assert [str(m["Subject"]) for m in smtp.messages] == ["Welcome, Ann"]
    with smtp_app.app_context():
        assert db.session.scalar(select(Enrollment.state)) == "active"


def test_field_names_the_form_uses_itself_are_refused(owner, app):
    from capture.pages.definition import validate_page

    with app.app_context():
        for name in ("validate", "meta", "process", "data", "validate_email", "errors"):
            _, problems = validate_page(
                {"slug": "x", "title": "X", "fields": [{"name": name, "type": "text"}]},
                sequences_dir=app.config["SEQUENCES_DIR"],
                templates_dir=str(app.root_path + "/../templates/pages"),
            )
            assert any("used by the form itself" in p for p in problems), (name, problems)


def test_the_page_format_knows_every_field_the_opt_in_form_adds(app):
    from flask_wtf import FlaskForm

    from capture.pages.definition import FORM_OWN_NAMES
    from capture.public.forms import OptInForm

    own = {name for name in vars(OptInForm)
           if not name.startswith(("_", "validate")) and not hasattr(FlaskForm, name)}
    assert own == FORM_OWN_NAMES


def test_the_honeypot_and_time_token_names_are_refused_as_field_names(app):
    from capture.pages.definition import validate_page

    with app.app_context():
        for name in ("website", "started"):
            _, problems = validate_page(
                {"slug": "x", "title": "X", "fields": [{"name": name, "type": "text"}]},
                sequences_dir=app.config["SEQUENCES_DIR"],
                templates_dir=str(app.root_path + "/../templates/pages"),
            )
            assert any("used by the form itself" in p for p in problems), (name, problems)


def test_huge_ids_and_odd_cursors_are_not_errors(owner, app):
    huge = "9" * 30
    for path in (f"/admin/leads/{huge}", f"/admin/pages/{huge}/edit",
                 f"/admin/leads?after={huge}", "/admin/leads?after=²",
                 "/admin/leads?to=9999-12-31", f"/admin/deliveries?page={huge}"):
        assert owner.get(path).status_code < 500, path


def test_resend_gets_a_fresh_retry_window(smtp_app, smtp, clock, owner):
    three_steps(smtp_app)
    lead_id = add_lead(smtp_app)
    smtp.data_replies = ["554 no"]
    tick(smtp_app)
    clock.advance(days=3)
    with smtp_app.app_context():
        actions.resend(db.session.scalar(select(Delivery).where(Delivery.lead_id == lead_id)))
    smtp.data_replies = ["451 later"]
    assert tick(smtp_app).retried == 1  # not "gave up" at once


def test_unsubscribing_a_bounced_lead_keeps_the_bounce(app):
    with app.app_context():
        lead = Lead(email="b@example.com", public_ref="b", subscription="bounced")
        db.session.add(lead)
        db.session.commit()
        assert leads.unsubscribe(lead, source="owner") is False
        assert lead.subscription == "bounced"


def test_a_long_page_text_can_be_saved_from_the_dashboard(owner, app):
    from tests.conftest import csrf_of

    create_page(app, slug="long")
    with app.app_context():
        page_id = db.session.scalar(select(Page.id).where(Page.slug == "long"))
    token = csrf_of(owner, f"/admin/pages/{page_id}/edit")
    response = owner.post(f"/admin/pages/{page_id}/edit",
                          data={"csrf_token": token, "body": "文" * 18000},
                          content_type="multipart/form-data")
    assert response.status_code != 413


def test_a_published_page_with_a_missing_design_is_a_warning(app):
    create_page(app, slug="gone")
    with app.app_context():
        page = db.session.scalar(select(Page).where(Page.slug == "gone"))
        page.template = "renamed.html"
        db.session.commit()
        found = [w for w in warnings.for_owner() if w.kind == "broken_pages"]
        assert found and "/p/gone uses the missing design renamed.html" in found[0].message


def test_a_from_date_after_the_to_date_is_explained(owner):
    html = owner.get("/admin/leads?from=2026-03-10&to=2026-03-01").get_data(as_text=True)
    assert "is after" in html
