"""The numbers of each broadcast and the last-click attribution of upgrades
(capture.numbers.broadcasts, capture.numbers.attribution), on rows made directly."""

from datetime import datetime, timedelta
from decimal import Decimal

from capture.db import db
from capture.numbers import attribution
from capture.numbers.broadcasts import broadcast_numbers, numbers_of
from tests.factories import add_broadcast, add_delivery, add_event, add_lead, add_upgrade

T0 = datetime(2026, 3, 2, 12, 0)


def _lead(app, name):
    return add_lead(app, email=f"{name}@example.com", name=name.title(), sequence=None)


def _credit(app, **options):
    with app.app_context():
        return {row.upgrade_id: row.delivery_id
                for row in db.session.execute(attribution.credited(**options))}


def test_upgrade_goes_to_the_last_email_clicked(app):
    ann = _lead(app, "ann")
    sale = add_broadcast(app, "spring-sale")
    step = add_delivery(app, ann, sequence="course", step="03-offer")
    mail = add_delivery(app, ann, broadcast_id=sale)
    add_event(app, ann, "click", T0, delivery_id=step)
    add_event(app, ann, "click", T0 + timedelta(hours=2), delivery_id=mail)
    upgrade = add_upgrade(app, ann, "49.00", T0 + timedelta(days=1))
    assert _credit(app) == {upgrade: mail}
    with app.app_context():
        numbers = numbers_of(sale)
    assert (numbers.upgrades, numbers.revenue) == (1, Decimal("49.00"))


def test_a_later_step_click_takes_the_credit_from_the_broadcast(app):
    ann = _lead(app, "ann")
    sale = add_broadcast(app, "spring-sale")
    mail = add_delivery(app, ann, broadcast_id=sale)
    step = add_delivery(app, ann, sequence="course", step="03-offer")
    add_event(app, ann, "click", T0, delivery_id=mail)
    add_event(app, ann, "click", T0 + timedelta(hours=1), delivery_id=step)
    upgrade = add_upgrade(app, ann, "20.00", T0 + timedelta(hours=3))
    assert _credit(app) == {upgrade: step}
    with app.app_context():
        numbers = numbers_of(sale)
    assert (numbers.upgrades, numbers.revenue) == (0, Decimal("0.00"))


def test_clicks_older_than_the_window_or_after_the_upgrade_get_nothing(app):
    ann, bob = _lead(app, "ann"), _lead(app, "bob")
    sale = add_broadcast(app, "spring-sale")
    old = add_delivery(app, ann, broadcast_id=sale)
    add_event(app, ann, "click", T0, delivery_id=old)
    late = add_upgrade(app, ann, "10.00", T0 + timedelta(days=7, minutes=1))
    after = add_delivery(app, bob, broadcast_id=sale)
    early = add_upgrade(app, bob, "10.00", T0)
    add_event(app, bob, "click", T0 + timedelta(seconds=1), delivery_id=after)
    assert _credit(app) == {late: None, early: None}
    # Inside a wider window the old click counts.
    assert _credit(app, days=8)[late] == old


def test_the_window_is_the_setting(make_app):
    app = make_app(ATTRIBUTION_DAYS=1)
    ann = _lead(app, "ann")
    sale = add_broadcast(app, "spring-sale")
    mail = add_delivery(app, ann, broadcast_id=sale)
    add_event(app, ann, "click", T0, delivery_id=mail)
    near = add_upgrade(app, ann, "5.00", T0 + timedelta(hours=23), txn="near")
    far = add_upgrade(app, ann, "5.00", T0 + timedelta(hours=25), txn="far")
    with app.app_context():
        assert attribution.window_days() == 1
    assert _credit(app) == {near: mail, far: None}


def test_machine_clicks_are_ignored(app):
    ann = _lead(app, "ann")
    sale = add_broadcast(app, "spring-sale")
    step = add_delivery(app, ann, sequence="course", step="01-welcome")
    mail = add_delivery(app, ann, broadcast_id=sale)
    add_event(app, ann, "click", T0, delivery_id=step)
    add_event(app, ann, "click", T0 + timedelta(hours=1), delivery_id=mail, machine=True)
    upgrade = add_upgrade(app, ann, "30.00", T0 + timedelta(hours=2))
    assert _credit(app) == {upgrade: step}


