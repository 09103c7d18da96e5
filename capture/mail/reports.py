"""Reading one message of the bounce mailbox: a delivery status notification (RFC
3464), a complaint (RFC 5965 ARF), an auto-reply, or something else.

Which email a report is about comes from our VERP address (capture.mail.verp), never
from the addresses the report quotes (anyone can write those):
- a DSN is sent *to* the envelope sender, so the VERP address is among the report's
  own recipient headers (Delivered-To, X-Original-To, To …);
- an ARF report goes to the provider's feedback address; the original message inside
  it carries the VERP address in the Return-Path its receiving server added (or the
  report's own Original-Mail-From field says it).
A report with no genuine VERP address has no `origin`: it is left alone.
"""

import email
import email.policy
import re
from dataclasses import dataclass
from email.message import Message
from email.utils import getaddresses

from capture.mail import verp
from capture.mail.verp import Origin

# What a message is; only HARD, SOFT and COMPLAINT are acted upon.
HARD, SOFT, COMPLAINT = "hard bounce", "soft bounce", "complaint"
AUTO_REPLY, OTHER = "auto-reply", "unrecognised"

# Where a DSN's recipient (our VERP address) may be written, most exact first.
_RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To",
                      "To", "Cc")
_OUT_OF_OFFICE = re.compile(r"out of (the )?office|auto(matic)?[ -]?reply|abwesenheit|"
                            r"absence|vacation", re.IGNORECASE)
_STATUS = re.compile(r"\b([245])\.\d{1,3}\.\d{1,3}\b")


@dataclass
class Report:
    """What one message says: its `kind`, the email it is about (None when it names
    none of ours), and the receiving server's words (or the feedback type)."""

    kind: str
    origin: Origin | None = None
    detail: str = ""

    @property
    def actionable(self) -> bool:
        """A bounce or complaint about one of our emails."""
        return self.kind in (HARD, SOFT, COMPLAINT) and self.origin is not None


def parse(raw: bytes) -> Report:
    """What the message in `raw` (as the mailbox holds it) is."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    if message.get_content_type() == "multipart/report":
        report_type = (message.get_param("report-type") or "").lower()
        if report_type == "delivery-status":
            return _delivery_status(message)
        if report_type == "feedback-report":
            return _feedback(message)
    if _auto_reply(message):
        return Report(AUTO_REPLY)
    return Report(OTHER)


def _auto_reply(message: Message) -> bool:
    """An out-of-office or other automatic answer (RFC 3834 and the common headers)."""
    submitted = (message.get("Auto-Submitted") or "").strip().lower()
    return (submitted.startswith("auto-") or message.get("X-Autoreply") is not None
            or message.get("X-Autorespond") is not None
            or (message.get("Precedence") or "").strip().lower() == "auto_reply"
            or bool(_OUT_OF_OFFICE.search(str(message.get("Subject") or ""))))


def _parts(message: Message, content_type: str) -> list[Message]:
    return [part for part in message.walk() if part.get_content_type() == content_type]


def _field_blocks(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status or message/feedback-report part
    (the parser gives a list of them; a part it could not split, one block)."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    text = payload if isinstance(payload, str) else ""
    return [email.message_from_string(chunk + "\n") for chunk in re.split(r"\r?\n\r?\n", text)
            if chunk.strip()]


def _delivery_status(message: Message) -> Report:
    """A DSN: hard for a failure with a 5.x.x status, soft for 4.x.x or `delayed`;
    a report of success (delivered, relayed, expanded) is no bounce."""
    origin = _origin_from_headers(message)
    kind, detail = OTHER, ""
    for part in _parts(message, "message/delivery-status"):
        for block in _field_blocks(part)[1:] or _field_blocks(part):
            action = (block.get("Action") or "").strip().lower()
            status = _STATUS.search(block.get("Status") or "")
            words = " ".join(str(block.get("Diagnostic-Code") or "").split())
            found = status.group(0) if status else ""
            if action == "failed" and found.startswith("5"):
                return Report(HARD, origin, " ".join(f"{found} {words}".split()))
            if action == "delayed" or (action == "failed" and found.startswith("4")):
                kind, detail = SOFT, " ".join(f"{found or action} {words}".split())
    return Report(kind, origin, detail)


def _feedback(message: Message) -> Report:
    """An ARF report: a complaint about the original message attached to it."""
    feedback_type, senders = "abuse", []
    for part in _parts(message, "message/feedback-report"):
        for block in _field_blocks(part):
            feedback_type = (block.get("Feedback-Type") or feedback_type).strip().lower()
            senders += block.get_all("Original-Mail-From") or []
    original = _original(message)
    if original is not None:
        senders = (original.get_all("Return-Path") or []) + senders
    return Report(COMPLAINT, _origin_from_addresses(senders), feedback_type)


def _original(message: Message) -> Message | None:
    """The reported message (or its headers) inside an ARF report."""
    for part in message.walk():
        content_type = part.get_content_type()
        if content_type == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                return payload[0]
        if content_type == "text/rfc822-headers":
            return email.message_from_string(part.get_payload(decode=True).decode(
                "utf-8", "replace"))
    return None


def _origin_from_headers(message: Message) -> Origin | None:
    values = [value for name in _RECIPIENT_HEADERS for value in message.get_all(name) or []]
    return _origin_from_addresses(values)


def _origin_from_addresses(values: list[str]) -> Origin | None:
    """The first genuine VERP address among header values."""
    for _, address in getaddresses([str(value) for value in values]):
        origin = verp.origin_of(address) if address else None
        if origin is not None:
            return origin
    return None
