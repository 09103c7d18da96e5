"""The email providers' bounce and complaint webhooks (Postmark, Mailgun, SendGrid):
real requests, signed in the test the provider's way, about a real sent email."""

import base64
import hashlib
import hmac
import json
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from sqlalchemy import func, select

from capture.db import db
from capture.mail import verp
from capture.mail.verp import Origin
from capture.models import Delivery, Event, Lead, Suppression
from capture.public import mail_hooks
from tests.factories import add_lead, three_steps, tick

EMAIL = "ann@example.com"
POSTMARK_AUTH = "hooks:s3cret-pass"
MAILGUN_KEY = "key-mailgun-signing"
SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())
SENDGRID_PUBLIC = base64.b64encode(SENDGRID_KEY.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()


@pytest.fixture
def smtp_app(make_app, smtp, tmp_path):
    folder = tmp_path / "sequences"
    folder.mkdir()
    return make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port,
                    SEQUENCES_DIR=str(folder), POSTAL_ADDRESS="1 Main St, Springfield",
                    BOUNCE_ADDRESS="bounces@mail.example.com",
                    POSTMARK_WEBHOOK_AUTH=POSTMARK_AUTH, MAILGUN_SIGNING_KEY=MAILGUN_KEY,
                    SENDGRID_PUBLIC_KEY=SENDGRID_PUBLIC)


@pytest.fixture
def sent(smtp_app, smtp):
    """A lead with one real delivery, sent through SMTP: (lead id, delivery id)."""
    three_steps(smtp_app)
    lead_id = add_lead(smtp_app, email=EMAIL)
    assert tick(smtp_app).sent == 1
    with smtp_app.app_context():
        delivery = db.session.scalar(select(Delivery).where(Delivery.lead_id == lead_id))
        assert delivery.message_id
        return lead_id, delivery.id


@pytest.fixture(autouse=True)
def _forget_tokens():
    mail_hooks._seen_tokens.clear()


def _state(app, lead_id):
    with app.app_context():
        lead = db.session.get(Lead, lead_id)
        kinds = sorted(db.session.scalars(select(Event.kind).where(
            Event.lead_id == lead_id, Event.kind.in_(("bounce", "soft_bounce", "complaint")))))
        suppressed = db.session.scalar(select(func.count(Suppression.id)).where(
            Suppression.email == lead.email))
        return lead.subscription, kinds, suppressed


# --- Postmark ------------------------------------------------------------------------

def _postmark(app, body, auth=POSTMARK_AUTH):
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return app.test_client().post("/hooks/mail/postmark", data=data, headers=headers)


def _postmark_bounce(kind="HardBounce", email=EMAIL, record="Bounce"):
    return {"RecordType": record, "Type": kind, "TypeCode": 1, "MessageID": "pm-1",
            "Email": email, "Description": "The server was unable to deliver",
            "Details": "smtp;550 5.1.1 The email account does not exist", "Metadata": {}}


def test_postmark_hard_bounce_bounces_and_suppresses_once(smtp_app, sent):
    lead_id, _ = sent
    response = _postmark(smtp_app, _postmark_bounce())
    assert response.status_code == 200
    assert response.get_json() == {"ok": True, "changed": 1, "ignored": 0}
    assert _state(smtp_app, lead_id) == ("bounced", ["bounce"], 1)
    again = _postmark(smtp_app, _postmark_bounce())
    assert again.get_json() == {"ok": True, "changed": 0, "ignored": 0}
    assert _state(smtp_app, lead_id) == ("bounced", ["bounce"], 1)


def test_postmark_spam_complaint_unsubscribes(smtp_app, sent):
    lead_id, _ = sent
    body = _postmark_bounce(kind="SpamComplaint", record="SpamComplaint")
    assert _postmark(smtp_app, body).status_code == 200
    assert _state(smtp_app, lead_id) == ("unsubscribed", ["complaint"], 1)


def test_postmark_wrong_or_missing_auth_is_403_and_changes_nothing(smtp_app, sent):
    lead_id, _ = sent
    for auth in ("hooks:wrong", None, "hooks"):
        assert _postmark(smtp_app, _postmark_bounce(), auth=auth).status_code == 403
    assert _state(smtp_app, lead_id) == ("subscribed", [], 0)


def test_postmark_malformed_json_is_400(smtp_app, sent):
    assert _postmark(smtp_app, b"{not json").status_code == 400
    assert _postmark(smtp_app, "[1, 2]").status_code == 400
    assert _state(smtp_app, sent[0]) == ("subscribed", [], 0)


