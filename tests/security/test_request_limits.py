"""Request size limits through the real server (gunicorn): a body over the limit is
refused with 413 and a clear page before it is stored or even read, also when it
comes without a Content-Length (chunked) or as thousands of form parts."""

import http.cookiejar
import io
import socket
import urllib.request
from urllib.parse import urlencode, urlsplit

import pytest

from capture.models import Lead
from tests.conftest import count, form_tokens
from tests.live import start_stack

LIMIT = 64 * 1024  # CAPTURE_MAX_CONTENT_LENGTH's default


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running, stop = start_stack(tmp_path_factory.mktemp("limits"), workers=1,
                                scheduler=False,
                                extra_env={"CAPTURE_MIN_FORM_SECONDS": "0"})
    yield running
    stop()


def exchange(base_url: str, head: bytes, body: bytes = b"") -> tuple[int, str]:
    """Send a raw request (the body may be cut short by the server's refusal) and
    return the status and the response body."""
    address = urlsplit(base_url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as connection:
        connection.sendall(head)
        try:
            connection.sendall(body)
        except OSError:  # the server answered and closed before taking it all
            pass
        received = b""
        try:
            while chunk := connection.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    status_line, _, rest = received.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2].decode()


def form_head(path: str, content_type: str, length: int | None) -> bytes:
    size = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"{size}\r\nConnection: close\r\n\r\n").encode()


def chunked(body: bytes, size: int = 16384) -> bytes:
    pieces = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def assert_too_large(status: int, page: str) -> None:
    assert status == 413
    assert "larger than this site accepts" in page and "Traceback" not in page


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/p/launch", "/u/some.token", "/admin/login"])
def test_a_huge_content_length_is_refused_before_the_body_is_read(stack, path):
    status, page = exchange(stack.base_url, form_head(
        path, "application/x-www-form-urlencoded", 50 * 1024 * 1024))
    assert_too_large(status, page)


@pytest.mark.slow
def test_a_huge_opt_in_is_413_and_stores_nothing(stack):
    body = b"email=big%40example.com&consent=y&name=" + b"x" * (2 * LIMIT)
    status, page = exchange(stack.base_url, form_head(
        "/p/launch", "application/x-www-form-urlencoded", len(body)), body)
    assert_too_large(status, page)
    assert "big@example.com" not in [row["email"] for row in stack.leads()]


@pytest.mark.slow
def test_a_chunked_body_past_the_limit_is_413_not_cut_short(stack):
    body = b"email=chunk%40example.com&consent=y&name=" + b"x" * (2 * LIMIT)
    status, page = exchange(stack.base_url, form_head(
        "/p/launch", "application/x-www-form-urlencoded", None), chunked(body))
    assert_too_large(status, page)


@pytest.mark.slow
def test_a_small_chunked_opt_in_is_read_whole(stack):
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with opener.open(urllib.request.Request(f"{stack.base_url}/p/launch", headers={
            "User-Agent": "Mozilla/5.0 Firefox/130.0"}), timeout=30) as response:
        tokens = form_tokens(response.read().decode())
        cookie = response.headers.get_all("Set-Cookie")
    body = urlencode({**tokens, "email": "small@example.com", "name": "Small",
                      "consent": "y"}).encode()
    head = form_head("/p/launch", "application/x-www-form-urlencoded", None)
    cookies = "; ".join(c.split(";", 1)[0] for c in cookie)
    head = head.replace(b"\r\n\r\n", f"\r\nCookie: {cookies}\r\nUser-Agent: Mozilla/5.0 "
                        "Firefox/130.0\r\n\r\n".encode())
    status, _ = exchange(stack.base_url, head, chunked(body, size=20))
    assert status == 303
    assert "small@example.com" in [row["email"] for row in stack.leads()]


@pytest.mark.slow
def test_thousands_of_form_parts_are_413(stack):
    body = b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n\r\n' * 1200 + b"--b--\r\n"
    assert len(body) < LIMIT
    status, page = exchange(stack.base_url, form_head(
        "/p/launch", "multipart/form-data; boundary=b", len(body)), body)
    assert_too_large(status, page)


@pytest.mark.slow
def test_a_huge_postback_is_a_json_413(stack):
    status, page = exchange(stack.base_url, form_head(
        "/postback/upgrade", "application/x-www-form-urlencoded", 10 * 1024 * 1024))
    assert status == 413 and page.startswith("{") and '"ok":false' in page.replace(" ", "")


def test_chunked_body_past_the_limit_in_process_is_413(app, demo_page):
    response = app.test_client().post(
        "/p/demo", input_stream=io.BytesIO(b"name=" + b"x" * (2 * LIMIT)),
        content_type="application/x-www-form-urlencoded",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 413
    assert count(app, Lead) == 0
