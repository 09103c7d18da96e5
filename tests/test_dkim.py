"""DKIM: the key `dkim keygen` writes, the signature on every message (verified with
dkimpy against the printed DNS record), the settings' start-up errors, and what
`mail check` says about the SPF, DKIM and DMARC records."""

import re
import socket
import stat
from pathlib import Path

import dkim as dkimpy
import pytest

from capture.mail import dkim, dns_records
from capture.settings import SettingError
from tests.factories import add_lead, sequence_folder, tick, write_step

DOMAIN, SELECTOR = "example.com", "s2026"


@pytest.fixture(scope="module")
def key_file(tmp_path_factory) -> Path:
    """One RSA 2048 key for the module (openssl takes a moment to make one)."""
    path = tmp_path_factory.mktemp("dkim") / "dkim.pem"
    dkim.generate_key(path)
    return path


def record_of(key_file: Path) -> str:
    return dkim.record_value(key_file.read_bytes())


def dns_answering(records: dict[str, str]):
    """dkimpy's dnsfunc: the TXT record of a name from `records`, None for others."""
    def dnsfunc(name, timeout=5):
        text = records.get(name.decode().rstrip("."))
        return None if text is None else text.encode()
    return dnsfunc


def signed_app(make_app, smtp, tmp_path, key_file, **settings):
    folder = tmp_path / "sequences"
    folder.mkdir(exist_ok=True)
    return make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port,
                    SEQUENCES_DIR=str(folder), POSTAL_ADDRESS="1 Main St, Springfield",
                    MAIL_FROM="News <news@mail.example.com>", DKIM_DOMAIN=DOMAIN,
                    DKIM_SELECTOR=SELECTOR, DKIM_KEY_FILE=str(key_file), **settings)


def signature_tags(raw: bytes) -> dict[str, str]:
    header = re.search(rb"^DKIM-Signature:(.*?)\r\n(?![ \t])", raw, re.S | re.M).group(1)
    return dns_records.tags(re.sub(r"\s+", "", header.decode()))


# --- keygen ---------------------------------------------------------------------------

