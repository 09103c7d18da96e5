"""The database storage of the rate-limit counters (capture.web.rate_limits)."""

import time

import limits
import pytest
from sqlalchemy import func, select

from capture.web import rate_limits
from capture.db import db
from capture.models import RateLimitCounter
from capture.settings import SettingError

FIVE_A_MINUTE = limits.parse("5/minute")


def test_database_is_the_default_storage(app):
    assert app.config["RATE_LIMIT_STORAGE"] == "database"
    assert isinstance(rate_limits.limiter(app).storage, rate_limits.DatabaseStorage)


def test_hits_past_the_limit_are_refused_and_counted_in_one_row(app):
    limiter = rate_limits.limiter(app)
    with app.app_context():
        assert [limiter.hit(FIVE_A_MINUTE, "optin", "198.51.100.7") for _ in range(7)] == \
            [True] * 5 + [False] * 2
        assert limiter.hit(FIVE_A_MINUTE, "optin", "198.51.100.8")
        assert not limiter.test(FIVE_A_MINUTE, "optin", "198.51.100.7")
        reset, remaining = limiter.get_window_stats(FIVE_A_MINUTE, "optin", "198.51.100.7")
        assert remaining == 0 and 55 < reset - time.time() <= 60
        assert db.session.scalar(select(func.count()).select_from(RateLimitCounter)) == 2


def test_an_ended_window_starts_again_and_old_counters_are_purged(app):
    limiter = rate_limits.limiter(app)
    with app.app_context():
        for _ in range(5):
            limiter.hit(FIVE_A_MINUTE, "optin", "198.51.100.7")
        db.session.add(RateLimitCounter(key="LIMITER/gone/1/1/minute", count=9,
                                        expires_at=time.time() - 3600))
        db.session.execute(RateLimitCounter.__table__.update().values(
            expires_at=time.time() - 1))
        db.session.commit()
        limiter.storage.next_purge = 0
        assert limiter.hit(FIVE_A_MINUTE, "optin", "198.51.100.7")
        db.session.expire_all()
        rows = db.session.scalars(select(RateLimitCounter)).all()
        assert [(row.count, row.expires_at > time.time()) for row in rows] == [(1, True)]


def test_a_long_key_is_stored_by_its_hash(app):
    limiter = rate_limits.limiter(app)
    long_address = "x" * 240 + "@example.com"
    with app.app_context():
        for _ in range(20):
            assert limiter.hit(limits.parse("20/15minutes"), "login", "email", long_address)
        assert not limiter.hit(limits.parse("20/15minutes"), "login", "email", long_address)
        assert db.session.scalar(select(RateLimitCounter.key)).startswith("sha256:")


@pytest.mark.parametrize("value", ["pigeon", "database://", "memcached://localhost:11211"])
def test_a_bad_storage_stops_start_up_with_one_line(make_app, value):
    with pytest.raises(SettingError) as raised:
        make_app(RATE_LIMIT_STORAGE=value)
    message = str(raised.value)
    assert message.startswith("Bad setting CAPTURE_RATE_LIMIT_STORAGE: ")
    assert "is not database, memory:// or redis://host:port" in message
    assert "\n" not in message


@pytest.mark.parametrize("value", ["memory://", "redis://127.0.0.1:6379"])
def test_memory_and_redis_storages_still_start(make_app, value):
    app = make_app(RATE_LIMIT_STORAGE=value)
    assert not isinstance(rate_limits.limiter(app).storage, rate_limits.DatabaseStorage)
