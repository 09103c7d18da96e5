"""Amazon SNS message signatures: whether a message posted to us (SES's bounce and
complaint notifications) was signed by SNS.

The signing certificate is fetched from `SigningCertURL`, only over HTTPS from an SNS
host (`sns.<region>.amazonaws.com`) and kept per process; the signature (SHA1 for
SignatureVersion 1, SHA256 for 2) is over the message's fields in AWS's order.
`cryptography` is loaded when a message is checked, not in every web worker.
"""

import base64
import binascii
import re
import threading
import urllib.request
from urllib.parse import urlsplit


_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")
_NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_SUBSCRIPTION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                        "TopicArn", "Type")
_HASHES = {"1": "SHA1", "2": "SHA256"}  # SignatureVersion → cryptography's hash
FETCH_TIMEOUT = 10

_certificates: dict = {}  # URL → cryptography's x509.Certificate
_lock = threading.Lock()


def is_sns_url(url: str) -> bool:
    """An HTTPS URL on an SNS host (no user, no port)."""
    parts = urlsplit(url or "")
    return (parts.scheme == "https" and parts.username is None and parts.port is None
            and bool(_HOST.fullmatch(parts.hostname or "")))


def fetch(url: str) -> bytes:
    """GET an SNS URL (the certificate, or a subscription's SubscribeURL)."""
    if not is_sns_url(url):
        raise ValueError(f"not an SNS URL: {url}")
    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as response:  # noqa: S310
        return response.read(100_000)


def _certificate(url: str):
    from cryptography import x509

    with _lock:
        known = _certificates.get(url)
    if known is not None:
        return known
    certificate = x509.load_pem_x509_certificate(fetch(url))
    with _lock:
        _certificates[url] = certificate
    return certificate


def signed_text(message: dict) -> bytes:
    """The text SNS signs: `name\\nvalue\\n` for each field present, in AWS's order."""
    fields = _NOTIFICATION_FIELDS if message.get("Type") == "Notification" \
        else _SUBSCRIPTION_FIELDS
    return "".join(f"{name}\n{message[name]}\n" for name in fields
                   if isinstance(message.get(name), str)).encode("utf-8")


def verified(message: dict) -> bool:
    """Whether SNS signed this message, by a certificate from an SNS host."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    algorithm = _HASHES.get(str(message.get("SignatureVersion", "")))
    url, signature = message.get("SigningCertURL"), message.get("Signature")
    if algorithm is None or not isinstance(signature, str) or not isinstance(url, str) \
            or not is_sns_url(url) or not url.endswith(".pem"):
        return False
    try:
        key = _certificate(url).public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            return False
        key.verify(base64.b64decode(signature, validate=True), signed_text(message),
                   padding.PKCS1v15(), getattr(hashes, algorithm)())
    except (InvalidSignature, binascii.Error, ValueError, OSError):
        return False
    return True
