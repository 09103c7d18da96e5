"""The site's icon: /favicon.ico answers, and every page links the SVG icon."""

from tests.conftest import OWNER_EMAIL


def test_favicon_ico_is_served_as_an_icon(client):
    with client.get("/favicon.ico") as response:
        assert response.status_code == 200
        assert response.mimetype in ("image/vnd.microsoft.icon", "image/x-icon")
        assert response.data[:4] == b"\x00\x00\x01\x00"  # an ICO file
        assert "max-age" in response.headers["Cache-Control"]


def test_visitor_and_dashboard_pages_link_the_svg_icon(client, demo_page, owner):
    icon = '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
    assert icon in client.get("/p/demo").get_data(as_text=True)
    assert icon in client.get("/admin/login").get_data(as_text=True)
    dashboard = owner.get("/admin/").get_data(as_text=True)
    assert icon in dashboard and OWNER_EMAIL in dashboard
    with client.get("/static/favicon.svg") as svg:
        assert svg.status_code == 200 and svg.mimetype == "image/svg+xml"
