"""Opens, clicks, unsubscribes and upgrade postbacks, as the URLs in emails use them."""

import re
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select

from capture.leads import upgrades as engagement
from capture.db import db
from capture.models import Event, Lead, Upgrade
from tests.conftest import HUMAN
from tests.factories import add_lead, sequence_folder, tick, write_step

BASE = "http://127.0.0.1:5000"


def events(app, kind):
    with app.app_context():
        return db.session.execute(
            select(Event.kind, Event.machine, Event.data).where(Event.kind == kind)
        ).all()


def test_email_has_pixel_and_only_rewritten_http_links(sent):
    hrefs = re.findall(r'href="([^"]+)"', sent["html"])
    outside = [h for h in hrefs if not h.startswith(f"{BASE}/c/")]
    assert all(h.startswith(("mailto:", f"{BASE}/u/")) for h in outside), outside
    assert "mailto:help@example.com" in hrefs
    assert re.search(rf'<img src="{BASE}/o/[^"]+" width="1" height="1"', sent["html"])
    assert "example.com/guide" not in sent["html"] and "example.com/plain" not in sent["text"]
    assert re.search(rf"{BASE}/c/\S+", sent["text"])
    assert re.search(rf"Unsubscribe: {BASE}/u/\S+", sent["text"])


def test_click_logs_and_redirects_to_the_stored_url(smtp_app, sent):
    link = re.search(rf'href="{BASE}(/c/[^"]+)"', sent["html"]).group(1)
    response = sent["client"].get(link, headers={"User-Agent": HUMAN})
    assert response.status_code == 302
    assert response.headers["Location"] == "https://example.com/guide?a=1&b=2"
    [(kind, machine, data)] = events(smtp_app, "click")
    assert machine is False
    assert data["url"] == "https://example.com/guide?a=1&b=2"


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1], lambda t: t + "x", lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
    lambda t: "0" * len(t), lambda t: "../../etc",
])
def test_forged_or_altered_click_token_is_404_and_logs_nothing(smtp_app, sent, mangle):
    token = re.search(rf'href="{BASE}/c/([^"]+)"', sent["html"]).group(1)
    response = sent["client"].get(f"/c/{mangle(token)}", headers={"User-Agent": HUMAN})
    assert response.status_code == 404
    assert events(smtp_app, "click") == []


def test_click_ignores_any_url_in_the_request(smtp_app, sent):
    token = re.search(rf'href="{BASE}/c/([^"]+)"', sent["html"]).group(1)
    response = sent["client"].get(f"/c/{token}?url=https://evil.example&next=//evil.example")
    assert response.headers["Location"] == "https://example.com/guide?a=1&b=2"


def test_pixel_logs_a_human_open(smtp_app, sent):
    pixel = re.search(rf'<img src="{BASE}(/o/[^"]+)"', sent["html"]).group(1)
    response = sent["client"].get(pixel, headers={"User-Agent": HUMAN})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/gif"
    assert "no-store" in response.headers["Cache-Control"]
    assert response.data.startswith(b"GIF89a")
    assert [(k, m) for k, m, _ in events(smtp_app, "open")] == [("open", False)]


@pytest.mark.parametrize("token", ["nope", "a" * 60, "InJlZi1hbm4i.forged"])
def test_pixel_with_unknown_token_still_answers_a_gif_and_logs_nothing(smtp_app, sent, token):
    response = sent["client"].get(f"/o/{token}")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/gif"
    assert "no-store" in response.headers["Cache-Control"]
    assert events(smtp_app, "open") == []


def test_scanner_user_agent_makes_a_machine_open(smtp_app, sent):
    pixel = re.search(rf'<img src="{BASE}(/o/[^"]+)"', sent["html"]).group(1)
    sent["client"].get(pixel, headers={"User-Agent": "Mozilla/5.0 (compatible; Barracuda)"})
    assert [(k, m) for k, m, _ in events(smtp_app, "open")] == [("open", True)]


def test_click_seconds_after_sending_is_machine_made(smtp_app, smtp, clock):
    write_step(sequence_folder(smtp_app), "01-hi.md", "Hi", "[x](https://example.com/x)",
               delay=0)
    add_lead(smtp_app)
    tick(smtp_app)
    html = smtp.messages[0].get_body(("html",)).get_content()
    clock.advance(seconds=2)
    link = re.search(rf'href="{BASE}(/c/[^"]+)"', html).group(1)
    assert smtp_app.test_client().get(link, headers={"User-Agent": HUMAN}).status_code == 302
    assert [(k, m) for k, m, _ in events(smtp_app, "click")] == [("click", True)]


def unsubscribe_path(sent):
    return re.search(rf"<{BASE}(/u/\S+)>", sent["message"]["List-Unsubscribe"]).group(1)


def subscription(app, lead_id):
    with app.app_context():
        return db.session.get(Lead, lead_id).subscription


