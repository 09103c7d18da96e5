"""Real-format bounce mailbox messages, made with the `email` package: a DSN (RFC 3464)
as Postfix writes it, an ARF complaint report (RFC 5965) as the big providers send it,
an out-of-office reply and a plain message."""

from email.message import EmailMessage, Message
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, make_msgid
from datetime import UTC, datetime


def original(verp_address: str, to: str = "ann@example.com") -> EmailMessage:
    """The email we sent, as the receiving server stored it (Return-Path added)."""
    message = EmailMessage()
    message["Return-Path"] = f"<{verp_address}>"
    message["From"] = "Capture <news@mail.example.com>"
    message["To"] = to
    message["Subject"] = "Welcome"
    message["Message-ID"] = make_msgid(domain="mail.example.com")
    message.set_content("Hello\n")
    return message


def _status_part(fields: list[list[tuple[str, str]]]) -> Message:
    part = MIMEBase("message", "delivery-status")
    blocks = []
    for block in fields:
        header = Message()
        for name, value in block:
            header[name] = value
        blocks.append(header)
    part.set_payload(blocks)
    return part


def dsn(verp_address: str, *, status: str = "5.1.1", action: str = "failed",
        recipient: str = "ann@example.com",
        diagnostic: str = "smtp; 550 5.1.1 <ann@example.com>: Recipient address rejected: "
                          "User unknown", header: str = "To",
        subject: str = "Undelivered Mail Returned to Sender") -> bytes:
    """A delivery status notification sent back to `verp_address`."""
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = "MAILER-DAEMON@mx.example.com (Mail Delivery System)"
    report[header] = verp_address
    report["Subject"] = subject
    report["Date"] = format_datetime(datetime.now(UTC))
    report["Message-ID"] = make_msgid(domain="mx.example.com")
    report["Auto-Submitted"] = "auto-replied"
    report.attach(MIMEText("I'm sorry to have to inform you that your message could not\n"
                           "be delivered to one or more recipients.\n"))
    report.attach(_status_part([
        [("Reporting-MTA", "dns; mx.example.com"), ("Arrival-Date", "Fri, 4 Dec 2026")],
        [("Final-Recipient", f"rfc822; {recipient}"), ("Original-Recipient", f"rfc822;{recipient}"),
         ("Action", action), ("Status", status), ("Remote-MTA", "dns; mx2.example.com"),
         ("Diagnostic-Code", diagnostic)],
    ]))
    report.attach(MIMEMessage(original(verp_address, recipient)))
    return report.as_bytes()


def arf(verp_address: str, *, feedback_type: str = "abuse",
        subject: str = "Email Feedback Report for IP 192.0.2.1",
        headers_only: bool = False) -> bytes:
    """A complaint report (ARF) about an email we sent with `verp_address`."""
    report = MIMEMultipart("report", report_type="feedback-report")
    report["From"] = "feedback@fbl.example.net"
    report["To"] = "abuse@mail.example.com"
    report["Subject"] = subject
    report["Message-ID"] = make_msgid(domain="fbl.example.net")
    report.attach(MIMEText("This is an email abuse report for an email message received "
                           "from IP 192.0.2.1.\n"))
    feedback = MIMEBase("message", "feedback-report")
    feedback.set_payload(f"Feedback-Type: {feedback_type}\nUser-Agent: ExampleFBL/1.0\n"
                         f"Version: 1\nOriginal-Mail-From: <{verp_address}>\n"
                         "Arrival-Date: Fri, 4 Dec 2026 10:00:00 +0000\n"
                         "Reported-Domain: mail.example.com\n")
    report.attach(feedback)
    if headers_only:
        # Some providers attach the headers alone (text/rfc822-headers), Return-Path gone.
        headers = original(verp_address, "[redacted]")
        del headers["Return-Path"]
        part = MIMEText(str(headers).split("\n\n")[0] + "\n", "rfc822-headers")
        report.attach(part)
    else:
        report.attach(MIMEMessage(original(verp_address, "[redacted]")))
    return report.as_bytes()


def out_of_office(to: str) -> bytes:
    """A vacation reply sent to the envelope sender."""
    message = EmailMessage()
    message["From"] = "ann@example.com"
    message["To"] = to
    message["Subject"] = "Out of office: Welcome"
    message["Auto-Submitted"] = "auto-replied"
    message.set_content("I am away until Monday.\n")
    return message.as_bytes()


def plain(to: str) -> bytes:
    """A person writing to the bounce address."""
    message = EmailMessage()
    message["From"] = "bob@example.com"
    message["To"] = to
    message["Subject"] = "Question"
    message.set_content("Hello, is this the right address?\n")
    return message.as_bytes()
