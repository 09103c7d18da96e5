"""The production set-up of deploy/ run for real: Debian's nginx with deploy/nginx.conf
in front of gunicorn started as deploy/capture-web.service starts it, on loopback
ports, with the settings of deploy/capture.env.example. Slow clients, the client
address, https, body limits and the access log."""

import getpass
import http.client
import re
import select
import shlex
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
import sqlalchemy as sa

from config import Config
from tests.conftest import _free_port, form_tokens
from tests.live import BIN, ROOT, start_stack

# Real nginx in front of real gunicorn: `make test-fast` leaves them out.
pytestmark = pytest.mark.slow

DEPLOY = ROOT / "deploy"
SERVER_NAME = "capture.example.com"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def unit_setting(unit: str, key: str) -> str:
    """The value of `key=` in a systemd unit of deploy/."""
    for line in (DEPLOY / unit).read_text().splitlines():
        if line.startswith(f"{key}="):
            return line.split("=", 1)[1]
    raise AssertionError(f"{unit} has no {key}=")


def env_example() -> dict[str, str]:
    """deploy/capture.env.example as a dict (as systemd reads it: quotes removed)."""
    lines = (DEPLOY / "capture.env.example").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return {name: value.strip('"') for name, value in pairs}


def gunicorn_command(port: int) -> list[str]:
    """capture-web.service's ExecStart, with this checkout's venv and a free port."""
    command = unit_setting("capture-web.service", "ExecStart")
    working_directory = unit_setting("capture-web.service", "WorkingDirectory")
    assert "--bind 127.0.0.1:8000" in command
    command = command.replace(f"{working_directory}/.venv/bin/", f"{BIN}/")
    return shlex.split(command.replace("127.0.0.1:8000", f"127.0.0.1:{port}"))


def substitute(text: str, old: str, new: str) -> str:
    """`text` with every `old` replaced; the placeholder must be there."""
    assert old in text, f"the file in deploy/ no longer has {old!r}"
    return text.replace(old, new)