def test_get_on_unsubscribe_link_only_shows_a_button(smtp_app, sent):
    response = sent["client"].get(unsubscribe_path(sent))
    assert response.status_code == 200
    assert "<button" in response.get_data(as_text=True)
    assert subscription(smtp_app, sent["lead_id"]) == "subscribed"


def test_the_unsubscribe_page_names_the_address_before_and_after(smtp_app, sent):
    page = sent["client"].get(unsubscribe_path(sent)).get_data(as_text=True)
    assert "Stop all emails from this list to <strong>ann@example.com</strong>." in page
    done = sent["client"].post(unsubscribe_path(sent)).get_data(as_text=True)
    assert "<strong>ann@example.com</strong> will get no more emails" in done


def test_the_address_on_the_unsubscribe_page_is_escaped(smtp_app, smtp, clock):
    write_step(sequence_folder(smtp_app), "01-hi.md", "Hi", "[Leave]({{ unsubscribe_url }})",
               delay=0)
    add_lead(smtp_app, email="tom&jerry<b>@example.com")
    tick(smtp_app)
    path = re.search(rf"<{BASE}(/u/\S+)>", smtp.messages[0]["List-Unsubscribe"]).group(1)
    page = smtp_app.test_client().get(path).get_data(as_text=True)
    assert "tom&amp;jerry&lt;b&gt;@example.com" in page
    assert "<b>" not in page