def test_unknown_recipient_and_other_records_are_ignored(smtp_app, sent):
    response = _postmark(smtp_app, _postmark_bounce(email="nobody@example.org"))
    assert (response.status_code, response.get_json()) == (
        200, {"ok": True, "changed": 0, "ignored": 1})
    delivery = {"RecordType": "Delivery", "Email": EMAIL}
    assert _postmark(smtp_app, delivery).get_json()["ignored"] == 1
    assert _state(smtp_app, sent[0]) == ("subscribed", [], 0)


# --- Mailgun -------------------------------------------------------------------------

def _mailgun_signature(timestamp=None, token="tok-1", key=MAILGUN_KEY):
    timestamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256)
    return {"timestamp": timestamp, "token": token, "signature": signature.hexdigest()}


def _mailgun(app, event, signature=None):
    body = {"signature": signature or _mailgun_signature(), "event-data": event}
    return app.test_client().post("/hooks/mail/mailgun", json=body)


def _mailgun_failed(severity="permanent", **extra):
    return {"event": "failed", "severity": severity, "recipient": EMAIL,
            "delivery-status": {"description": "No such mailbox", "code": 550}, **extra}


def test_mailgun_permanent_failure_names_the_email_by_verp(smtp_app, sent):
    lead_id, delivery_id = sent
    with smtp_app.app_context():
        sender = verp.envelope_sender(Origin("delivery", delivery_id))
    event = _mailgun_failed(recipient="someone-else@example.org", envelope={"sender": sender})
    assert _mailgun(smtp_app, event).get_json() == {"ok": True, "changed": 1, "ignored": 0}
    assert _state(smtp_app, lead_id) == ("bounced", ["bounce"], 1)
    with smtp_app.app_context():
        assert db.session.scalar(select(Event.delivery_id).where(
            Event.kind == "bounce")) == delivery_id


def test_mailgun_temporary_failures_are_counted(smtp_app, sent):
    lead_id, delivery_id = sent
    with smtp_app.app_context():
        message_id = db.session.get(Delivery, delivery_id).message_id.strip("<>")
    event = _mailgun_failed("temporary", message={"headers": {"message-id": message_id}})
    assert _mailgun(smtp_app, event).get_json()["changed"] == 1
    assert _state(smtp_app, lead_id) == ("subscribed", ["soft_bounce"], 0)
    # The same event again (a new signature): still one soft bounce for this email.
    signature = _mailgun_signature(token="tok-2")
    assert _mailgun(smtp_app, event, signature).get_json()["changed"] == 0
    assert _state(smtp_app, lead_id) == ("subscribed", ["soft_bounce"], 0)


def test_mailgun_complaint(smtp_app, sent):
    assert _mailgun(smtp_app, {"event": "complained", "recipient": EMAIL}).status_code == 200
    assert _state(smtp_app, sent[0]) == ("unsubscribed", ["complaint"], 1)


def test_mailgun_bad_old_or_replayed_signature_is_403(smtp_app, sent):
    bad = {**_mailgun_signature(), "signature": "0" * 64}
    assert _mailgun(smtp_app, _mailgun_failed(), bad).status_code == 403
    wrong_key = _mailgun_signature(key="another-key")
    assert _mailgun(smtp_app, _mailgun_failed(), wrong_key).status_code == 403
    old = _mailgun_signature(timestamp=int(time.time()) - 6 * 60, token="tok-old")
    response = _mailgun(smtp_app, _mailgun_failed(), old)
    assert (response.status_code, response.get_json()["error"]) == (403, "stale timestamp")
    assert _state(smtp_app, sent[0]) == ("subscribed", [], 0)
    signature = _mailgun_signature(token="tok-once")
    complained = {"event": "complained", "recipient": EMAIL}
    assert _mailgun(smtp_app, complained, signature).status_code == 200
    replay = _mailgun(smtp_app, complained, signature)
    assert (replay.status_code, replay.get_json()["error"]) == (403, "replayed token")


def test_mailgun_malformed_is_400(smtp_app, sent):
    client = smtp_app.test_client()
    assert client.post("/hooks/mail/mailgun", data="{oops",
                       content_type="application/json").status_code == 400
    assert client.post("/hooks/mail/mailgun", json={"event-data": {}}).status_code == 400
    no_event = client.post("/hooks/mail/mailgun", json={"signature": _mailgun_signature()})
    assert no_event.status_code == 400
    assert _state(smtp_app, sent[0]) == ("subscribed", [], 0)


# --- SendGrid ------------------------------------------------------------------------

