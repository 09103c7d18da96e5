"""The wire format of every email we send: a multipart/alternative message with a
text and an HTML part, written straight to bytes.

The standard library's EmailMessage parses every header it is given and refolds it
when written out, which cost more than rendering the email itself. Our headers are
few and known, and their values are made safe before they arrive here (rendering.py:
one line, no encoded words, display names reduced to plain characters), so they are
written as they are: ASCII values folded at spaces, anything else as RFC 2047
encoded words; both parts in quoted-printable UTF-8, so every line is short, 7-bit
and CRLF-terminated. A header value with a line break is refused, whatever its
origin: nothing can add a header.
"""

import binascii
import secrets
from email.header import Header
from email.utils import formataddr

_MAX_LINE = 78


class Email:
    """One message: its headers in order (values as given, unencoded), its two parts,
    and the addresses of its envelope. `message[name]` reads a header (None if
    absent); `as_bytes()` is what goes on the wire."""

    def __init__(self, headers: list[tuple[str, str]], text: str, html: str, *,
                 sender: str, recipient: str) -> None:
        self._headers = [(name, _checked(name, value)) for name, value in headers]
        self.text, self.html = text, html
        self.sender, self.recipient = sender, recipient

    def __getitem__(self, name: str) -> str | None:
        wanted = name.lower()
        return next((value for key, value in self._headers if key.lower() == wanted), None)

    def replace_header(self, name: str, value: str) -> None:
        """Set a header that is there already (KeyError if it is not)."""
        wanted = name.lower()
        for index, (key, _) in enumerate(self._headers):
            if key.lower() == wanted:
                self._headers[index] = (key, _checked(name, value))
                return
        raise KeyError(name)

    def items(self) -> list[tuple[str, str]]:
        """Every header as (name, value), in order."""
        return list(self._headers)

    def as_bytes(self) -> bytes:
        """The whole message, CRLF line ends, 7-bit."""
        boundary = f"==capture-{secrets.token_hex(12)}"
        lines = [_field(name, value) for name, value in self._headers]
        lines += ["MIME-Version: 1.0",
                  "Content-Type: multipart/alternative;", f' boundary="{boundary}"', "",
                  f"--{boundary}", *_part("plain", self.text),
                  f"--{boundary}", *_part("html", self.html),
                  f"--{boundary}--", ""]
        return "\r\n".join(lines).encode("ascii")

    def as_string(self) -> str:
        return self.as_bytes().decode("ascii")


def address(name: str, addr_spec: str) -> str:
    """`Name <user@domain>` (the name quoted or encoded as needed), or the bare
    address when there is no name."""
    return formataddr((name, addr_spec), charset="utf-8") if name else addr_spec


def _checked(name: str, value: str) -> str:
    value = str(value)
    if "\r" in value or "\n" in value:
        raise ValueError(f"line break in the {name} header")
    return value


def _field(name: str, value: str) -> str:
    """One header field, folded below 78 columns where it has spaces to fold at."""
    if not value.isascii():
        return f"{name}: " + Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    if "=?" in value and name.lower() not in ("to", "from", "reply-to"):
        # An ASCII value that looks like an encoded word is encoded itself, so no
        # mail client decodes it into something else (address headers arrive
        # encoded already by `address`).
        return f"{name}: " + Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    line, folded = f"{name}: {value}", []
    while len(line) > _MAX_LINE:
        cut = line.rfind(" ", len(name) + 2, _MAX_LINE)
        if cut <= len(name) + 2:
            break  # one long word (a URL): lines may be up to 998 long
        folded.append(line[:cut])
        line = line[cut:]  # the space stays: it starts the continuation line
    folded.append(line)
    return "\r\n".join(folded)


def _part(subtype: str, content: str) -> list[str]:
    """The header and the quoted-printable body of one part."""
    body = content.replace("\r\n", "\n").replace("\r", "\n")
    # b2a_qp keeps the text's line ends and breaks long lines with "=\n": every
    # one of them becomes CRLF (a bare LF has no place in SMTP).
    encoded = binascii.b2a_qp(body.encode("utf-8"), istext=True).decode("ascii")
    encoded = encoded.replace("\n", "\r\n")
    return [f'Content-Type: text/{subtype}; charset="utf-8"',
            "Content-Transfer-Encoding: quoted-printable", "", encoded]
