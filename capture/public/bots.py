"""Bot defences for the opt-in: user-agent detection, the fill-time token and the
per-client rate limit. The honeypot field itself lives in the form.

The fill-time token is signed and bound to one page and one visitor, and lives
FORM_MAX_AGE_SECONDS: one harvested token does not serve a stream of sign-ups."""

import functools
import re

import limits
import limits.strategies
from flask import Flask, current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer

from capture import clock
from capture.web import rate_limits
from capture.web.user_agents import user_agent_matcher

# Crawlers, link previewers and scripted clients. Headless browsers are not listed:
# they are how people test their own pages, and they run JavaScript like a person.
BOT_USER_AGENT = re.compile(
    r"bot\b|bot/|crawl|spider|slurp|scrape|archiver|facebookexternalhit|"
    r"embedly|preview|pinterest|bingpreview|whatsapp|telegram|discord|"
    r"curl/|wget/|python-requests|python-urllib|httpx|aiohttp|go-http-client|"
    r"java/|okhttp|libwww|scrapy|node-fetch|axios|lighthouse|pagespeed|"
    r"uptime|pingdom|statuscake",
    re.IGNORECASE,
)

_FORM_TOKEN_SALT = "capture.form-started"
_names_a_bot = user_agent_matcher(BOT_USER_AGENT)


def is_bot_user_agent(user_agent: str | None) -> bool:
    """True for a missing user agent or one that names a crawler or script."""
    if not user_agent or not user_agent.strip():
        return True
    return _names_a_bot(user_agent)


def _serializer() -> URLSafeTimedSerializer:
    return _serializer_for(current_app.config["SECRET_KEY"])


@functools.lru_cache(maxsize=8)
def _serializer_for(secret_key: str) -> URLSafeTimedSerializer:
    """Built once per key, as the other tokens' (it keeps no state between uses)."""
    return URLSafeTimedSerializer(secret_key, salt=_FORM_TOKEN_SALT)


# What a fill-time token says about a submission (`check_form_token`).
MISSING = "missing"  # no token at all
FORGED = "forged"  # tampered, signed elsewhere, or made for another page or visitor
EXPIRED = "expired"  # genuine, but older than FORM_MAX_AGE_SECONDS: a tab left open
TOO_FAST = "too fast"  # genuine, but back sooner than MIN_FORM_SECONDS
FINE = "fine"


def form_token(page_id: int, visit_id: int | None, visitor: str | None,
               variant: str | None = None) -> str:
    """A signed token carrying when the form of page `page_id` was shown, in which
    visit, to which visitor (the visitor cookie's id; None on another site, where
    the cookie does not travel) and as which variant of a page test (None: the page
    itself, outside any test), so the submission is checked against that form."""
    return _serializer().dumps({"p": page_id, "v": visit_id, "u": visitor, "k": variant,
                                "t": clock.utcnow().timestamp()})


def check_form_token(token: str | None, page_id: int,
                     visitor: str | None) -> tuple[str, dict | None]:
    """What the token of a submission to page `page_id` by `visitor` says (one of
    MISSING, FORGED, EXPIRED, TOO_FAST, FINE) and its content when it is genuine."""
    if not token:
        return MISSING, None
    try:
        data = _serializer().loads(token)
    except BadSignature:
        return FORGED, None
    if (not isinstance(data, dict) or not isinstance(data.get("t"), (int, float))
            or data.get("p") != page_id or data.get("u") != visitor):
        return FORGED, None
    elapsed = clock.utcnow().timestamp() - data["t"]
    if elapsed > current_app.config["FORM_MAX_AGE_SECONDS"]:
        return EXPIRED, data
    if elapsed < current_app.config["MIN_FORM_SECONDS"]:
        return TOO_FAST, data
    return FINE, data


class RateLimit:
    """A limit per client address on opt-in submissions, counted for the whole site."""

    def __init__(self) -> None:
        self.limiter: limits.strategies.RateLimiter | None = None
        self.rate: limits.RateLimitItem | None = None

    def init_app(self, app: Flask) -> None:
        """Take OPTIN_RATE_LIMIT and the app's limiter (capture.web.rate_limits)."""
        self.rate = app.config["OPTIN_RATE_LIMIT"]
        self.limiter = rate_limits.limiter(app)
        app.extensions["capture.rate_limit"] = self

    def allow(self, client: str) -> bool:
        """Count one submission from `client`; False once it is past the limit."""
        if self.rate is None or self.limiter is None:
            return True
        return self.limiter.hit(self.rate, "optin", client)


def rate_limit() -> RateLimit:
    """The app's rate limiter."""
    return current_app.extensions["capture.rate_limit"]
