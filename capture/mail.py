"""Mail backends behind one interface: outbox (files), smtp, console.

`send(message)` hands one message to the configured backend; `open_backend()` gives
a backend to reuse across a batch (one SMTP connection for many messages).
"""

import logging
import os
import re
import secrets
import smtplib
import ssl
import sys
from email.message import EmailMessage
from pathlib import Path

from flask import current_app

from capture import clock

log = logging.getLogger(__name__)


class MailError(Exception):
    """A message could not be handed over. `temporary` says whether to retry."""

    def __init__(self, message: str, *, temporary: bool, code: int | None = None,
                 recipient: bool = False, transport: bool = False) -> None:
        super().__init__(message)
        self.temporary = temporary
        self.code = code
        # True when the server refused the address itself (a bounce).
        self.recipient = recipient
        # True when the server or our account is the problem, not this message: the
        # rest of the batch would fail the same way.
        self.transport = transport


_ENHANCED_STATUS = re.compile(rb"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


def _refused(code: int, reply: bytes) -> MailError:
    """Classify a refused recipient (RFC 3463 enhanced status codes): a bad mailbox
    (5.1.x, 5.2.1, or a bare 550/551/553) is a bounce; a policy refusal such as
    "554 5.7.1 relay access denied" is our problem, not the lead's."""
    text = f"recipient refused: SMTP {code} {reply.decode(errors='replace')[:200]}"
    if code < 500:
        return MailError(text, temporary=True, code=code)
    status = _ENHANCED_STATUS.search(reply or b"")
    if status is None:
        bounce = code in (550, 551, 553)
    else:
        subject, detail = status.group(2), status.group(3)
        bounce = subject == b"1" or (subject == b"2" and detail == b"1")
        if subject == b"7":
            return MailError(text, temporary=True, code=code, transport=True)
    return MailError(text, temporary=False, code=code, recipient=bounce)


class OutboxBackend:
    """Writes each message as an .eml file under instance/outbox/ (newest last by name)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(self, message: EmailMessage) -> None:
        """Write the message atomically: a reader never sees half a file."""
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{clock.utcnow():%Y%m%dT%H%M%S%f}-{secrets.token_hex(4)}.eml"
        partial = self.folder / f".{name}.tmp"
        try:
            partial.write_bytes(message.as_bytes())
            os.replace(partial, self.folder / name)
        except OSError as error:
            raise MailError(f"outbox: {error}", temporary=True) from error

    def close(self) -> None:
        """Nothing to release."""


class ConsoleBackend:
    """Prints each message to standard output, for development."""

    def send(self, message: EmailMessage) -> None:
        """Print the whole message."""
        sys.stdout.write(message.as_string() + "\n")
        sys.stdout.flush()

    def close(self) -> None:
        """Nothing to release."""


class SmtpBackend:
    """Sends over SMTP, opening the connection on first use and keeping it open."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self.connection: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        config = self.config
        host, port, timeout = config["SMTP_HOST"], config["SMTP_PORT"], config["SMTP_TIMEOUT"]
        if config["SMTP_SECURITY"] == "ssl":
            connection: smtplib.SMTP = smtplib.SMTP_SSL(
                host, port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            connection = smtplib.SMTP(host, port, timeout=timeout)
            if config["SMTP_SECURITY"] == "starttls":
                connection.starttls(context=ssl.create_default_context())
        if config["SMTP_USERNAME"]:
            connection.login(config["SMTP_USERNAME"], config["SMTP_PASSWORD"])
        return connection

    def send(self, message: EmailMessage) -> None:
        """Send one message. 4xx and network trouble are temporary; a problem with the
        server or our account (connect, login, sender, relay refused) is a `transport`
        error for every message; only a refused mailbox is a bounce."""
        if self.connection is None:
            try:
                self.connection = self._connect()
            except (smtplib.SMTPException, OSError) as error:
                self.connection = None
                raise MailError(f"SMTP connection: {error}", temporary=True,
                                transport=True) from error
        try:
            self.connection.send_message(message)
        except smtplib.SMTPRecipientsRefused as error:
            code, reply = next(iter(error.recipients.values()))
            raise _refused(code, reply) from error
        except smtplib.SMTPSenderRefused as error:
            self.close()
            raise MailError(f"sender refused: SMTP {error.smtp_code} {error.smtp_error!r}",
                            temporary=True, code=error.smtp_code, transport=True) from error
        except smtplib.SMTPResponseException as error:
            self.close()
            raise MailError(
                f"SMTP {error.smtp_code}: {error.smtp_error!r}",
                temporary=error.smtp_code < 500,
                code=error.smtp_code,
            ) from error
        except (smtplib.SMTPException, OSError) as error:
            self.close()
            raise MailError(f"SMTP connection: {error}", temporary=True,
                            transport=True) from error

    def close(self) -> None:
        """Say QUIT if the connection is still open."""
        if self.connection is not None:
            try:
                self.connection.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self.connection = None


def open_backend() -> OutboxBackend | ConsoleBackend | SmtpBackend:
    """A new backend of the configured kind; call close() when done."""
    kind = current_app.config["MAIL_BACKEND"]
    if kind == "outbox":
        return OutboxBackend(outbox_folder())
    if kind == "console":
        return ConsoleBackend()
    return SmtpBackend(current_app.config)


def outbox_folder() -> Path:
    """Where the outbox backend writes its files."""
    return Path(current_app.instance_path) / "outbox"


def send(message: EmailMessage) -> None:
    """Send one message through a backend opened for it alone."""
    backend = open_backend()
    try:
        backend.send(message)
    finally:
        backend.close()
