"""Rate limits hold for the whole site, not per worker: gunicorn with four worker
processes, the counters in the database (the default) or in Redis. Each request
comes on a new connection, so the workers take turns serving them."""

import http.client
import random
import re
import urllib.parse

import pytest

from tests.conftest import form_tokens
from tests.live import OWNER_EMAIL, start_stack

# Several real gunicorn workers: `make test-fast` leaves them out.
pytestmark = pytest.mark.slow

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0"
REDIS = "redis://127.0.0.1:6379"


def redis_or_skip() -> None:
    """Skip unless the Redis server answers; forget the counters of earlier runs that
    are not per address (token ids start at 1 in every fresh database; the owner's
    address is the same)."""
    import redis

    client = redis.Redis.from_url(REDIS)
    try:
        client.ping()
    except redis.RedisError as error:
        pytest.skip(f"no Redis at {REDIS}: {error}")
    for pattern in ("LIMITS:LIMITER/api/*", "LIMITS:LIMITER/login/email/*"):
        for key in client.scan_iter(pattern):
            client.delete(key)
    client.close()


@pytest.fixture(params=["database", REDIS], ids=["database", "redis"], scope="module")
def site(request, tmp_path_factory):
    """Capture under `gunicorn -w 4`, counting rate limits in the given storage."""
    if request.param == REDIS:
        redis_or_skip()
    stack, stop = start_stack(
        tmp_path_factory.mktemp("limits"), workers=4, scheduler=False,
        extra_env={"CAPTURE_RATE_LIMIT_STORAGE": request.param,
                   "CAPTURE_OPTIN_RATE_LIMIT": "5/minute",
                   "CAPTURE_API_RATE_LIMIT": "10/minute",
                   "CAPTURE_MIN_FORM_SECONDS": "0"})
    yield stack
    stop()


class Client:
    """A browser at its own loopback address (fresh for each test run, so counters
    left in Redis by an earlier run do not count)."""

    def __init__(self, base_url: str) -> None:
        self.port = int(base_url.rsplit(":", 1)[1])
        self.address = "127." + ".".join(str(random.randint(2, 254)) for _ in range(3))
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict | None = None,
                headers: dict | None = None) -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30,
                                                source_address=(self.address, 0))
        sent = {"User-Agent": BROWSER, **(headers or {})}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            for cookie in response.headers.get_all("Set-Cookie") or []:
                name, _, value = cookie.split(";", 1)[0].partition("=")
                self.cookies[name] = value
            return response.status, response.read().decode()
        finally:
            connection.close()


def test_sixth_failed_login_from_one_address_is_refused_whichever_worker(site):
    browser = Client(site.base_url)
    status, html = browser.request("GET", "/admin/login")
    assert status == 200
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]*)"', html).group(1)
    wrong = {"csrf_token": token, "email": OWNER_EMAIL, "password": "not the password"}
    statuses = [browser.request("POST", "/admin/login", wrong)[0] for _ in range(12)]
    # memory:// let each of the four workers count five of its own.
    assert statuses == [401] * 5 + [429] * 7


def test_optins_past_the_limit_are_refused_whichever_worker(site):
    browser = Client(site.base_url)
    statuses = []
    for number in range(12):
        status, html = browser.request("GET", "/p/launch")
        assert status == 200
        form = {**form_tokens(html), "name": "Ada", "email": f"limit{number}@example.com",
                "consent": "y"}
        statuses.append(browser.request("POST", "/p/launch", form)[0])
    assert statuses == [303] * 5 + [429] * 7
    exported = site.leads("launch")
    assert sorted(lead["email"] for lead in exported) == [f"limit{n}@example.com"
                                                          for n in range(5)]


def test_api_calls_past_the_limit_are_refused_whichever_worker(site):
    token = site.flask("tokens", "create", "limits").strip().splitlines()[-1]
    client = Client(site.base_url)
    statuses = [client.request("GET", "/api/v1/leads",
                               headers={"Authorization": f"Bearer {token}"})[0]
                for _ in range(25)]
    assert statuses == [200] * 10 + [429] * 15
