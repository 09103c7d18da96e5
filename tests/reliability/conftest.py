"""Real processes under load: the visitor these tests send at a running stack."""

import http.cookiejar
import re
import urllib.parse
import urllib.request

BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0"}


class Visitor:
    """A browser of its own (cookies kept) on the opt-in page."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        self.tokens: dict[str, str] = {}

    def open_page(self) -> None:
        """View the page (a visit is recorded) and keep the form's hidden tokens."""
        request = urllib.request.Request(f"{self.base_url}/p/launch?utm_source=load",
                                         headers=BROWSER)
        with self.opener.open(request, timeout=30) as response:
            html = response.read().decode()
        self.tokens = dict(re.findall(
            r'name="(csrf_token|started)" type="hidden" value="([^"]*)"', html))

    def submit(self, name: str, email: str) -> int:
        """Submit the form; the status after following the 303 to the thanks page."""
        form = urllib.parse.urlencode({**self.tokens, "name": name, "email": email,
                                       "consent": "y"}).encode()
        request = urllib.request.Request(f"{self.base_url}/p/launch", data=form,
                                         headers=BROWSER)
        with self.opener.open(request, timeout=30) as response:
            return response.status
