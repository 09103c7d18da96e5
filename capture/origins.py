"""Web origins (scheme, host and port, like https://blog.example.com): reading the ones
an owner types, and finding the one a cross-site request came from."""

import re
from urllib.parse import urlsplit

from flask import Request

DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*"
                   r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
EXAMPLE = "https://blog.example.com"
# The Origin a browser sends from a page without a web origin of its own: a sandboxed
# frame, a local file, a data: URL. It names no site, so no allowlist can hold it.
OPAQUE = "null"


class OriginError(ValueError):
    """Text that is not an origin; the message says why, fit to show the owner."""


def parse_origin(text: str) -> str:
    """The origin in its canonical form: lower-case, without a default port
    ("HTTPS://Blog.Example.com:443/" → "https://blog.example.com").

    Raises OriginError naming what is wrong."""
    if not isinstance(text, str):
        raise OriginError(f"{text!r} is not text: write an origin like {EXAMPLE}")
    value = text.strip()
    if "://" not in value:
        raise OriginError(f"{value!r} needs https:// or http:// in front, like {EXAMPLE}")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise OriginError(f"{value!r} is not an origin: the port must be a number "
                          "from 1 to 65535") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise OriginError(f"{value!r} must start with https:// or http://")
    if parts.username is not None or parts.password is not None:
        raise OriginError(f"{value!r} is not an origin: no user name or password")
    if parts.path not in ("", "/") or parts.query or parts.fragment or value.endswith(("?", "#")):
        raise OriginError(f"{value!r} is not an origin: leave out the path, like {EXAMPLE}")
    host = _host(parts.hostname or "")
    if host is None:
        raise OriginError(f"{value!r} has no valid host name")
    if port is not None and port == 0:
        raise OriginError(f"{value!r} is not an origin: the port must be a number "
                          "from 1 to 65535")
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    if port is None or port == DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _host(hostname: str) -> str | None:
    """The host name as browsers send it (international names in their xn-- form), or
    None when it cannot be one."""
    if not hostname:
        return None
    if ":" in hostname:  # urlsplit keeps IPv6 addresses without their brackets
        return hostname if re.fullmatch(r"[0-9a-f:.]+", hostname) else None
    try:
        ascii_host = hostname.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    return ascii_host if _HOST.match(ascii_host) and len(ascii_host) <= 253 else None


def request_origin(request: Request) -> str | None:
    """The origin a request says it was sent from: its Origin header, else the origin
    of its Referer; OPAQUE for `Origin: null` (sent on purpose, it is not a missing
    Origin: the Referer is not looked at); None when neither names an http(s) origin."""
    if request.headers.get("Origin", "").strip() == OPAQUE:
        return OPAQUE
    for header, whole_url in (("Origin", False), ("Referer", True)):
        value = request.headers.get(header, "").strip()
        if not value:
            continue
        if whole_url:
            try:
                parts = urlsplit(value)
            except ValueError:
                return None
            value = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        try:
            return parse_origin(value)
        except OriginError:
            return None
    return None
