"""Bot defences for the opt-in: user-agent detection, the fill-time token, the
proof of work of pages that ask for one and the per-client rate limits. The honeypot
field itself lives in the form.

The fill-time token is signed and bound to one page and one visitor, and lives
FORM_MAX_AGE_SECONDS: one harvested token does not serve a stream of sign-ups.

The proof of work is a self-hosted ALTCHA challenge (the `altcha` package; the
browser's widget is static/vendor/altcha/): signed with a key derived from SECRET_KEY,
bound to one page, valid POW_CHALLENGE_SECONDS and good for one sign-up only, which
the table spent_challenges remembers for every worker."""

import functools
import hashlib
import hmac
import re
import secrets
from datetime import UTC

import altcha
import limits
import limits.strategies
from flask import Flask, current_app
from flask_babel import lazy_gettext
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import delete, update

from capture import clock
from capture.db import db
from capture.models import Page, SpentChallenge, Visit
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
    """Limits per client address, counted for the whole site: opt-in submissions
    (OPTIN_RATE_LIMIT) and proof-of-work challenges (POW_CHALLENGE_RATE_LIMIT)."""

    def __init__(self) -> None:
        self.limiter: limits.strategies.RateLimiter | None = None
        self.rates: dict[str, limits.RateLimitItem | None] = {}

    def init_app(self, app: Flask) -> None:
        """Take the rates and the app's limiter (capture.web.rate_limits)."""
        self.rates = {"optin": app.config["OPTIN_RATE_LIMIT"],
                      "challenge": app.config["POW_CHALLENGE_RATE_LIMIT"]}
        self.limiter = rate_limits.limiter(app)
        app.extensions["capture.rate_limit"] = self

    def allow(self, client: str, kind: str = "optin") -> bool:
        """Count one request of `kind` from `client`; False once it is past the limit."""
        rate = self.rates.get(kind)
        if rate is None or self.limiter is None:
            return True
        return self.limiter.hit(rate, kind, client)


def rate_limit() -> RateLimit:
    """The app's rate limiter."""
    return current_app.extensions["capture.rate_limit"]


# The form field the widget puts its solution into (its default name).
PROOF_FIELD = "altcha"
# One SHA-256 per try, as in ALTCHA's first protocol: cheap to make and to check
# here, and the widget's built-in worker computes it in any browser.
PROOF_ALGORITHM = "SHA-256"
REPLAYED = "replayed"  # a genuine solution a sign-up already used
# What a visitor is told when the form came without a usable proof: a person may be
# behind these two (JavaScript off, a tab left open); anything else is trapped.
PROOF_NOTICES = {
    MISSING: lazy_gettext("This form needs JavaScript to prove you are not a robot. "
                          "Please turn JavaScript on, wait until the box “I'm not a "
                          "robot” is ticked and send the form again."),
    EXPIRED: lazy_gettext("The check that you are not a robot had expired. Please send "
                          "the form again."),
}


@functools.lru_cache(maxsize=8)
def _proof_key(secret_key: str) -> str:
    """The challenges' HMAC key, derived from a secret key: never the key itself."""
    return hmac.new(secret_key.encode(), b"capture.proof-of-work", hashlib.sha256).hexdigest()


def _proof_keys() -> list[str]:
    """The key of SECRET_KEY, then of its fallbacks: a challenge handed out just before
    the secret key was rotated is still accepted."""
    config = current_app.config
    return [_proof_key(key) for key in (config["SECRET_KEY"],
                                        *(config.get("SECRET_KEY_FALLBACKS") or ()))]


def _unix_now() -> float:
    """Now as Unix time, by the app's clock (which tests can move). The clock's naive
    UTC time is marked UTC first: the browser and the library compare with real Unix
    time, whatever the server's time zone."""
    return clock.utcnow().replace(tzinfo=UTC).timestamp()


def proof_challenge(page: Page) -> dict:
    """A fresh challenge for the form of `page`, as the widget fetches it (JSON): the
    server picks a number below POW_MAX_NUMBER and sends the start of its hash; the
    browser counts up from 0 until it finds the number."""
    config = current_app.config
    expires = int(_unix_now()) + config["POW_CHALLENGE_SECONDS"]
    return altcha.create_challenge(
        PROOF_ALGORITHM, 1, counter=secrets.randbelow(config["POW_MAX_NUMBER"]),
        expires_at=expires, data={"page": page.id}, hmac_secret=_proof_keys()[0],
    ).to_dict()


def check_proof(page: Page, payload: str | None, visit_id: int | None) -> str:
    """What the proof of work sent with a sign-up to `page` says: FINE (also for a
    page that asks for none), MISSING, EXPIRED, FORGED (tampered, signed elsewhere,
    wrong, for another page) or REPLAYED. A genuine solution is spent here. A form
    sent without a proof, or with a false one, counts as a bot's: its visit is
    marked as a bot's, so the numbers leave it out like a crawler's."""
    if not page.proof_of_work:
        return FINE
    verdict = _proof_verdict(page, payload)
    if verdict in (MISSING, FORGED, REPLAYED) and isinstance(visit_id, int):
        db.session.execute(update(Visit).where(Visit.id == visit_id, Visit.page_id == page.id)
                           .values(is_bot=True))
        db.session.commit()
    return verdict


def _proof_verdict(page: Page, payload: str | None) -> str:
    if not payload:
        return MISSING
    try:
        solved = altcha.Payload.from_base64(payload)
        expires_at = solved.challenge.parameters.expires_at
        data = solved.challenge.parameters.data
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return FORGED
    # The stated time first, as the library does (a forged one gains nothing: the
    # form is only shown again); by the app's clock, which tests can move.
    if not isinstance(expires_at, int) or expires_at < _unix_now():
        return EXPIRED if isinstance(expires_at, int) else FORGED
    try:
        genuine = any(altcha.verify_solution(solved, key).verified for key in _proof_keys())
    except (ValueError, TypeError):  # parts of a forged payload of the wrong kind
        genuine = False
    if not genuine:
        return FORGED
    if not isinstance(data, dict) or data.get("page") != page.id:
        return FORGED
    return FINE if _spend(solved.challenge.signature, expires_at) else REPLAYED


# Spent challenges whose time is over are deleted at most this often, by each process.
_PURGE_SECONDS = 60
_next_purge = 0.0


def _spend(signature: str, expires_at: float) -> bool:
    """Remember a solved challenge as used (in its own transaction, kept whatever the
    sign-up becomes); False when a sign-up had used it already."""
    global _next_purge
    engine = db.engine
    table = SpentChallenge.__table__
    insert = (rate_limits.UPSERTS[engine.dialect.name](table)
              .values(signature=signature, expires_at=expires_at).on_conflict_do_nothing()
              .returning(table.c.signature))
    now = _unix_now()
    with engine.begin() as connection:
        if now >= _next_purge:
            _next_purge = now + _PURGE_SECONDS
            connection.execute(delete(table).where(table.c.expires_at < now))
        # A row comes back only when it was inserted (rowcount says -1 on PostgreSQL).
        return connection.execute(insert).first() is not None
