"""Outgoing HTTP to URLs the owner typed (webhooks): the URL check, the address check
that keeps requests off loopback and private networks (SSRF), and a POST that connects
to the very address that was checked, so a DNS answer that changes between the check
and the connection (DNS rebinding) cannot redirect it.

http.client rather than urllib: it follows no redirects and reads no proxy settings
from the environment, and its connection can be pinned to an address.
"""

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2000
# How much of a failed answer's body is kept with the error, to show the owner.
EXCERPT_BYTES = 200
ALLOW_SETTING = "CAPTURE_WEBHOOK_ALLOW_PRIVATE"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class UrlError(ValueError):
    """A URL that cannot receive webhooks; the message says why in one line."""


class Refused(Exception):
    """The host is, or resolves to, an address Capture must not call."""


class ConnectError(Exception):
    """No answer: the name did not resolve, the connection failed or timed out."""


@dataclass
class Response:
    """What the endpoint answered."""

    status: int
    elapsed_ms: int
    location: str = ""
    excerpt: str = ""


def check_url(url: str, allow_private: bool) -> str:
    """The URL (stripped) when it can receive webhooks, else UrlError.

    Host names are resolved at every delivery, not here (their addresses change);
    an IP address or `localhost` written in the URL is checked now."""
    url = (url or "").strip()
    if not url:
        raise UrlError("Enter the URL that receives the events.")
    if len(url) > MAX_URL_LENGTH:
        raise UrlError(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise UrlError("The URL must not contain spaces or control characters.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError:
        raise UrlError("The URL is not valid: check the host and the port.") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise UrlError("The URL must start with https:// or http://.")
    if not parts.hostname:
        raise UrlError("The URL must name a host, like https://example.com/hooks/capture.")
    if "@" in parts.netloc:
        raise UrlError("Put no user name or password in the URL; check the signature instead.")
    if parts.fragment:
        raise UrlError("The URL must not have a #fragment (it is never sent).")
    host = _ascii_host(parts.hostname)
    if not allow_private:
        literal = _ip_literal(host)
        if literal is not None:
            reason = forbidden_reason(literal)
            if reason:
                raise UrlError(f"{parts.hostname} is {reason}; Capture calls only public "
                               f"addresses unless {ALLOW_SETTING} is on.")
        elif host == "localhost" or host.endswith(".localhost"):
            raise UrlError(f"{parts.hostname} is this machine; Capture calls only public "
                           f"addresses unless {ALLOW_SETTING} is on.")
    return url


def forbidden_reason(address: Address) -> str:
    """Why an address must not be called ('a loopback address' …), or '' when it is
    a public one. IPv6 forms that carry an IPv4 address are judged by that address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address.teredo:
            embedded = address.teredo[1]
        if embedded is not None and forbidden_reason(embedded):
            return forbidden_reason(embedded)
    for test, reason in (("is_loopback", "a loopback address"),
                         ("is_unspecified", "an unspecified address"),
                         ("is_link_local", "a link-local address"),
                         ("is_multicast", "a multicast address"),
                         ("is_private", "a private address"),
                         ("is_reserved", "a reserved address")):
        if getattr(address, test):
            return reason
    if not address.is_global:  # shared (100.64/10), benchmarking, documentation …
        return "not a public address"
    return ""


def resolve(host: str, port: int, allow_private: bool) -> list[str]:
    """The addresses to connect to. Refused when any address the name has is not
    public (unless allowed): a name that also points inside is not trusted at all."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise ConnectError(f"cannot resolve {host}: {_describe(error)}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not allow_private:
        for text in addresses:
            reason = forbidden_reason(ipaddress.ip_address(text.split("%", 1)[0]))
            if reason:
                shown = "" if text == host else f" resolves to {text}, which"
                raise Refused(f"refused: {host}{shown} is {reason} "
                              f"(set {ALLOW_SETTING}=true to allow it)")
    return addresses


def post(url: str, body: bytes, headers: dict[str, str], timeout: float,
         allow_private: bool) -> Response:
    """POST `body` to `url` and return the answer (redirects are not followed).

    Raises Refused (nothing was sent) and ConnectError (no answer)."""
    parts = urlsplit(url)
    host = _ascii_host(parts.hostname or "")
    secure = parts.scheme.lower() == "https"
    port = parts.port or (443 if secure else 80)
    addresses = resolve(host, port, allow_private)
    if secure:
        connection = http.client.HTTPSConnection(
            host, port, timeout=timeout, context=ssl.create_default_context())
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    # The connection keeps the host name (Host header, TLS name and certificate
    # check) but its socket goes to the vetted addresses only.
    connection._create_connection = _pinned(addresses)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    started = time.monotonic()
    try:
        connection.request("POST", target, body=body, headers=headers)
        answer = connection.getresponse()
        excerpt = answer.read(EXCERPT_BYTES)
    except (OSError, http.client.HTTPException) as error:
        raise ConnectError(_describe(error, timeout)) from None
    finally:
        connection.close()
    elapsed = round((time.monotonic() - started) * 1000)
    return Response(status=answer.status, elapsed_ms=elapsed,
                    location=answer.getheader("Location", "")[:300],
                    excerpt=excerpt.decode("utf-8", "replace").strip())


def _pinned(addresses: list[str]):
    """http.client's connection hook, made to try the vetted addresses in turn."""

    def create_connection(address, timeout=None, source_address=None, **_):
        failure: OSError | None = None
        for candidate in addresses:
            try:
                return socket.create_connection((candidate, address[1]), timeout,
                                                source_address)
            except OSError as error:
                failure = error
        raise failure or OSError("no address to connect to")

    return create_connection


def _ascii_host(host: str) -> str:
    """The host as it goes on the wire (internationalized names in IDNA form)."""
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise UrlError(f"{host!r} is not a valid host name.") from None


def _ip_literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _describe(error: BaseException, timeout: float | None = None) -> str:
    """One line for the owner about a network error."""
    if isinstance(error, TimeoutError):
        return f"timed out after {timeout:g} s" if timeout else "timed out"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted: {error.verify_message}"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, socket.gaierror):
        return error.strerror or str(error)
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:200]
