"""The dashboard's Ad spend page: a row by form, a CSV upload, removing a row."""

import io

from sqlalchemy import select

from capture.db import db
from capture.models import Cost
from tests.conftest import create_page, form_tokens, owner_client


def cost_rows(app):
    with app.app_context():
        return [(c.day.isoformat(), c.source, c.campaign, str(c.amount), c.currency)
                for c in db.session.scalars(select(Cost).order_by(Cost.day, Cost.id))]


def test_an_empty_page_says_what_to_do(app):
    page = owner_client(app).get("/admin/costs").get_data(as_text=True)
    assert "No ad spend yet." in page


def test_a_row_added_by_form_shows_and_a_second_replaces_it(app):
    create_page(app, slug="guide")
    owner = owner_client(app)
    tokens = form_tokens(owner.get("/admin/costs").get_data(as_text=True))
    values = {**tokens, "date": "2026-03-01", "source": "ads", "campaign": "",
              "page": "guide", "amount": "12.50", "currency": "USD"}
    first = owner.post("/admin/costs", data=values, follow_redirects=True)
    assert "Spend of 12.50 USD on 2026-03-01 added." in first.get_data(as_text=True)
    second = owner.post("/admin/costs", data={**values, "amount": "13"}, follow_redirects=True)
    assert "replaced the earlier row" in second.get_data(as_text=True)
    assert cost_rows(app) == [("2026-03-01", "ads", "", "13.00", "USD")]


def test_a_bad_amount_is_shown_on_the_form_and_nothing_saved(app):
    create_page(app, slug="guide")
    owner = owner_client(app)
    tokens = form_tokens(owner.get("/admin/costs").get_data(as_text=True))
    response = owner.post("/admin/costs", data={
        **tokens, "date": "2026-03-01", "page": "guide", "amount": "ten", "currency": "USD"})
    assert response.status_code == 422
    assert "&#39;ten&#39; is no amount like 120.50" in response.get_data(as_text=True)
    assert cost_rows(app) == []


def test_an_upload_with_a_bad_line_imports_nothing_unless_asked(app):
    create_page(app, slug="guide")
    owner = owner_client(app)
    tokens = form_tokens(owner.get("/admin/costs").get_data(as_text=True))
    text = b"date,source,amount,currency\n2026-03-01,ads,5,USD\n2026-03-32,ads,5,USD\n"
    refused = owner.post("/admin/costs/upload", data={
        **tokens, "file": (io.BytesIO(text), "spend.csv")}, content_type="multipart/form-data")
    assert refused.status_code == 422
    assert "line 3: date: &#39;2026-03-32&#39; is no date" in refused.get_data(as_text=True)
    assert cost_rows(app) == []
    taken = owner.post("/admin/costs/upload", data={
        **tokens, "skip_bad": "y", "file": (io.BytesIO(text), "spend.csv")},
        content_type="multipart/form-data", follow_redirects=True)
    assert "1 added, 0 replaced; 1 bad line(s) skipped" in taken.get_data(as_text=True)
    assert cost_rows(app) == [("2026-03-01", "ads", "", "5.00", "USD")]


def test_removing_a_row(app):
    create_page(app, slug="guide")
    with app.app_context():
        from datetime import date
        from decimal import Decimal

        db.session.add(Cost(day=date(2026, 3, 1), source="ads", campaign="", amount=Decimal(4),
                            currency="USD"))
        db.session.commit()
        cost_id = db.session.scalar(select(Cost.id))
    owner = owner_client(app)
    tokens = form_tokens(owner.get("/admin/costs").get_data(as_text=True))
    response = owner.post(f"/admin/costs/{cost_id}/delete", data=tokens, follow_redirects=True)
    assert "Removed the spend of 4.00 USD on 2026-03-01." in response.get_data(as_text=True)
    assert cost_rows(app) == []
    assert owner.post("/admin/costs/999/delete", data=tokens).status_code == 404


def test_the_pages_list_shows_each_pages_spend_and_profit(app, clock):
    from datetime import date
    from decimal import Decimal

    from tests.conftest import optin

    create_page(app, slug="guide", double_opt_in=False, payout="3.00")
    optin(app.test_client(), "guide", email="ann@example.com")
    with app.app_context():
        db.session.add(Cost(day=date(2026, 3, 2), source="ads", campaign="", amount=Decimal(5),
                            currency="USD", page_id=1))
        db.session.commit()
    html = owner_client(app).get("/admin/pages").get_data(as_text=True)
    assert 'data-metric="spend">5.00' in html.replace("$", "").replace("USD ", "")
    assert 'class="num loses-money" data-metric="profit"' in html
