"""DKIM: the signing key (made, read, checked at start-up) and the signature on each message.

Every message is signed by `sign(message_bytes)` in backends.py, on the very bytes
that go out (a new MIME boundary is drawn each time a message is written, so the
signature can only cover the final bytes). The three settings come together or not
at all; start-up reads the key once and stops with one line when it cannot.
"""

import base64
import binascii
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask, current_app

from capture import domains
from capture.settings import PRIVATE_FILE, SettingError

# The settings that switch signing on, all three or none.
SETTINGS = ("DKIM_DOMAIN", "DKIM_SELECTOR", "DKIM_KEY_FILE")
# Header fields signed when the message has them: List-Unsubscribe and its one-click
# companion too, so no relay can add or alter the unsubscribe link under our name.
SIGNED_HEADERS = ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version",
                  "Content-Type", "List-Unsubscribe", "List-Unsubscribe-Post")
# Relaxed/relaxed survives what relays do to whitespace and header case.
CANONICALIZATION = (b"relaxed", b"relaxed")
KEY_BITS = 2048
# Receivers ignore signatures made with shorter keys (RFC 8301).
MIN_KEY_BITS = 1024
_SELECTOR = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# The DER prefix of an RSA SubjectPublicKeyInfo: rsaEncryption (1.2.840.113549.1.1.1).
_RSA_ALGORITHM = bytes.fromhex("300d06092a864886f70d0101010500")


class SigningError(Exception):
    """dkimpy could not sign a message (it has no From header field, say)."""


class NotAKey(ValueError):
    """A file that is not an unencrypted RSA private key in PEM."""


@dataclass(frozen=True)
class Signer:
    """What signs: the d= domain, the s= selector and the private key (PEM)."""

    domain: str
    selector: str
    key: bytes
    # The key loaded once by `cryptography`, which does the RSA operation in C.
    loaded: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        object.__setattr__(self, "loaded", load_pem_private_key(self.key, None))

    @property
    def record_name(self) -> str:
        """Where receivers look up the public key."""
        return f"{self.selector}._domainkey.{self.domain}"

    def sign(self, message: bytes) -> bytes:
        """The message with its DKIM-Signature header field in front."""
        present = {name.lower() for name in _header_names(message)}
        signed = [name.encode() for name in SIGNED_HEADERS if name.lower() in present]
        from capture.mail import dkim_signature  # dkimpy and cryptography, when signing

        try:
            signature = dkim_signature.sign(message, self, signed, CANONICALIZATION)
        except dkim_signature.DKIMException as error:
            raise SigningError(str(error)) from error
        return signature + message


def init_app(app: Flask) -> None:
    """Check the DKIM settings and read the key once: a Signer in app.extensions, or
    None when signing is off. Raises SettingError with one line."""
    config = app.config
    values = {name: str(config.get(name) or "").strip() for name in SETTINGS}
    missing = [f"CAPTURE_{name}" for name, value in values.items() if not value]
    if len(missing) == len(SETTINGS):
        app.extensions["capture_dkim"] = None
        return
    if missing:
        given = next(name for name, value in values.items() if value)
        raise SettingError(given, "DKIM signing needs CAPTURE_DKIM_DOMAIN, "
                           "CAPTURE_DKIM_SELECTOR and CAPTURE_DKIM_KEY_FILE together; "
                           f"missing: {', '.join(missing)}")
    try:
        domain = checked_domain(values["DKIM_DOMAIN"])
    except ValueError as error:
        raise SettingError("DKIM_DOMAIN", str(error)) from None
    try:
        selector = checked_selector(values["DKIM_SELECTOR"])
    except ValueError as error:
        raise SettingError("DKIM_SELECTOR", str(error)) from None
    path = values["DKIM_KEY_FILE"]
    try:
        key = Path(path).read_bytes()
    except OSError as error:
        raise SettingError("DKIM_KEY_FILE", f"cannot read {path}: "
                           f"{error.strerror or error}") from None
    try:
        key = read_private_key(key)
    except NotAKey as error:
        raise SettingError("DKIM_KEY_FILE", f"{path}: {error}") from None
    config["DKIM_DOMAIN"] = domain
    app.extensions["capture_dkim"] = Signer(domain, selector, key)


def configured_signer() -> Signer | None:
    """The app's Signer, or None when signing is off."""
    return current_app.extensions.get("capture_dkim")


def sign(message: bytes) -> bytes:
    """The message signed when DKIM is configured, else unchanged."""
    signer = configured_signer()
    return message if signer is None else signer.sign(message)


def checked_domain(value: str) -> str:
    """The domain in ASCII, lower-case; ValueError when it is none."""
    try:
        ascii_form = domains.to_ascii(domains.comparable(value)).lower()
    except domains.DomainError as error:
        raise ValueError(str(error)) from None
    labels = ascii_form.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{value!r} is not a domain like example.com")
    return ascii_form