def _sendgrid(app, events, key=SENDGRID_KEY, timestamp=None, raw=None):
    body = raw if raw is not None else json.dumps(events).encode()
    timestamp = timestamp or str(int(time.time()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    headers = {mail_hooks.SENDGRID_SIGNATURE: base64.b64encode(signature).decode(),
               mail_hooks.SENDGRID_TIMESTAMP: timestamp}
    return app.test_client().post("/hooks/mail/sendgrid", data=body, headers=headers,
                                  content_type="application/json")


def test_sendgrid_bounce_blocked_and_spamreport(smtp_app, sent):
    lead_id, delivery_id = sent
    with smtp_app.app_context():
        message_id = db.session.get(Delivery, delivery_id).message_id
    blocked = {"event": "bounce", "type": "blocked", "email": EMAIL, "smtp-id": message_id,
               "reason": "450 mailbox busy"}
    processed = {"event": "processed", "email": EMAIL}
    response = _sendgrid(smtp_app, [blocked, processed])
    assert response.get_json() == {"ok": True, "changed": 1, "ignored": 1}
    assert _state(smtp_app, lead_id) == ("subscribed", ["soft_bounce"], 0)
    spam = {"event": "spamreport", "email": EMAIL}
    assert _sendgrid(smtp_app, [spam]).get_json()["changed"] == 1
    assert _state(smtp_app, lead_id) == ("unsubscribed", ["complaint", "soft_bounce"], 1)


def test_sendgrid_hard_bounce(smtp_app, sent):
    bounce = {"event": "bounce", "type": "bounce", "email": EMAIL.upper(),
              "reason": "550 5.1.1 no such user"}
    assert _sendgrid(smtp_app, [bounce, bounce]).get_json() == {
        "ok": True, "changed": 1, "ignored": 0}
    assert _state(smtp_app, sent[0]) == ("bounced", ["bounce"], 1)


def test_sendgrid_bad_signature_is_403(smtp_app, sent):
    events = [{"event": "bounce", "type": "bounce", "email": EMAIL}]
    other_key = ec.generate_private_key(ec.SECP256R1())
    assert _sendgrid(smtp_app, events, key=other_key).status_code == 403
    body = json.dumps(events).encode()
    tampered = smtp_app.test_client().post(
        "/hooks/mail/sendgrid", data=body.replace(b"bounce", b"bounce "),
        headers={mail_hooks.SENDGRID_SIGNATURE: "bm90IGEgc2lnbmF0dXJl",
                 mail_hooks.SENDGRID_TIMESTAMP: "1"}, content_type="application/json")
    assert tampered.status_code == 403
    no_headers = smtp_app.test_client().post("/hooks/mail/sendgrid", data=body)
    assert no_headers.status_code == 403


def test_sendgrid_key_may_be_pasted_with_pem_armour(smtp_app, sent):
    smtp_app.config["SENDGRID_PUBLIC_KEY"] = (
        f"-----BEGIN PUBLIC KEY-----\n{SENDGRID_PUBLIC}\n-----END PUBLIC KEY-----\n")
    assert _sendgrid(smtp_app, [{"event": "spamreport", "email": EMAIL}]).status_code == 200
    smtp_app.config["SENDGRID_PUBLIC_KEY"] = "not a key"
    assert _sendgrid(smtp_app, [{"event": "spamreport", "email": EMAIL}]).status_code == 403


def test_sendgrid_refused_request_changes_nothing(smtp_app, sent):
    events = [{"event": "spamreport", "email": EMAIL}]
    assert _sendgrid(smtp_app, events, key=ec.generate_private_key(ec.SECP256R1())) \
        .status_code == 403
    assert _state(smtp_app, sent[0]) == ("subscribed", [], 0)


def test_sendgrid_malformed_is_400(smtp_app, sent):
    assert _sendgrid(smtp_app, None, raw=b"[{broken").status_code == 400
    assert _sendgrid(smtp_app, None, raw=b'{"event": "bounce"}').status_code == 400
    assert _sendgrid(smtp_app, None, raw=b"[1]").status_code == 400
    assert _state(smtp_app, sent[0]) == ("subscribed", [], 0)


# --- not configured ------------------------------------------------------------------

def test_unconfigured_providers_answer_404(make_app):
    app = make_app()
    client = app.test_client()
    for provider in ("postmark", "mailgun", "sendgrid", "ses"):
        response = client.post(f"/hooks/mail/{provider}", json={})
        assert response.status_code == 404
        assert response.get_json() == {"ok": False, "error": "not configured"}


# --- Amazon SES through SNS -----------------------------------------------------------

TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-feedback"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem"


def _certificate():
    from datetime import datetime, timedelta, timezone

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(1)
                   .not_valid_before(now - timedelta(days=1))
                   .not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256()))
    return key, certificate.public_bytes(serialization.Encoding.PEM)