def nginx_config(folder: Path, *, http_port: int, https_port: int, upstream_port: int) -> Path:
    """A throw-away nginx.conf that includes deploy/nginx.conf with its placeholders
    (ports, certificate, log folder, upstream) pointed at this test's."""
    site = (DEPLOY / "nginx.conf").read_text()
    site = "\n".join(line for line in site.splitlines() if "listen [::]:" not in line)
    site = re.sub(r"listen 80\b", f"listen 127.0.0.1:{http_port}", site)
    site = re.sub(r"listen 443\b", f"listen 127.0.0.1:{https_port}", site)
    site = substitute(site, "server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};")
    site = substitute(site, f"/etc/letsencrypt/live/{SERVER_NAME}/", f"{folder}/")
    site = substitute(site, "/var/log/nginx/", f"{folder}/")
    (folder / "capture.conf").write_text(site)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={SERVER_NAME}", "-keyout", str(folder / "privkey.pem"),
         "-out", str(folder / "fullchain.pem")],
        check=True, capture_output=True, timeout=60)
    temp = "\n".join(f"  {kind}_temp_path {folder}/{kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    main = folder / "nginx.conf"
    main.write_text(f"""
user {getpass.getuser()};
worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
{temp}
  access_log {folder}/other.access.log;
  include {folder}/capture.conf;
}}
""")
    return main


@pytest.fixture(scope="module")
def production(tmp_path_factory):
    """nginx (deploy/nginx.conf) → gunicorn (capture-web.service) → Capture."""
    if NGINX is None:
        pytest.skip("nginx is not installed (.ci/run installs Debian's nginx)")
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate for the TLS server block")
    folder = tmp_path_factory.mktemp("production")
    settings = env_example()
    stack, stop = start_stack(
        folder, scheduler=False, server_command=gunicorn_command,
        extra_env={"CAPTURE_PROXY_COUNT": settings["CAPTURE_PROXY_COUNT"],
                   "CAPTURE_RATE_LIMIT_STORAGE": settings["CAPTURE_RATE_LIMIT_STORAGE"],
                   "CAPTURE_BASE_URL": f"https://{SERVER_NAME}",
                   "CAPTURE_OPTIN_RATE_LIMIT": "3/minute",
                   "CAPTURE_MIN_FORM_SECONDS": "0"})
    upstream_port = int(stack.base_url.rsplit(":", 1)[1])
    ports = {"http_port": _free_port(), "https_port": _free_port()}
    config = nginx_config(folder, upstream_port=upstream_port, **ports)
    checked = subprocess.run([NGINX, "-t", "-p", str(folder), "-c", str(config),
                              "-e", str(folder / "error.log")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    nginx = subprocess.Popen([NGINX, "-p", str(folder), "-c", str(config),
                              "-e", str(folder / "error.log")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    site = Site(folder=folder, stack=stack, **ports)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if site.request("GET", "/healthz").status == 200:
                    break
            except OSError:
                pass
            assert nginx.poll() is None, nginx.stderr.read().decode()
            assert time.monotonic() < deadline, "nginx did not answer"
            time.sleep(0.1)
        yield site
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        nginx.stderr.close()
        stop()


class Answer:
    """An HTTP answer read completely."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self.text = response.read().decode("utf-8", "replace")


class Site:
    """The site as a browser reaches it: https with SNI, through nginx."""

    def __init__(self, *, folder: Path, stack, http_port: int, https_port: int) -> None:
        self.folder = folder
        self.stack = stack
        self.http_port = http_port
        self.https_port = https_port
        self.tls = ssl.create_default_context()
        self.tls.check_hostname = False
        self.tls.verify_mode = ssl.CERT_NONE  # the test's own self-signed certificate

    def connect(self, source: str = "127.0.0.1", *, https: bool = True) -> socket.socket:
        """A connection to nginx from loopback address `source`."""
        port = self.https_port if https else self.http_port
        sock = socket.create_connection(("127.0.0.1", port), timeout=10,
                                        source_address=(source, 0))
        return self.tls.wrap_socket(sock, server_hostname=SERVER_NAME) if https else sock

    def request(self, method: str, path: str, *, source: str = "127.0.0.1",
                https: bool = True, body: str | None = None,
                headers: dict | None = None) -> Answer:
        """One request on a new connection."""
        connection = http.client.HTTPConnection(SERVER_NAME, timeout=10)
        connection.sock = self.connect(source, https=https)
        try:
            connection.request(method, path, body=body,
                               headers={"User-Agent": BROWSER, **(headers or {})})
            return Answer(connection.getresponse())
        finally:
            connection.close()

    def optin(self, email: str, *, source: str = "127.0.0.1",
              headers: dict | None = None) -> Answer:
        """Open the launch page and submit the form, as a browser does."""
        page = self.request("GET", "/p/launch", source=source, headers=headers)
        assert page.status == 200, page.status
        cookies = "; ".join(value.split(";", 1)[0]
                            for value in page.headers.get_all("Set-Cookie") or [])
        form = {**form_tokens(page.text), "name": "Ada", "email": email, "consent": "y"}
        return self.request(
            "POST", "/p/launch", source=source, body=urllib.parse.urlencode(form),
            headers={**(headers or {}), "Cookie": cookies,
                     "Referer": f"https://{SERVER_NAME}/p/launch",
                     "Content-Type": "application/x-www-form-urlencoded"})

    def consent_ip(self, email: str) -> str | None:
        """The client address stored with the lead's consent (once the queued
        sign-ups are in)."""
        self.stack.fold_in()
        engine = self.stack.database()
        try:
            with engine.connect() as connection:
                return connection.execute(sa.text("SELECT consent_ip FROM leads WHERE email = :e"),
                                          {"e": email}).scalar_one()
        finally:
            engine.dispose()


class SlowClients:
    """Connections that send a request one header line every two seconds and never
    finish it (or a body one byte at a time): what took four gunicorn workers down."""

    def __init__(self, connect, count: int, *, body: bool = False) -> None:
        self.sockets = []
        self.closed_after: list[float] = []
        self.stop = threading.Event()
        self.started = time.monotonic()
        for _ in range(count):
            sock = connect()
            if body:
                sock.sendall(f"POST /p/launch HTTP/1.1\r\nHost: {SERVER_NAME}\r\n"
                             "Content-Type: application/x-www-form-urlencoded\r\n"
                             "Content-Length: 1000\r\n\r\n".encode())
            else:
                sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {SERVER_NAME}\r\n".encode())
            self.sockets.append(sock)
        self.body = body
        self.thread = threading.Thread(target=self._drip, daemon=True)
        self.thread.start()

    def _drip(self) -> None:
        open_sockets = list(self.sockets)
        while open_sockets and not self.stop.wait(2):
            for sock in list(open_sockets):
                try:
                    if select.select([sock], [], [], 0)[0] and not sock.recv(1024):
                        raise ConnectionResetError("closed by the server")
                    sock.sendall(b"e" if self.body else b"X-Slow: yes\r\n")
                except (OSError, ssl.SSLError):
                    open_sockets.remove(sock)
                    self.closed_after.append(time.monotonic() - self.started)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        for sock in self.sockets:
            sock.close()


def timed(call):
    """`call()`'s result and how long it took, in seconds."""
    start = time.monotonic()
    result = call()
    return result, time.monotonic() - start


def test_slow_clients_leave_healthz_and_optin_answering(production):
    # From another address than the slow ones, as a visitor would come.
    slow = SlowClients(lambda: production.connect("127.0.0.2"), 50)
    slow_bodies = SlowClients(lambda: production.connect("127.0.0.2"), 10, body=True)
    try:
        time.sleep(1)
        for _ in range(3):
            health, seconds = timed(lambda: production.request("GET", "/healthz",
                                                               source="127.0.0.3"))
            assert health.status == 200 and '"ok"' in health.text
            assert seconds < 2, f"/healthz took {seconds:.1f}s behind 60 slow connections"
            time.sleep(1)
        answer, seconds = timed(lambda: production.optin("slow-times@example.com",
                                                         source="127.0.0.3"))
        assert answer.status == 303, answer.text[:500]
        assert answer.headers["Location"].endswith("/p/launch/thanks")
        assert seconds < 4, f"the opt-in took {seconds:.1f}s behind 60 slow connections"
        assert production.consent_ip("slow-times@example.com") == "127.0.0.3"
        # nginx drops a request whose headers are not complete within 10 s.
        deadline = time.monotonic() + 15
        while len(slow.closed_after) < 50 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(slow.closed_after) == 50
        assert max(slow.closed_after) < 15
    finally:
        slow.close()
        slow_bodies.close()


def test_without_nginx_slow_clients_hold_every_gunicorn_worker(production):
    """Why nginx is there: the same slow clients straight at gunicorn stall it."""
    port = int(production.stack.base_url.rsplit(":", 1)[1])
    slow = SlowClients(lambda: socket.create_connection(("127.0.0.1", port), timeout=10), 50)
    try:
        time.sleep(1)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
        with pytest.raises(TimeoutError):
            connection.request("GET", "/healthz")
            connection.getresponse()
        connection.close()
    finally:
        slow.close()
    # Released, the workers serve again.
    deadline = time.monotonic() + 10
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                break
        except OSError:
            assert time.monotonic() < deadline
        finally:
            connection.close()


def test_client_address_is_the_one_nginx_saw_not_a_forged_header(production):
    forged = {"X-Forwarded-For": "203.0.113.9"}
    assert production.optin("forwarded@example.com", source="127.0.0.4",
                            headers=forged).status == 303
    assert production.consent_ip("forwarded@example.com") == "127.0.0.4"
    # The opt-in limit (3/minute here) counts per real client, whatever it forges.
    for number in (2, 3):
        forged = {"X-Forwarded-For": f"203.0.113.{number}"}
        assert production.optin(f"forwarded{number}@example.com", source="127.0.0.4",
                                headers=forged).status == 303
    refused = production.optin("forwarded4@example.com", source="127.0.0.4",
                               headers={"X-Forwarded-For": "203.0.113.4"})
    assert refused.status == 429
    assert "Too many sign-ups" in refused.text
    assert production.optin("neighbour@example.com", source="127.0.0.5").status == 303


def test_http_moves_to_https_and_unknown_names_get_nothing(production):
    moved = production.request("GET", "/p/launch?utm_source=x", https=False)
    assert moved.status == 301
    assert moved.headers["Location"] == f"https://{SERVER_NAME}/p/launch?utm_source=x"
    connection = http.client.HTTPConnection("127.0.0.1", production.http_port, timeout=5)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        connection.request("GET", "/healthz")  # Host: 127.0.0.1:<port>, not the site
        connection.getresponse()
    connection.close()


def test_tokens_in_urls_stay_out_of_the_access_log(production):
    token = "S3cretConfirmTokenValue.abc-def_123"
    for path in (f"/confirm/{token}", f"/u/{token}", f"/c/{token}?x=1", f"/o/{token}"):
        production.request("GET", path)
    log = (production.folder / "capture.access.log").read_text()
    assert "/confirm/[token]" in log and "/c/[token]?x=1" in log
    assert token not in log


def test_an_over_size_body_is_refused_by_nginx(production):
    answer = production.request("POST", "/p/launch", body="email=" + "a" * 70_000,
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status == 413
    assert "nginx" in answer.text  # refused before it reached a worker


def test_nginx_body_limits_are_the_apps():
    """client_max_body_size in deploy/nginx.conf follows config.py's limits."""
    from capture.admin.imports import _FORM_ROOM

    site = (DEPLOY / "nginx.conf").read_text()
    sizes = {}
    where = "server"
    for line in site.splitlines():
        location = re.match(r"\s*location (.+?) \{", line)
        if location:
            where = location.group(1)
        elif re.match(r"\s*server \{", line):
            where = "server"
        size = re.match(r"\s*client_max_body_size (\d+)k;", line)
        if size:
            sizes[where] = int(size.group(1)) * 1024
    assert sizes == {"server": Config.MAX_CONTENT_LENGTH,
                     "/admin/": Config.ADMIN_MAX_CONTENT_LENGTH,
                     "= /admin/leads/import": Config.IMPORT_MAX_BYTES + _FORM_ROOM}


def test_units_and_settings_agree_with_nginx():
    """One proxy in front (X-Forwarded-* trusted once), gunicorn where nginx sends."""
    assert env_example()["CAPTURE_PROXY_COUNT"] == "1"
    web = unit_setting("capture-web.service", "ExecStart")
    assert "--forwarded-allow-ips 127.0.0.1" in web
    assert "server 127.0.0.1:8000;" in (DEPLOY / "nginx.conf").read_text()
    for unit in ("capture-web.service", "capture-scheduler.service"):
        assert unit_setting(unit, "EnvironmentFile") == "/etc/capture/capture.env"
        assert unit_setting(unit, "Restart") == "on-failure"
        assert unit_setting(unit, "NoNewPrivileges") == "yes"
        assert unit_setting(unit, "ProtectSystem") == "strict"
    scheduler = unit_setting("capture-scheduler.service", "ExecStart")
    assert scheduler.endswith("/.venv/bin/flask --app wsgi scheduler")


def test_systemd_accepts_the_units(tmp_path):
    """`systemd-analyze verify` on both units, pointed at this checkout."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    for unit in ("capture-web.service", "capture-scheduler.service"):
        text = (DEPLOY / unit).read_text()
        text = substitute(text, "/srv/capture", str(ROOT))
        text = substitute(text, "/etc/capture/capture.env", str(DEPLOY / "capture.env.example"))
        (tmp_path / unit).write_text(text.replace("=capture\n", f"={getpass.getuser()}\n"))
    verified = subprocess.run(["systemd-analyze", "verify", *sorted(map(str, tmp_path.glob("*")))],
                              capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0 and verified.stderr == "", verified.stderr