def checked_selector(value: str) -> str:
    """The selector as given; ValueError when it cannot be one."""
    if not _SELECTOR.fullmatch(value):
        raise ValueError(f"{value!r} is not a selector (letters, digits, - and _, "
                         "labels parted by dots)")
    return value


def read_private_key(data: bytes) -> bytes:
    """The PEM of an RSA private key, line ends made LF (what dkimpy reads); NotAKey
    when it is not one, or too short for receivers to trust."""
    from capture.mail import dkim_signature as dkimpy

    pem = data.replace(b"\r\n", b"\n").strip() + b"\n"
    if b"ENCRYPTED" in pem:
        raise NotAKey("the key is encrypted; DKIM needs it unencrypted (mode 0600)")
    try:
        key = dkimpy.parse_pem_private_key(pem)
    except (dkimpy.UnparsableKeyError, dkimpy.ASN1FormatError, ValueError, IndexError,
            TypeError):
        raise NotAKey("not an RSA private key in PEM (BEGIN PRIVATE KEY or "
                        "BEGIN RSA PRIVATE KEY)") from None
    bits = key["modulus"].bit_length()
    if bits < MIN_KEY_BITS:
        raise NotAKey(f"a {bits}-bit key; receivers ignore keys under {MIN_KEY_BITS} bits")
    return pem


def public_key_of(pem: bytes) -> tuple[int, int]:
    """(modulus, public exponent) of a private key."""
    from capture.mail import dkim_signature as dkimpy

    key = dkimpy.parse_pem_private_key(pem)
    return key["modulus"], key["publicExponent"]


def public_key_base64(pem: bytes) -> str:
    """The p= value of the DNS record: the public key as a DER SubjectPublicKeyInfo."""
    modulus, exponent = public_key_of(pem)
    rsa_key = _der(0x30, _der_integer(modulus) + _der_integer(exponent))
    info = _der(0x30, _RSA_ALGORITHM + _der(0x03, b"\x00" + rsa_key))
    return base64.b64encode(info).decode("ascii")


def public_key_from_record(p_value: str) -> tuple[int, int] | None:
    """(modulus, public exponent) of a record's p= value; None when it is none."""
    from capture.mail import dkim_signature as dkimpy

    try:
        key = dkimpy.parse_public_key(base64.b64decode("".join(p_value.split()),
                                                       validate=True))
    except (binascii.Error, dkimpy.UnparsableKeyError, dkimpy.ASN1FormatError, ValueError,
            IndexError):
        return None
    return key["modulus"], key["publicExponent"]


def record_value(pem: bytes) -> str:
    """The TXT record's value for a private key."""
    return f"v=DKIM1; k=rsa; p={public_key_base64(pem)}"


def generate_key(path: Path, *, force: bool = False) -> bytes:
    """Write a new RSA 2048 private key to `path`, mode 0600 (dkimpy's key generator,
    which runs openssl); FileExistsError when the file exists and not `force`.
    RuntimeError when openssl cannot make the key."""
    from capture.mail import dkim_signature as dkimpy

    if path.exists() and not force:
        raise FileExistsError(str(path))
    with tempfile.TemporaryDirectory(prefix="capture-dkim-") as folder:
        made = Path(folder) / "key.pem"
        try:
            dkimpy.dknewkey.GenRSAKeys(str(made), verbose=False)
            pem = read_private_key(made.read_bytes())
        except (OSError, subprocess.CalledProcessError, NotAKey) as error:
            raise RuntimeError(f"{dkimpy.dknewkey.OPENSSL_BINARY} could not make the key: "
                               f"{error}") from None
    partial = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)
    os.chmod(partial, PRIVATE_FILE)  # a left-over partial file may have had another mode
    if force:
        os.replace(partial, path)
    else:
        try:
            os.link(partial, path)  # fails if the file appeared meanwhile
        finally:
            os.unlink(partial)
    return pem


def aligned(dkim_domain: str, from_domain: str) -> bool:
    """True when d= is the From domain or a parent of it (DMARC's relaxed alignment)."""
    ours = dkim_domain.lower().rstrip(".")
    try:
        theirs = domains.to_ascii(domains.comparable(from_domain)).lower()
    except domains.DomainError:
        return False
    return theirs == ours or theirs.endswith("." + ours)


def _header_names(message: bytes) -> list[str]:
    """The names of the message's top-level header fields."""
    head = message.split(b"\r\n\r\n", 1)[0]
    return [line.split(b":", 1)[0].decode("ascii", "replace").strip()
            for line in head.split(b"\r\n") if line and line[:1] not in (b" ", b"\t")]


def _der(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _der_integer(number: int) -> bytes:
    # One more byte than the bits need: a leading zero keeps a positive number positive.
    return _der(0x02, number.to_bytes(number.bit_length() // 8 + 1, "big"))