def test_one_click_post_unsubscribes_without_cookie_or_csrf(smtp_app, sent):
    client = smtp_app.test_client(use_cookies=False)
    response = client.post(unsubscribe_path(sent), data="List-Unsubscribe=One-Click",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert "unsubscribed" in response.get_data(as_text=True)
    assert subscription(smtp_app, sent["lead_id"]) == "unsubscribed"


def test_multipart_post_unsubscribes_and_repeating_it_changes_nothing(smtp_app, sent):
    client = smtp_app.test_client(use_cookies=False)
    for _ in range(2):
        response = client.post(unsubscribe_path(sent), data={"List-Unsubscribe": "One-Click"},
                               content_type="multipart/form-data")
        assert response.status_code == 200
    assert subscription(smtp_app, sent["lead_id"]) == "unsubscribed"
    assert len(events(smtp_app, "unsubscribe")) == 1


def test_forged_unsubscribe_token_is_404_and_changes_nothing(smtp_app, sent):
    path = unsubscribe_path(sent)
    for bad in (path[:-2], path + "A", "/u/InJlZi1hbm4i.forged"):
        assert sent["client"].post(bad).status_code == 404
    assert subscription(smtp_app, sent["lead_id"]) == "subscribed"


def postback(client, secret, method="get", sign=True, **params):
    values = {"lead": "ref-ann", "amount": "49.00", "currency": "USD", "txn": "T-1", **params}
    if sign:
        values["sig"] = engagement.postback_signature(values, secret)
    if method == "get":
        return client.get("/postback/upgrade?" + urlencode(values))
    return client.post("/postback/upgrade", data=values)


def upgrades(app):
    with app.app_context():
        return db.session.execute(select(Upgrade.txn, Upgrade.amount, Upgrade.currency)).all()


@pytest.fixture
def buyer(smtp_app, clock):
    """A lead with public ref `ref-ann` and a client for the postback."""
    add_lead(smtp_app)
    return smtp_app.test_client(use_cookies=False), smtp_app.config["POSTBACK_SECRET"]


@pytest.mark.parametrize("method", ["get", "post"])
def test_signed_postback_records_an_upgrade_once(smtp_app, buyer, method):
    client, secret = buyer
    response = postback(client, secret, method)
    assert response.status_code == 200 and response.json["replay"] is False
    replay = postback(client, secret, method)
    assert replay.status_code == 200 and replay.json["replay"] is True
    assert upgrades(smtp_app) == [("T-1", Decimal("49.00"), "USD")]
    assert len(events(smtp_app, "upgrade")) == 1


def test_postback_with_bad_signature_is_403_and_records_nothing(smtp_app, buyer):
    client, secret = buyer
    assert postback(client, "wrong-secret").status_code == 403
    assert postback(client, secret, sign=False, sig="0" * 64).status_code == 403
    values = {"lead": "ref-ann", "amount": "49.00", "currency": "USD", "txn": "T-1"}
    values["sig"] = engagement.postback_signature(values, secret)
    values["amount"] = "4900.00"  # altered after signing
    assert client.get("/postback/upgrade?" + urlencode(values)).status_code == 403
    assert upgrades(smtp_app) == []


@pytest.mark.parametrize(("amount", "currency"), [
    ("-5", "USD"), ("0", "USD"), ("abc", "USD"), ("1e3", "USD"), ("NaN", "USD"),
    ("10.001", "USD"), ("10", "DOLLARS"), ("10", "XYZ"),
])
def test_postback_with_invalid_amount_or_currency_is_400(smtp_app, buyer, amount, currency):
    client, secret = buyer
    response = postback(client, secret, amount=amount, currency=currency)
    assert response.status_code == 400
    assert response.json["ok"] is False
    assert upgrades(smtp_app) == []


def test_postback_for_unknown_lead_is_404(smtp_app, buyer):
    client, secret = buyer
    assert postback(client, secret, lead="nobody").status_code == 404
    assert upgrades(smtp_app) == []


def test_postback_txn_longer_than_200_characters_is_refused_not_cut(smtp_app, buyer):
    """Issue 15.13: two ids sharing their first 200 characters became one upgrade."""
    client, secret = buyer
    first, second = "T" * 200 + "-first", "T" * 200 + "-second"
    response = postback(client, secret, txn=first)
    assert response.status_code == 400
    assert response.json["error"] == "txn: at most 200 characters (this one has 206)"
    assert postback(client, secret, txn=second).status_code == 400
    assert upgrades(smtp_app) == []
    assert postback(client, secret, txn="T" * 200).json["replay"] is False


def test_postback_missing_a_parameter_is_400(smtp_app, buyer):
    client, secret = buyer
    values = {"lead": "ref-ann", "amount": "5", "currency": "USD"}
    values["sig"] = engagement.postback_signature(values, secret)
    response = client.get("/postback/upgrade?" + urlencode(values))
    assert response.status_code == 400
    assert "txn" in response.json["error"]


def test_upgrade_by_hand_from_the_cli(smtp_app, buyer):
    runner = smtp_app.test_cli_runner()
    result = runner.invoke(args=["leads", "upgrade", "ann@example.com", "19.90",
                                 "--currency", "eur", "--txn", "order-7"])
    assert result.exit_code == 0, result.output
    again = runner.invoke(args=["leads", "upgrade", "ann@example.com", "19.90",
                                "--txn", "order-7"])
    assert "already recorded" in again.output
    bad = runner.invoke(args=["leads", "upgrade", "ann@example.com", "--", "-3"])
    assert bad.exit_code != 0 and "amount" in bad.output
    assert upgrades(smtp_app) == [("order-7", Decimal("19.90"), "EUR")]


def test_timeline_records_send_open_click_and_unsubscribe(smtp_app, sent):
    client = sent["client"]
    client.get(re.search(rf'<img src="{BASE}(/o/[^"]+)"', sent["html"]).group(1),
               headers={"User-Agent": HUMAN})
    client.get(re.search(rf'href="{BASE}(/c/[^"]+)"', sent["html"]).group(1),
               headers={"User-Agent": HUMAN})
    client.post(unsubscribe_path(sent))
    with smtp_app.app_context():
        kinds = db.session.scalars(
            select(Event.kind).where(Event.lead_id == sent["lead_id"]).order_by(Event.id)
        ).all()
        assert kinds == ["enroll", "send", "open", "click", "unsubscribe"]
        with_delivery = db.session.scalar(
            select(func.count()).select_from(Event).where(Event.delivery_id.is_not(None))
        )
        assert with_delivery == 4  # send, open, click and the unsubscribe from that email


def test_per_step_numbers_count_people_once_and_unsubscribes_by_email(smtp_app, smtp, clock):
    from capture.numbers import sequence_steps

    three_steps_folder = sequence_folder(smtp_app)
    write_step(three_steps_folder, "01-hi.md", "Hi", "[Go](https://example.com/go)", delay=0)
    write_step(three_steps_folder, "02-more.md", "More", "More.", delay="1d")
    add_lead(smtp_app, email="a@example.com")
    add_lead(smtp_app, email="b@example.com")
    tick(smtp_app)
    clock.advance(minutes=5)
    client = smtp_app.test_client(use_cookies=False)
    first, second = smtp.to("a@example.com")[0], smtp.to("b@example.com")[0]
    for message, agent in ((first, HUMAN), (first, HUMAN), (second, "Mimecast scanner")):
        html = message.get_body(("html",)).get_content()
        client.get(re.search(rf'<img src="{BASE}(/o/[^"]+)"', html).group(1),
                   headers={"User-Agent": agent})
        client.get(re.search(rf'href="{BASE}(/c/[^"]+)"', html).group(1),
                   headers={"User-Agent": agent})
    path = re.search(rf"<{BASE}(/u/\S+)>", second["List-Unsubscribe"]).group(1)
    client.post(path, data={"List-Unsubscribe": "One-Click"})
    clock.advance(days=1)
    tick(smtp_app)
    with smtp_app.app_context():
        rows = {(r.sequence, r.step): r for r in sequence_steps.steps()}
    hi, more = rows[("course", "hi")], rows[("course", "more")]
    assert (hi.sent, hi.opened, hi.clicked, hi.unsubscribed) == (2, 1, 1, 1)
    assert hi.open_rate == 0.5
    assert (more.sent, more.opened, more.unsubscribed) == (1, 0, 0)
    output = smtp_app.test_cli_runner().invoke(args=["report", "--by", "step"]).output
    assert re.search(r"course\s+hi\s+2\s+1\s+50\.0%\s+1\s+50\.0%\s+1", output), output