def test_numbers_of_a_broadcast(app):
    ann, bob, cat, dan = (_lead(app, name) for name in ("ann", "bob", "cat", "dan"))
    sale = add_broadcast(app, "spring-sale")
    other = add_broadcast(app, "autumn", state="scheduled")
    to_ann = add_delivery(app, ann, broadcast_id=sale)
    to_bob = add_delivery(app, bob, broadcast_id=sale)
    to_cat = add_delivery(app, cat, broadcast_id=sale, status="failed")
    add_delivery(app, dan, broadcast_id=sale, status="cancelled")
    # Ann opens twice and clicks; Bob's open is a machine's, his click a person's;
    # Cat bounced; Bob unsubscribes through the email and complains.
    add_event(app, ann, "open", T0, delivery_id=to_ann)
    add_event(app, ann, "open", T0 + timedelta(minutes=5), delivery_id=to_ann)
    add_event(app, ann, "click", T0 + timedelta(minutes=6), delivery_id=to_ann)
    add_event(app, bob, "open", T0, delivery_id=to_bob, machine=True)
    add_event(app, bob, "click", T0 + timedelta(minutes=1), delivery_id=to_bob)
    add_event(app, bob, "unsubscribe", T0 + timedelta(minutes=2), delivery_id=to_bob)
    add_event(app, bob, "complaint", T0 + timedelta(minutes=3), delivery_id=to_bob)
    add_event(app, cat, "bounce", T0, delivery_id=to_cat)
    # Unsubscribing elsewhere is not put down to the broadcast.
    add_event(app, ann, "unsubscribe", T0 + timedelta(hours=1))
    add_upgrade(app, ann, "49.50", T0 + timedelta(days=2))
    add_upgrade(app, bob, "10.25", T0 + timedelta(days=3))
    with app.app_context():
        result = broadcast_numbers()
    assert set(result) == {sale, other}
    numbers = result[sale]
    assert numbers.name == "spring-sale"
    assert (numbers.recipients, numbers.delivered) == (3, 2)
    assert (numbers.opens, numbers.clicks) == (1, 2)
    assert (numbers.open_rate, numbers.click_rate) == (0.5, 1.0)
    assert (numbers.unsubscribes, numbers.bounces, numbers.complaints) == (1, 1, 1)
    assert (numbers.upgrades, numbers.revenue) == (2, Decimal("59.75"))
    assert numbers.as_json() == {
        "recipients": 3, "delivered": 2, "opens": 1, "clicks": 2, "open_rate": 0.5,
        "click_rate": 1.0, "unsubscribes": 1, "bounces": 1, "complaints": 1,
        "bounce_rate": 0.5, "complaint_rate": 0.5, "upgrades": 2, "revenue": "59.75"}
    untouched = result[other]
    assert (untouched.recipients, untouched.open_rate, untouched.revenue) == (
        0, None, Decimal("0.00"))


def test_only_the_broadcasts_asked_for(app):
    first, second = add_broadcast(app, "first"), add_broadcast(app, "second")
    with app.app_context():
        assert set(broadcast_numbers([second])) == {second}
        assert broadcast_numbers([]) == {}
        assert numbers_of(first + second + 100) is None
        assert numbers_of(first).name == "first"


def test_steps_get_the_upgrades_they_earned_and_broadcasts_are_no_steps(app):
    from capture.numbers import sequence_steps

    ann, bob = _lead(app, "ann"), _lead(app, "bob")
    sale = add_broadcast(app, "spring-sale")
    offer = add_delivery(app, ann, sequence="course", step="03-offer")
    add_delivery(app, bob, sequence="course", step="03-offer")
    to_bob = add_delivery(app, bob, broadcast_id=sale)
    add_event(app, ann, "click", T0, delivery_id=offer)
    add_event(app, bob, "click", T0, delivery_id=to_bob)
    add_event(app, bob, "bounce", T0, delivery_id=offer)
    add_upgrade(app, ann, "49.00", T0 + timedelta(hours=1))
    add_upgrade(app, bob, "15.00", T0 + timedelta(hours=1))
    add_upgrade(app, ann, "99.00", T0 - timedelta(days=1))  # before any click: no email
    with app.app_context():
        rows = {(row.sequence, row.step): row for row in sequence_steps.steps()}
        in_march = sequence_steps.steps(start=datetime(2026, 3, 2), end=datetime(2026, 3, 3))
        before = sequence_steps.steps(start=datetime(2026, 3, 1), end=datetime(2026, 3, 2))
    assert set(rows) == {("course", "03-offer")}
    row = rows[("course", "03-offer")]
    assert (row.sent, row.clicked, row.bounces, row.upgrades, row.revenue) == (
        2, 1, 1, 1, Decimal("49.00"))
    assert [(r.step, r.upgrades) for r in in_march] == [("03-offer", 1)]
    assert [(r.step, r.upgrades, r.revenue) for r in before] == []


def test_report_by_broadcast_prints_each_started_broadcast_newest_first(app, runner):
    ann = _lead(app, "ann")
    spring = add_broadcast(app, "spring-sale", started_at=T0)
    add_broadcast(app, "april-news", state="sending", started_at=T0 + timedelta(days=30))
    add_broadcast(app, "not-yet", state="scheduled")
    to_ann = add_delivery(app, ann, broadcast_id=spring)
    add_event(app, ann, "click", T0, delivery_id=to_ann)
    add_upgrade(app, ann, "49.00", T0 + timedelta(hours=1))
    result = runner.invoke(args=["report", "--by", "broadcast"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["broadcast", "state", "recipients", "delivered"]
    assert [line.split()[0] for line in lines[1:]] == ["april-news", "spring-sale"]
    assert lines[2].split() == ["spring-sale", "sent", "1", "1", "0", "0.0%", "1", "100.0%",
                                "0", "0", "0", "0.0%", "0.0%", "1", "49.00"]


def test_report_by_broadcast_without_broadcasts_and_with_a_page(app, runner):
    assert runner.invoke(args=["report", "--by", "broadcast"]).output == (
        "No broadcast sent yet.\n")
    result = runner.invoke(args=["report", "--by", "broadcast", "--page", "demo"])
    assert result.exit_code == 1
    assert "leave out --page" in result.output


def test_report_by_step_has_upgrades_and_revenue(app, runner):
    ann = _lead(app, "ann")
    offer = add_delivery(app, ann, sequence="course", step="03-offer")
    add_event(app, ann, "click", T0, delivery_id=offer)
    add_upgrade(app, ann, "49.00", T0 + timedelta(hours=1))
    lines = runner.invoke(args=["report", "--by", "step"]).output.splitlines()
    assert lines[0].split()[-6:] == ["bounces", "complaints", "bounce", "complaint",
                                     "upgrades", "revenue"]
    assert lines[1].split() == ["course", "03-offer", "1", "0", "0.0%", "1", "100.0%", "0",
                                "0", "0", "0.0%", "0.0%", "1", "49.00"]
