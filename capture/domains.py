"""Domain names in their two forms: Unicode (münchen.de) for people, storage and
rules, ASCII (xn--mnchen-3ya.de, IDNA) for the wire, so that either form written
anywhere means the same domain.
"""

from functools import lru_cache

import idna


class DomainError(ValueError):
    """A domain that has no IDNA form (an empty label, a bad A-label …)."""


@lru_cache(maxsize=4096)
def to_unicode(domain: str) -> str:
    """The domain lower-case in Unicode (NFC, as IDNA decodes it): the form rules
    are compared in. Raises DomainError when it is not a valid domain."""
    text = domain.strip().rstrip(".").lower()
    if text.isascii() and "xn--" not in text:
        return text  # nothing to decode: the common case stays fast
    try:
        return idna.decode(text, uts46=True)
    except idna.IDNAError as error:
        raise DomainError(f"{domain!r} is not a valid international domain: {error}") from None


@lru_cache(maxsize=4096)
def to_ascii(domain: str) -> str:
    """The domain as it goes on the wire (headers, SMTP envelope): unchanged when it
    is ASCII already, else its IDNA A-labels. Raises DomainError."""
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as error:
        raise DomainError(f"{domain!r} is not a valid international domain: {error}") from None


def comparable(domain: str) -> str:
    """The form domains are compared in: Unicode, or just lower-case when the
    domain is not valid IDNA (it can then only equal itself)."""
    try:
        return to_unicode(domain)
    except DomainError:
        return domain.strip().rstrip(".").lower()


def both_forms(domain: str) -> set[str]:
    """The domain in Unicode and in ASCII (one element when they are the same)."""
    unicode = comparable(domain)
    try:
        return {unicode, to_ascii(unicode)}
    except DomainError:
        return {unicode}


def ascii_address(addr_spec: str) -> str:
    """`local@domain` with the domain in ASCII; the local part as it is (only
    SMTPUTF8 can carry a non-ASCII one). Raises DomainError."""
    local, at, domain = addr_spec.rpartition("@")
    return f"{local}{at}{to_ascii(domain)}" if at else addr_spec
