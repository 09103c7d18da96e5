"""The pixel and the click answered before Flask's request cycle
(capture.public.tracking_wsgi): the same answers and headers as the blueprint's, and
Flask still answers whatever they do not (HEAD, an unknown click, a failure)."""

import re

from sqlalchemy.exc import OperationalError

from capture.leads import engagement
from capture.public.tracking import PIXEL
from capture.web import headers
from tests.conftest import HUMAN
from tests.test_tracking import BASE, events


def _paths(sent):
    html = sent["html"]
    return (re.search(rf'<img src="{BASE}(/o/[^"]+)"', html).group(1),
            re.search(rf'href="{BASE}(/c/[^"]+)"', html).group(1))


def _flask_requests(app):
    """A counter of the requests that reached Flask's request cycle."""
    seen = []
    app.before_request(lambda: seen.append(1) and None)
    return seen


def test_the_pixel_is_answered_before_flask_with_the_gif_and_every_header(smtp_app, sent):
    pixel, _ = _paths(sent)
    seen = _flask_requests(smtp_app)
    response = sent["client"].get(pixel, headers={"User-Agent": HUMAN})
    assert (response.status_code, response.mimetype, response.data) == (
        200, "image/gif", PIXEL)
    assert response.headers["Cache-Control"] == "no-store, no-cache, must-revalidate, max-age=0"
    assert response.headers["Content-Security-Policy"] == headers.NOT_HTML_POLICY
    assert (response.headers["X-Content-Type-Options"], response.headers["X-Frame-Options"],
            response.headers["Referrer-Policy"]) == ("nosniff", "DENY", headers.PUBLIC_REFERRER)
    assert "Set-Cookie" not in response.headers
    assert seen == [] and len(events(smtp_app, "open")) == 1


def test_a_click_is_answered_before_flask_with_the_redirect_and_every_header(smtp_app, sent):
    _, click = _paths(sent)
    seen = _flask_requests(smtp_app)
    response = sent["client"].get(click, headers={"User-Agent": HUMAN})
    assert (response.status_code, response.headers["Location"]) == (
        302, "https://example.com/guide?a=1&b=2")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert (response.headers["X-Content-Type-Options"], response.headers["X-Frame-Options"],
            response.headers["Referrer-Policy"]) == ("nosniff", "DENY", headers.PUBLIC_REFERRER)
    assert seen == [] and len(events(smtp_app, "click")) == 1


def test_head_and_unknown_clicks_go_on_to_flask(smtp_app, sent):
    pixel, click = _paths(sent)
    seen = _flask_requests(smtp_app)
    assert sent["client"].head(pixel).status_code == 200
    missing = sent["client"].get(click[:-2] + "zz", headers={"User-Agent": HUMAN})
    assert missing.status_code == 404 and "<html" in missing.get_data(as_text=True)
    assert len(seen) == 2


def test_a_click_the_database_refused_gets_flasks_503_page(smtp_app, sent, monkeypatch):
    _, click = _paths(sent)

    def away(token, user_agent):
        raise OperationalError("SELECT", {}, Exception("database is locked"))

    monkeypatch.setattr(engagement, "record_click", away)
    response = sent["client"].get(click, headers={"User-Agent": HUMAN})
    assert response.status_code == 503
    assert events(smtp_app, "click") == []
