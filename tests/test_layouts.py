"""The email layouts rendered once per chunk (capture.mail.layouts): each email the
same as when its layouts are rendered for it alone, whatever its values hold."""

import jinja2
import pytest

from capture.mail import layouts
from capture.models import Page

AWKWARD = [
    "",
    "Plain words",
    "<script>alert('x')</script> & \"quotes\" 'single'",
    "{{ 7 * 7 }} {% if true %}code{% endif %}",
    f"{layouts._MARK}content{layouts._MARK} and {layouts._MARK}pixel_url{layouts._MARK}",
]


def emails():
    """Values of emails of one chunk: every awkward value in every slot."""
    for number, value in enumerate(AWKWARD):
        yield {"content": f"<p>Hi {value}</p>", "text": f"Hi {value}\n", "preheader": value,
               "unsubscribe_url": f"https://example.com/u/tok{number}?a=1&b=<{value}>",
               "pixel_url": f"https://example.com/o/{number}" if number % 2 else None}
    yield {"content": "", "text": "", "preheader": None, "unsubscribe_url": "x",
           "pixel_url": ""}


@pytest.mark.parametrize("language", ["en", "de"])
def test_each_email_is_what_its_own_render_is(app, language):
    pages = [Page(id=1, slug="a", title="Ann's <b>guide</b> & more"), None,
             Page(id=2, slug="b", title="{{ page }}")]
    with app.app_context():
        chunk = layouts.Layouts()
        for _ in range(2):  # the second time from the skeletons
            for page in pages:
                for values in emails():
                    assert chunk.render(language, page, **values) == layouts.render(
                        language, page, **values)
        assert all(chunk._skeletons.values())
        html, _ = chunk.render(language, pages[0], **next(emails()))
        assert "Ann&#39;s &lt;b&gt;guide&lt;/b&gt; &amp; more" in html


def test_a_layout_that_changes_a_value_is_rendered_per_email(app):
    with app.app_context():
        loader = app.jinja_env.loader
        app.jinja_env.loader = jinja2.ChoiceLoader([jinja2.DictLoader({
            "email/layout.html":
                "{{ content }} {{ unsubscribe_url|upper }} {{ (preheader or '')[:3] }}",
        }), loader])
        app.jinja_env.cache.clear()
        try:
            chunk = layouts.Layouts()
            for _ in range(2):
                for values in emails():
                    assert chunk.render("en", None, **values) == layouts.render(
                        "en", None, **values)
            assert None in chunk._skeletons.values()
        finally:
            app.jinja_env.loader = loader
            app.jinja_env.cache.clear()
