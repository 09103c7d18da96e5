"""Blueprint for the email providers' bounce and complaint webhooks: Postmark, Mailgun,
SendGrid and SES (through SNS), each verified the provider's way, each event handed to
`mail.bounces`.

Answers (JSON): 404 when the provider's setting is empty (not configured), 403 when
the request is not the provider's (nothing changed), 400 for a body that is not the
provider's JSON, else 200 `{"ok": true, "changed": n, "ignored": n}`: events about
no email of ours, or of another kind (deliveries, opens), are ignored, never refused,
since a provider retries every answer but 2xx.

Which email an event is about, most trusted first: our VERP envelope sender when the
provider echoes it (Mailgun's `envelope.sender`), our own Message-ID when it does
(Mailgun's `message.headers.message-id`, SendGrid's `smtp-id`, SES's
`mail.commonHeaders.messageId`), else the recipient's
address: that lead's most recent sent email (its confirmation email when it has no
delivery). The actions are idempotent per email and kind, so a repeated event, a
retry or a replay changes nothing.
"""

import base64
import binascii
import hashlib
import hmac
import json
import threading
import time

from flask import Blueprint, current_app, request
from sqlalchemy import func, select

from capture.db import csrf, db
from capture.mail import bounces, sns, verp
from capture.mail.verp import Origin
from capture.models import Delivery, Lead

bp = Blueprint("mail_hooks", __name__)

HARD, SOFT, COMPLAINT = "hard", "soft", "complaint"
# Mailgun: a signature older (or further ahead) than this is refused, and its token is
# remembered this long.
MAILGUN_WINDOW_SECONDS = 5 * 60
_POSTMARK_HARD = {"HardBounce", "BadEmailAddress"}
_POSTMARK_SOFT = {"SoftBounce", "Transient", "DnsError"}


class Refused(Exception):
    """Not the provider's request (403) or not its JSON (400)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _answer_error(error: Refused):
    return {"ok": False, "error": str(error)}, error.status


def _not_configured():
    return {"ok": False, "error": "not configured"}, 404


def _json_body(kind: type):
    """The request's body as JSON of this type (dict or list), else 400."""
    try:
        data = json.loads(request.get_data(cache=True) or b"")
    except (ValueError, UnicodeDecodeError):
        raise Refused(400, "the body is not JSON") from None
    if not isinstance(data, kind):
        raise Refused(400, f"the body is not a JSON {'object' if kind is dict else 'array'}")
    return data


# --- which email an event is about ---------------------------------------------------

def _text(value) -> str:
    return value.strip() if isinstance(value, str) else ""


def _by_message_id(message_id: str) -> Origin | None:
    """The delivery our Message-ID names (with or without its angle brackets)."""
    message_id = message_id.strip().strip("<>")
    if not message_id or len(message_id) > 250:
        return None
    delivery_id = db.session.scalar(select(Delivery.id).where(
        Delivery.message_id == f"<{message_id}>").limit(1))
    return Origin("delivery", delivery_id) if delivery_id is not None else None


def _by_recipient(email: str) -> Origin | None:
    """The most recent sent email to the lead with this address: its last delivery,
    else its confirmation email; None for an address that is no lead's."""
    email = email.strip().strip("<>").lower()
    if "@" not in email or len(email) > 254:
        return None
    lead_id = db.session.scalar(select(Lead.id).where(func.lower(Lead.email) == email))
    if lead_id is None:
        return None
    delivery_id = db.session.scalar(
        select(Delivery.id).where(Delivery.lead_id == lead_id, Delivery.status == "sent")
        .order_by(Delivery.sent_at.desc(), Delivery.id.desc()).limit(1))
    if delivery_id is not None:
        return Origin("delivery", delivery_id)
    return Origin("confirmation", lead_id)


def _target(*, sender: str = "", message_id: str = "", recipient: str = ""):
    """The lead (and delivery) an event is about, or None."""
    origin = ((verp.origin_of(sender) if sender else None)
              or (_by_message_id(message_id) if message_id else None)
              or (_by_recipient(recipient) if recipient else None))
    return bounces.target_of(origin) if origin is not None else None


def _act(kind: str | None, detail: str, **where) -> bool | None:
    """Apply one event: True changed, False already done, None ignored (another kind
    of event, or about no email of ours)."""
    if kind is None:
        return None
    target = _target(**where)
    if target is None:
        return None
    detail = detail or kind
    if kind == HARD:
        return bounces.hard_bounce(target, detail)
    if kind == SOFT:
        return bounces.soft_bounce(target, detail)
    return bounces.complaint(target, detail)


def _answer(outcomes: list[bool | None]):
    return {"ok": True, "changed": sum(1 for outcome in outcomes if outcome),
            "ignored": sum(1 for outcome in outcomes if outcome is None)}, 200