SNS_KEY, SNS_PEM = _certificate()


@pytest.fixture
def fetched(monkeypatch):
    from capture.mail import sns

    sns._certificates.clear()
    urls = []

    def fetch(url):
        assert sns.is_sns_url(url)
        urls.append(url)
        return SNS_PEM if url == CERT_URL else b"<ConfirmSubscriptionResponse/>"

    monkeypatch.setattr(sns, "fetch", fetch)
    return urls


@pytest.fixture
def ses_app(smtp_app):
    smtp_app.config["SES_TOPIC_ARNS"] = f"arn:aws:sns:us-east-1:1:other, {TOPIC}"
    return smtp_app


def _sns(app, message, *, key=SNS_KEY, version="2", cert_url=CERT_URL, topic=TOPIC):
    from capture.mail import sns

    message = {"MessageId": "m-1", "TopicArn": topic, "Timestamp": "2026-12-04T18:00:00Z",
               "SignatureVersion": version, "SigningCertURL": cert_url, **message}
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(sns.signed_text(message), padding.PKCS1v15(), algorithm)
    message["Signature"] = base64.b64encode(signature).decode()
    return app.test_client().post("/hooks/mail/ses", data=json.dumps(message),
                                  content_type="text/plain; charset=UTF-8")


def _ses_notification(kind="Bounce", bounce_type="Permanent", email=EMAIL):
    body = {"notificationType": kind, "mail": {"source": "news@example.com",
                                                "commonHeaders": {}}}
    if kind == "Bounce":
        body["bounce"] = {"bounceType": bounce_type, "bounceSubType": "General",
                          "bouncedRecipients": [{"emailAddress": email,
                                                 "diagnosticCode": "smtp; 550 5.1.1"}]}
    else:
        body["complaint"] = {"complainedRecipients": [{"emailAddress": email}],
                             "complaintFeedbackType": "abuse"}
    return {"Type": "Notification", "Message": json.dumps(body)}


def test_ses_permanent_bounce_transient_and_complaint(ses_app, sent, fetched):
    lead_id, _ = sent
    response = _sns(ses_app, _ses_notification(bounce_type="Transient"), version="1")
    assert response.get_json() == {"ok": True, "changed": 1, "ignored": 0}
    assert _state(ses_app, lead_id) == ("subscribed", ["soft_bounce"], 0)
    assert _sns(ses_app, _ses_notification()).get_json()["changed"] == 1
    assert _state(ses_app, lead_id) == ("bounced", ["bounce", "soft_bounce"], 1)
    assert _sns(ses_app, _ses_notification()).get_json()["changed"] == 0
    assert _sns(ses_app, _ses_notification("Complaint")).get_json()["changed"] == 1
    assert _state(ses_app, lead_id)[1] == ["bounce", "complaint", "soft_bounce"]
    assert fetched == [CERT_URL]  # the certificate, once


def test_ses_unknown_recipient_is_ignored(ses_app, sent, fetched):
    response = _sns(ses_app, _ses_notification(email="nobody@example.org"))
    assert response.get_json() == {"ok": True, "changed": 0, "ignored": 1}


def test_ses_unsigned_foreign_or_wrong_topic_is_403(ses_app, sent, fetched):
    other_key, _ = _certificate()
    assert _sns(ses_app, _ses_notification(), key=other_key).status_code == 403
    assert _sns(ses_app, _ses_notification(), topic="arn:aws:sns:x:1:t").status_code == 403
    for url in ("https://evil.example.com/cert.pem", "http://sns.eu-west-1.amazonaws.com/a.pem",
                "https://sns.eu-west-1.amazonaws.com.evil.com/a.pem"):
        assert _sns(ses_app, _ses_notification(), cert_url=url).status_code == 403
    assert _state(ses_app, sent[0]) == ("subscribed", [], 0)
    assert fetched == [CERT_URL]


def test_ses_malformed_is_400(ses_app, sent, fetched):
    client = ses_app.test_client()
    assert client.post("/hooks/mail/ses", data="{nope",
                       content_type="text/plain").status_code == 400
    assert _sns(ses_app, {"Type": "Notification", "Message": "not json"}).status_code == 400


def test_ses_subscription_is_confirmed(ses_app, fetched):
    subscribe = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=t"
    response = _sns(ses_app, {"Type": "SubscriptionConfirmation", "Token": "t",
                              "Message": "You have chosen to subscribe",
                              "SubscribeURL": subscribe})
    assert response.get_json() == {"ok": True, "subscribed": TOPIC}
    assert fetched == [CERT_URL, subscribe]
