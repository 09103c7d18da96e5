"""The sending domain's SPF, DKIM and DMARC records, looked up and judged for `mail check`.

The report is built from a lookup function (a name → its TXT strings), so the judging
is tested on records made up in the test and the real lookup is dnspython's.
"""

from collections.abc import Callable
from dataclasses import dataclass

import dns.exception
import dns.inet
import dns.resolver

from capture.mail import dkim

# A name → the text of each of its TXT records ([] when there is none). Raises
# DnsUnreachable when no nameserver answered.
Lookup = Callable[[str], list[str]]


class DnsUnreachable(Exception):
    """No nameserver answered: nothing is known about the records."""


@dataclass(frozen=True)
class Expected:
    """What the records should match: the From domain, and the DKIM settings (None
    when signing is off)."""

    from_domain: str
    signer: dkim.Signer | None = None


def resolver_lookup(nameserver: str | None = None, timeout: float = 5.0) -> Lookup:
    """A Lookup through dnspython: the system's nameservers, or one given as an IP
    address with an optional port (`192.0.2.1:5353`, `[2001:db8::1]:53`);
    ValueError when it is not one."""
    resolver = None
    if nameserver:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers, resolver.port = [_address(nameserver)], _port(nameserver)

    def lookup(name: str) -> list[str]:
        try:
            active = resolver or dns.resolver.Resolver()
            answer = active.resolve(name, "TXT", lifetime=timeout)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers,
                dns.resolver.NoResolverConfiguration, OSError) as error:
            raise DnsUnreachable(str(error) or type(error).__name__) from None
        return [b"".join(record.strings).decode("utf-8", "replace") for record in answer]

    return lookup


def _split(nameserver: str) -> tuple[str, str]:
    if dns.inet.is_address(nameserver):
        return nameserver, ""
    host, _, port = nameserver.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), port


def _address(nameserver: str) -> str:
    host, _ = _split(nameserver)
    if not dns.inet.is_address(host):
        raise ValueError(f"{nameserver!r} is not an IP address with an optional :port")
    return host


def _port(nameserver: str) -> int:
    _, port = _split(nameserver)
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"{nameserver!r} has no port from 1 to 65535 after its colon")
    return int(port or 53)


def report(expected: Expected, lookup: Lookup) -> list[str]:
    """One line for SPF, DKIM and DMARC each; DnsUnreachable when DNS is."""
    return [spf_line(expected.from_domain, lookup),
            dkim_line(expected.signer, lookup),
            dmarc_line(expected.from_domain, lookup)]


def warnings(expected: Expected) -> list[str]:
    """What is wrong whatever DNS says: a DKIM domain out of DMARC alignment."""
    signer = expected.signer
    if signer is None or dkim.aligned(signer.domain, expected.from_domain):
        return []
    return [f"Warning: CAPTURE_DKIM_DOMAIN {signer.domain} is neither the From domain "
            f"{expected.from_domain} nor a parent of it: DMARC will not count the "
            "signature as aligned"]


def spf_line(domain: str, lookup: Lookup) -> str:
    """SPF: the record at the domain starting `v=spf1`."""
    records = [text for text in lookup(domain) if text.lower().startswith("v=spf1")]
    if not records:
        return f"SPF:   missing (no TXT record at {domain} starts with v=spf1)"
    if len(records) > 1:
        return (f"SPF:   {len(records)} records at {domain} start with v=spf1; receivers "
                "treat that as an error (keep one)")
    return f"SPF:   {records[0]}"


def dkim_line(signer: dkim.Signer | None, lookup: Lookup) -> str:
    """DKIM: whether the published public key matches the configured key's."""
    if signer is None:
        return "DKIM:  not configured (CAPTURE_DKIM_DOMAIN, _SELECTOR and _KEY_FILE unset)"
    name = signer.record_name
    records = [tags(text) for text in lookup(name)]
    records = [record for record in records if "p" in record]
    if not records:
        return f"DKIM:  missing (no DKIM record at {name})"
    published = dkim.public_key_from_record(records[0]["p"])
    if published is not None and published == dkim.public_key_of(signer.key):
        return f"DKIM:  matches ({name} holds the public key of CAPTURE_DKIM_KEY_FILE)"
    if not records[0]["p"]:
        return f"DKIM:  differs ({name} revokes its key: p= is empty)"
    return f"DKIM:  differs ({name} holds another public key than CAPTURE_DKIM_KEY_FILE's)"


def dmarc_line(domain: str, lookup: Lookup) -> str:
    """DMARC: the policy at `_dmarc.<domain>`, else at a parent domain's."""
    labels = domain.lower().rstrip(".").split(".")
    for start in range(len(labels) - 1):
        name = "_dmarc." + ".".join(labels[start:])
        for text in lookup(name):
            record = tags(text)
            if record.get("v", "").upper() == "DMARC1":
                policy = record.get("p") or "missing (p= is required)"
                return f"DMARC: policy {policy} ({name}: {text})"
    return f"DMARC: missing (no v=DMARC1 record at _dmarc.{domain})"


def tags(text: str) -> dict[str, str]:
    """A tag=value list (`v=DKIM1; k=rsa; p=…`) as a dict, tag names lower-case."""
    found = {}
    for part in text.split(";"):
        name, equals, value = part.partition("=")
        if equals:
            found[name.strip().lower()] = value.strip()
    return found