# --- Postmark: HTTP Basic auth -------------------------------------------------------

def _postmark_verified(expected: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(given, expected.encode("utf-8"))


def _postmark_kind(data: dict) -> str | None:
    record, kind = data.get("RecordType"), data.get("Type")
    if record == "SpamComplaint" or kind == "SpamComplaint":
        return COMPLAINT
    if record != "Bounce":
        return None
    return HARD if kind in _POSTMARK_HARD else SOFT if kind in _POSTMARK_SOFT else None


@bp.post("/hooks/mail/postmark")
@csrf.exempt
def postmark():
    """Postmark's Bounce and Spam Complaint webhooks, behind HTTP Basic auth
    (`https://user:password@…/hooks/mail/postmark`)."""
    expected = current_app.config.get("POSTMARK_WEBHOOK_AUTH") or ""
    if ":" not in expected:
        return _not_configured()
    try:
        if not _postmark_verified(expected):
            raise Refused(403, "bad credentials")
        data = _json_body(dict)
    except Refused as error:
        return _answer_error(error)
    metadata = data.get("Metadata") if isinstance(data.get("Metadata"), dict) else {}
    detail = _text(data.get("Details")) or _text(data.get("Description")) or \
        _text(data.get("Type"))
    return _answer([_act(_postmark_kind(data), detail,
                         message_id=_text(metadata.get("message_id")),
                         recipient=_text(data.get("Email")))])


# --- Mailgun: HMAC-SHA256 of timestamp + token ----------------------------------------

_seen_tokens: dict[str, float] = {}
_seen_lock = threading.Lock()


def _fresh_token(token: str, now: float) -> bool:
    """True the first time a token is seen within the window (kept in this process:
    a replay to another worker still changes nothing, the actions being idempotent)."""
    with _seen_lock:
        for old in [key for key, at in _seen_tokens.items()
                    if at < now - MAILGUN_WINDOW_SECONDS]:
            del _seen_tokens[old]
        if token in _seen_tokens:
            return False
        _seen_tokens[token] = now
        return True


def _mailgun_verify(key: str, signature) -> None:
    if not isinstance(signature, dict):
        raise Refused(400, "no signature object")
    timestamp, token, given = (_text(signature.get(name)) for name in
                               ("timestamp", "token", "signature"))
    if not timestamp.isdigit() or not token or not given:
        raise Refused(403, "bad signature")
    expected = hmac.new(key.encode("utf-8"), (timestamp + token).encode("utf-8"),
                        hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given.lower()):
        raise Refused(403, "bad signature")
    now = time.time()
    if abs(now - int(timestamp)) > MAILGUN_WINDOW_SECONDS:
        raise Refused(403, "stale timestamp")
    if not _fresh_token(token, now):
        raise Refused(403, "replayed token")


def _mailgun_kind(event: dict) -> str | None:
    name = event.get("event")
    if name == "complained":
        return COMPLAINT
    if name != "failed":
        return None
    severity = event.get("severity")
    return HARD if severity == "permanent" else SOFT if severity == "temporary" else None


@bp.post("/hooks/mail/mailgun")
@csrf.exempt
def mailgun():
    """Mailgun's event webhooks (`failed`, `complained`), signed with the HTTP
    webhook signing key."""
    key = current_app.config.get("MAILGUN_SIGNING_KEY") or ""
    if not key:
        return _not_configured()
    try:
        data = _json_body(dict)
        _mailgun_verify(key, data.get("signature"))
        event = data.get("event-data")
        if not isinstance(event, dict):
            raise Refused(400, "no event-data object")
    except Refused as error:
        return _answer_error(error)
    message = event.get("message") if isinstance(event.get("message"), dict) else {}
    headers = message.get("headers") if isinstance(message.get("headers"), dict) else {}
    envelope = event.get("envelope") if isinstance(event.get("envelope"), dict) else {}
    status = event.get("delivery-status")
    status = status if isinstance(status, dict) else {}
    detail = _text(status.get("description")) or _text(status.get("message")) or \
        _text(event.get("reason"))
    return _answer([_act(_mailgun_kind(event), detail,
                         sender=_text(envelope.get("sender")),
                         message_id=_text(headers.get("message-id")),
                         recipient=_text(event.get("recipient")))])


# --- SendGrid: ECDSA signed event webhook ---------------------------------------------

SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"


def _sendgrid_verified(public_key: str) -> bool:
    # `cryptography` is loaded here, not in every web worker.
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    signature = request.headers.get(SENDGRID_SIGNATURE, "")
    timestamp = request.headers.get(SENDGRID_TIMESTAMP, "")
    if not signature or not timestamp:
        return False
    # The key as SendGrid shows it (base64 DER); PEM armour lines are tolerated.
    encoded = "".join(line.strip() for line in public_key.splitlines()
                      if not line.strip().startswith("-----"))
    try:
        key = load_der_public_key(base64.b64decode(encoded))
    except (binascii.Error, ValueError, TypeError):
        key = None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        current_app.logger.error("CAPTURE_SENDGRID_PUBLIC_KEY is not an ECDSA public key")
        return False
    try:
        key.verify(base64.b64decode(signature, validate=True),
                   timestamp.encode("utf-8") + request.get_data(cache=True),
                   ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError, TypeError):
        return False
    return True


def _sendgrid_kind(event: dict) -> str | None:
    name = event.get("event")
    if name == "spamreport":
        return COMPLAINT
    if name == "dropped":
        return HARD
    if name != "bounce":
        return None
    return SOFT if event.get("type") == "blocked" else HARD


@bp.post("/hooks/mail/sendgrid")
@csrf.exempt
def sendgrid():
    """SendGrid's Signed Event Webhook (`bounce`, `dropped`, `spamreport`): an ECDSA
    P-256 signature over the timestamp header and the raw body."""
    public_key = current_app.config.get("SENDGRID_PUBLIC_KEY") or ""
    if not public_key.strip():
        return _not_configured()
    try:
        if not _sendgrid_verified(public_key):
            raise Refused(403, "bad signature")
        data = _json_body(list)
        if not all(isinstance(event, dict) for event in data):
            raise Refused(400, "each event must be a JSON object")
    except Refused as error:
        return _answer_error(error)
    outcomes = []
    for event in data:
        detail = _text(event.get("reason")) or _text(event.get("status")) or \
            _text(event.get("event"))
        outcomes.append(_act(_sendgrid_kind(event), detail,
                             message_id=_text(event.get("smtp-id")),
                             recipient=_text(event.get("email"))))
    return _answer(outcomes)


# --- Amazon SES through SNS: the message signature ------------------------------------

def _ses_kind(notification: dict) -> str | None:
    kind = notification.get("notificationType") or notification.get("eventType")
    if kind == "Complaint":
        return COMPLAINT
    bounce = notification.get("bounce") if isinstance(notification.get("bounce"), dict) \
        else {}
    if kind != "Bounce":
        return None
    return {"Permanent": HARD, "Transient": SOFT}.get(bounce.get("bounceType"))


def _ses_events(notification: dict) -> list[bool | None]:
    kind = _ses_kind(notification)
    part = notification.get("complaint" if kind == COMPLAINT else "bounce")
    part = part if isinstance(part, dict) else {}
    mail = notification.get("mail") if isinstance(notification.get("mail"), dict) else {}
    common = mail.get("commonHeaders") if isinstance(mail.get("commonHeaders"), dict) \
        else {}
    listed = part.get("complainedRecipients" if kind == COMPLAINT else "bouncedRecipients")
    recipients = [item for item in listed if isinstance(item, dict)] \
        if isinstance(listed, list) else []
    detail = _text(part.get("complaintFeedbackType")) or _text(part.get("bounceSubType"))
    return [_act(kind, _text(item.get("diagnosticCode")) or detail,
                 sender=_text(mail.get("source")),
                 message_id=_text(common.get("messageId")),
                 recipient=_text(item.get("emailAddress")))
            for item in recipients] or [None]


@bp.post("/hooks/mail/ses")
@csrf.exempt
def ses():
    """Amazon SES bounce and complaint notifications, delivered by SNS from one of the
    topics of CAPTURE_SES_TOPIC_ARNS; a subscription to one of them is confirmed."""
    topics = {arn.strip() for arn in
              (current_app.config.get("SES_TOPIC_ARNS") or "").split(",") if arn.strip()}
    if not topics:
        return _not_configured()
    try:
        message = _json_body(dict)
        if message.get("TopicArn") not in topics or not sns.verified(message):
            raise Refused(403, "not signed by SNS for a topic of ours")
        notification = None
        if message.get("Type") == "Notification":
            notification = json.loads(message.get("Message") or "")
            if not isinstance(notification, dict):
                raise ValueError
    except Refused as error:
        return _answer_error(error)
    except (ValueError, TypeError):
        return _answer_error(Refused(400, "the SNS message holds no JSON notification"))
    if message.get("Type") == "SubscriptionConfirmation":
        try:
            sns.fetch(_text(message.get("SubscribeURL")))
        except (ValueError, OSError) as error:
            current_app.logger.error("SNS subscription not confirmed: %s", error)
            return {"ok": False, "error": "subscription not confirmed"}, 502
        return {"ok": True, "subscribed": message["TopicArn"]}, 200
    if notification is None:
        return _answer([None])
    return _answer(_ses_events(notification))