def test_keygen_writes_a_private_key_readable_by_its_owner_and_prints_the_txt_record(
        app, tmp_path):
    path = tmp_path / "keys" / "s1.pem"
    path.parent.mkdir()
    result = app.test_cli_runner().invoke(
        args=["dkim", "keygen", "--domain", "Example.COM", "--selector", "s1",
              "--out", str(path)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pem = path.read_bytes()
    assert dkim.public_key_of(pem)[0].bit_length() == 2048
    assert "name:  s1._domainkey.example.com" in result.output
    assert f"value: v=DKIM1; k=rsa; p={dkim.public_key_base64(pem)}" in result.output
    assert f"CAPTURE_DKIM_KEY_FILE={path}" in result.output
    assert not list(path.parent.glob(".*"))  # no partial file left behind


def test_keygen_refuses_to_overwrite_a_file_unless_forced(app, tmp_path):
    path = tmp_path / "dkim.pem"
    path.write_text("the key in use\n")
    runner = app.test_cli_runner()
    arguments = ["dkim", "keygen", "--domain", DOMAIN, "--selector", "s1", "--out", str(path)]
    refused = runner.invoke(args=arguments)
    assert refused.exit_code == 1
    assert "exists already" in refused.output and "--force" in refused.output
    assert path.read_text() == "the key in use\n"

    forced = runner.invoke(args=[*arguments, "--force"])
    assert forced.exit_code == 0, forced.output
    assert b"PRIVATE KEY" in path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_keygen_refuses_a_domain_or_selector_that_cannot_be_one(app, tmp_path):
    runner = app.test_cli_runner()
    for domain, selector in (("not a domain", "s1"), (DOMAIN, "bad selector!")):
        result = runner.invoke(args=["dkim", "keygen", "--domain", domain, "--selector",
                                     selector, "--out", str(tmp_path / "k.pem")])
        assert result.exit_code == 2 and "is not a" in result.output
    assert not (tmp_path / "k.pem").exists()


# --- signing --------------------------------------------------------------------------

def test_a_sequence_email_is_signed_over_its_list_headers_and_verifies(
        make_app, smtp, tmp_path, key_file):
    app = signed_app(make_app, smtp, tmp_path, key_file)
    write_step(sequence_folder(app), "01-hi.md", "Hi", "Hello.\n\n[Leave]({{ unsubscribe_url }})",
               delay=0)
    add_lead(app)
    assert tick(app).sent == 1
    raw = smtp.raw[0]
    tags = signature_tags(raw)
    assert (tags["d"], tags["s"], tags["c"], tags["a"]) == (
        DOMAIN, SELECTOR, "relaxed/relaxed", "rsa-sha256")
    assert set(tags["h"].lower().split(":")) == {
        "from", "to", "subject", "date", "message-id", "mime-version", "content-type",
        "list-unsubscribe", "list-unsubscribe-post"}
    dns = dns_answering({f"{SELECTOR}._domainkey.{DOMAIN}": record_of(key_file)})
    assert dkimpy.verify(raw, dnsfunc=dns) is True

    tampered_body = raw.replace(b"Hello.", b"Hullo.")
    assert tampered_body != raw
    assert dkimpy.verify(tampered_body, dnsfunc=dns) is False
    unsubscribe = re.search(rb"List-Unsubscribe: <([^>]+)>", raw).group(1)
    tampered_header = raw.replace(unsubscribe, b"https://elsewhere.example/u")
    assert dkimpy.verify(tampered_header, dnsfunc=dns) is False


def test_a_test_email_is_signed_and_fails_against_another_key(
        make_app, smtp, tmp_path, key_file):
    app = signed_app(make_app, smtp, tmp_path, key_file)
    result = app.test_cli_runner().invoke(args=["mail", "test", "bo@example.com"])
    assert result.exit_code == 0, result.output
    raw = smtp.raw[0]
    name = f"{SELECTOR}._domainkey.{DOMAIN}"
    assert dkimpy.verify(raw, dnsfunc=dns_answering({name: record_of(key_file)})) is True
    other = tmp_path / "other.pem"
    dkim.generate_key(other)
    assert dkimpy.verify(raw, dnsfunc=dns_answering({name: record_of(other)})) is False


def test_the_outbox_backend_writes_the_signed_bytes(make_app, tmp_path, key_file):
    app = make_app(DKIM_DOMAIN=DOMAIN, DKIM_SELECTOR=SELECTOR, DKIM_KEY_FILE=str(key_file),
                   MAIL_FROM="News <news@example.com>")
    assert app.test_cli_runner().invoke(args=["mail", "test", "bo@example.com"]).exit_code == 0
    [written] = (Path(app.instance_path) / "outbox").glob("*.eml")
    raw = written.read_bytes()
    assert raw.startswith(b"DKIM-Signature:")
    dns = dns_answering({f"{SELECTOR}._domainkey.{DOMAIN}": record_of(key_file)})
    assert dkimpy.verify(raw, dnsfunc=dns) is True


def test_without_dkim_settings_nothing_is_signed(smtp_app, smtp):
    assert smtp_app.test_cli_runner().invoke(args=["mail", "test", "bo@example.com"]).exit_code == 0
    assert b"DKIM-Signature" not in smtp.raw[0]


# --- settings -------------------------------------------------------------------------

def test_one_dkim_setting_without_the_others_stops_start_up_naming_what_is_missing(make_app):
    with pytest.raises(SettingError) as error:
        make_app(DKIM_DOMAIN=DOMAIN)
    assert str(error.value) == (
        "Bad setting CAPTURE_DKIM_DOMAIN: DKIM signing needs CAPTURE_DKIM_DOMAIN, "
        "CAPTURE_DKIM_SELECTOR and CAPTURE_DKIM_KEY_FILE together; missing: "
        "CAPTURE_DKIM_SELECTOR, CAPTURE_DKIM_KEY_FILE")


@pytest.mark.parametrize("content, message", [
    (None, "cannot read"),
    (b"hello\n", "not an RSA private key in PEM"),
    ("public", "not an RSA private key in PEM"),
    (b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
     "encrypted"),
])
def test_a_key_file_that_is_missing_or_not_a_private_key_stops_start_up(
        make_app, tmp_path, key_file, content, message):
    path = tmp_path / "key.pem"
    if content == "public":
        der = dkim.public_key_base64(key_file.read_bytes())
        content = f"-----BEGIN PUBLIC KEY-----\n{der}\n-----END PUBLIC KEY-----\n".encode()
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SettingError) as error:
        make_app(DKIM_DOMAIN=DOMAIN, DKIM_SELECTOR=SELECTOR, DKIM_KEY_FILE=str(path))
    text = str(error.value)
    assert text.startswith(f"Bad setting CAPTURE_DKIM_KEY_FILE: {path}" if content else
                           f"Bad setting CAPTURE_DKIM_KEY_FILE: cannot read {path}")
    assert message in text and "\n" not in text


def test_a_bad_dkim_domain_or_selector_stops_start_up(make_app, key_file):
    with pytest.raises(SettingError, match="CAPTURE_DKIM_DOMAIN: 'example' is not a domain"):
        make_app(DKIM_DOMAIN="example", DKIM_SELECTOR=SELECTOR, DKIM_KEY_FILE=str(key_file))
    with pytest.raises(SettingError, match="CAPTURE_DKIM_SELECTOR: 'a b' is not a selector"):
        make_app(DKIM_DOMAIN=DOMAIN, DKIM_SELECTOR="a b", DKIM_KEY_FILE=str(key_file))


# --- mail check -----------------------------------------------------------------------

def closed_udp_port() -> int:
    """A loopback UDP port nothing listens on: no nameserver answers there."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def lookup_of(records: dict[str, list[str]]):
    return lambda name: records.get(name, [])


def expected(key_file, from_domain="mail.example.com", domain=DOMAIN):
    return dns_records.Expected(from_domain,
                                dkim.Signer(domain, SELECTOR, key_file.read_bytes()))


def test_the_report_shows_spf_a_matching_dkim_key_and_the_dmarc_policy(key_file):
    records = {
        "mail.example.com": ["google-site-verification=abc",
                             "v=spf1 include:_spf.relay.example ~all"],
        f"{SELECTOR}._domainkey.{DOMAIN}": [record_of(key_file)],
        "_dmarc.example.com": ["v=DMARC1; p=quarantine; rua=mailto:d@example.com"],
    }
    assert dns_records.report(expected(key_file), lookup_of(records)) == [
        "SPF:   v=spf1 include:_spf.relay.example ~all",
        f"DKIM:  matches ({SELECTOR}._domainkey.{DOMAIN} holds the public key of "
        "CAPTURE_DKIM_KEY_FILE)",
        "DMARC: policy quarantine (_dmarc.example.com: v=DMARC1; p=quarantine; "
        "rua=mailto:d@example.com)",
    ]
    assert dns_records.warnings(expected(key_file)) == []


def test_the_report_says_what_is_missing_or_differs(key_file, tmp_path):
    other = tmp_path / "other.pem"
    dkim.generate_key(other)
    records = {
        "mail.example.com": ["v=spf1 -all", "v=spf1 a ~all"],
        f"{SELECTOR}._domainkey.{DOMAIN}": [record_of(other)],
    }
    spf, dkim_line, dmarc = dns_records.report(expected(key_file), lookup_of(records))
    assert spf.startswith("SPF:   2 records at mail.example.com start with v=spf1")
    assert dkim_line.startswith("DKIM:  differs")
    assert dmarc == "DMARC: missing (no v=DMARC1 record at _dmarc.mail.example.com)"

    assert dns_records.report(expected(key_file), lookup_of({})) == [
        "SPF:   missing (no TXT record at mail.example.com starts with v=spf1)",
        f"DKIM:  missing (no DKIM record at {SELECTOR}._domainkey.{DOMAIN})",
        "DMARC: missing (no v=DMARC1 record at _dmarc.mail.example.com)",
    ]
    revoked = {f"{SELECTOR}._domainkey.{DOMAIN}": ["v=DKIM1; p="]}
    assert "revokes its key" in dns_records.dkim_line(expected(key_file).signer,
                                                      lookup_of(revoked))
    garbage = {f"{SELECTOR}._domainkey.{DOMAIN}": ["v=DKIM1; p=notbase64!"]}
    assert dns_records.dkim_line(expected(key_file).signer,
                                 lookup_of(garbage)).startswith("DKIM:  differs")


def test_the_report_without_dkim_settings_says_so():
    line = dns_records.dkim_line(None, lookup_of({}))
    assert line.startswith("DKIM:  not configured")


def test_a_dkim_domain_out_of_alignment_is_warned_about_not_refused(key_file):
    [warning] = dns_records.warnings(expected(key_file, from_domain="example.org"))
    assert "neither the From domain example.org nor a parent of it" in warning
    assert dns_records.warnings(expected(key_file, from_domain="example.com")) == []
    assert not dkim.aligned("ample.com", "example.com")


def test_unreachable_dns_is_one_plain_line(key_file):
    def unreachable(name):
        raise dns_records.DnsUnreachable("timed out")
    with pytest.raises(dns_records.DnsUnreachable):
        dns_records.report(expected(key_file), unreachable)


def test_mail_check_against_a_closed_port_says_dns_could_not_be_reached(app):
    result = app.test_cli_runner().invoke(
        args=["mail", "check", "--nameserver", f"127.0.0.1:{closed_udp_port()}",
              "--timeout", "0.5"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("DNS could not be reached")
    assert "nothing is known about the SPF, DKIM and DMARC records of localhost" in lines[0]


def test_mail_check_takes_a_nameserver_as_an_ip_address_with_an_optional_port(app):
    for good in ("192.0.2.1", "192.0.2.1:5353", "::1", "[2001:db8::1]:53"):
        dns_records.resolver_lookup(good)
    for bad in ("dns.example", "192.0.2.1:0", "192.0.2.1:dns"):
        with pytest.raises(ValueError):
            dns_records.resolver_lookup(bad)
    result = app.test_cli_runner().invoke(args=["mail", "check", "--nameserver", "dns.example"])
    assert result.exit_code == 2 and "not an IP address" in result.output


def test_mail_check_warns_about_an_unaligned_dkim_domain_before_the_dns_line(
        make_app, key_file):
    app = make_app(DKIM_DOMAIN="example.org", DKIM_SELECTOR=SELECTOR,
                   DKIM_KEY_FILE=str(key_file), MAIL_FROM="News <news@example.com>")
    result = app.test_cli_runner().invoke(
        args=["mail", "check", "--nameserver", f"127.0.0.1:{closed_udp_port()}",
              "--timeout", "0.5"])
    assert result.exit_code == 0
    assert "CAPTURE_DKIM_DOMAIN example.org is neither the From domain example.com" in \
        result.stderr
    assert result.stdout.startswith("DNS could not be reached")
