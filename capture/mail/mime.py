"""The wire format of every email we send: a multipart/alternative message with a
text and an HTML part, written straight to bytes.

The standard library's EmailMessage parses every header it is given and refolds it
when written out, which cost more than rendering the email itself. Our headers are
few and known, and their values are made safe before they arrive here (compose.py:
one line, no encoded words, display names reduced to plain characters), so they are
written as they are: ASCII values folded at spaces, anything else as RFC 2047
encoded words; both parts in quoted-printable UTF-8, so every line is short, 7-bit
and CRLF-terminated. A header value with a line break is refused, whatever its
origin: nothing can add a header.

Addresses go out in ASCII form: an international domain as its IDNA A-labels
(max@xn--mnchen-3ya.de), in the headers and the envelope alike. Only a local part
that is not ASCII (müller@…) cannot be: such an address is written as UTF-8 in its
header (RFC 6532) and the message needs a server that offers SMTPUTF8.
"""

import binascii
import secrets
from email.header import Header
from email.utils import formataddr

from capture import domains

_MAX_LINE = 78
# Their values come from `address`: names encoded already, addresses in wire form.
_ADDRESS_HEADERS = ("to", "from", "reply-to")


class Email:
    """One message: its headers in order (values as given, unencoded), its two parts,
    and the addresses of its envelope. `message[name]` reads a header (None if
    absent); `as_bytes()` is what goes on the wire."""

    def __init__(self, headers: list[tuple[str, str]], text: str, html: str, *,
                 sender: str, recipient: str) -> None:
        self._headers = [(name, _checked(name, value)) for name, value in headers]
        self.text, self.html = text, html
        # As stored (an international domain in Unicode); `envelope()` is the wire form.
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

    def envelope(self) -> tuple[str, str]:
        """The sender and recipient as SMTP's MAIL FROM and RCPT TO take them: the
        domains in ASCII. Raises domains.DomainError."""
        return domains.ascii_address(self.sender), domains.ascii_address(self.recipient)

    @property
    def smtputf8(self) -> bool:
        """True when an address has a non-ASCII local part: the message can only go
        to a server that offers SMTPUTF8."""
        return not "".join(self.envelope()).isascii() or any(
            not value.isascii() for name, value in self._headers
            if name.lower() in _ADDRESS_HEADERS)

    def as_bytes(self) -> bytes:
        """The whole message, CRLF line ends, 7-bit (8-bit only in the address
        headers of an SMTPUTF8 message)."""
        boundary = f"==capture-{secrets.token_hex(12)}"
        lines = [_field(name, value) for name, value in self._headers]
        lines += ["MIME-Version: 1.0",
                  "Content-Type: multipart/alternative;", f' boundary="{boundary}"', "",
                  f"--{boundary}", *_part("plain", self.text),
                  f"--{boundary}", *_part("html", self.html),
                  f"--{boundary}--", ""]
        return "\r\n".join(lines).encode("utf-8")

    def as_string(self) -> str:
        return self.as_bytes().decode("utf-8")


def address(name: str, addr_spec: str) -> str:
    """`Name <user@domain>` (the name quoted or encoded as needed), or the bare
    address when there is no name; the domain in ASCII (see the module's note).
    Raises domains.DomainError for a domain that has no ASCII form."""
    wire = domains.ascii_address(addr_spec)
    if not name:
        return wire
    if wire.isascii():
        return formataddr((name, wire), charset="utf-8")
    # formataddr encodes the address too when it is not ASCII: the name alone is.
    phrase = formataddr((name, "x@x"), charset="utf-8").removesuffix(" <x@x>")
    return f"{phrase} <{wire}>"


def _checked(name: str, value: str) -> str:
    value = str(value)
    if "\r" in value or "\n" in value:
        raise ValueError(f"line break in the {name} header")
    return value


def _field(name: str, value: str) -> str:
    """One header field, folded below 78 columns where it has spaces to fold at."""
    if not value.isascii() and name.lower() in _ADDRESS_HEADERS:
        return f"{name}: {value}"  # made by `address`: a UTF-8 local part (RFC 6532)
    if not value.isascii():
        return f"{name}: " + Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    if "=?" in value and name.lower() not in _ADDRESS_HEADERS:
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
