"""Mail backends behind one interface (outbox files, SMTP, console), chosen from BACKENDS.

`send(message)` hands one message to the configured backend; `open_backend()` gives
a backend to reuse across a batch (one SMTP connection for many messages; several
of them work side by side in `capture.mail.connections`). A backend's `send` returns
its answer as one line (the SMTP server's final reply, say). Every backend writes a
message through `wire_bytes`, where it is DKIM-signed.
"""

import os
import re
import secrets
import smtplib
import ssl
import sys
from pathlib import Path
from typing import Protocol, Self

from flask import current_app

from capture import clock
from capture.domains import DomainError
from capture.mail import dkim, outbox
from capture.mail.mime import Email
from capture.settings import PRIVATE_FILE, PRIVATE_FOLDER


class MailError(Exception):
    """A message could not be handed over. `temporary` says whether to retry."""

    def __init__(self, message: str, *, temporary: bool, code: int | None = None,
                 recipient: bool = False, transport: bool = False,
                 unknown: bool = False) -> None:
        super().__init__(message)
        self.temporary = temporary
        self.code = code
        # True when the server refused the address itself (a bounce).
        self.recipient = recipient
        # True when the server or our account is the problem, not this message: the
        # rest of the batch would fail the same way.
        self.transport = transport
        # True when the whole message went to the server but no answer came back (a
        # timeout or a dropped connection after DATA): it may have been delivered.
        self.unknown = unknown


class Backend(Protocol):
    """What every backend does: hand over one message (its answer as one line), and
    release what it holds. `then` names the message the next `send` will hand over:
    a backend may start on it early (SMTP sends its envelope with this body)."""

    @classmethod
    def configured(cls) -> Self:
        """A backend set up from the app's settings."""

    def send(self, message: Email, then: Email | None = None) -> str:
        """Hand over one message; MailError when it could not be."""

    def close(self) -> None:
        """Release the connection, if any."""


def wire_bytes(message: Email) -> bytes:
    """The message as it leaves, written once and DKIM-signed when that is configured:
    each writing draws a new MIME boundary, so the signature covers these bytes alone.
    A message that cannot be signed is not sent (a permanent MailError)."""
    try:
        return dkim.sign(message.as_bytes())
    except dkim.SigningError as error:
        raise MailError(f"not signed with DKIM: {error}", temporary=False) from error


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

    @classmethod
    def configured(cls) -> Self:
        """One writing to the app's outbox folder."""
        return cls(outbox.outbox_folder())

    def send(self, message: Email, then: Email | None = None) -> str:
        """Write the message atomically: a reader never sees half a file."""
        self.folder.mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)
        name = f"{clock.utcnow():%Y%m%dT%H%M%S%f}-{secrets.token_hex(4)}.eml"
        partial = self.folder / f".{name}.tmp"
        try:
            # Emails hold addresses and confirm links: readable by this user alone.
            descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
            with os.fdopen(descriptor, "wb") as file:
                file.write(wire_bytes(message))
            os.replace(partial, self.folder / name)
        except OSError as error:
            raise MailError(f"outbox: {error}", temporary=True) from error
        return f"written to {self.folder / name}"

    def close(self) -> None:
        """Nothing to release."""


class ConsoleBackend:
    """Prints each message to standard output, for development."""

    @classmethod
    def configured(cls) -> Self:
        """There is nothing to set up."""
        return cls()

    def send(self, message: Email, then: Email | None = None) -> str:
        """Print the whole message."""
        sys.stdout.write(wire_bytes(message).decode("utf-8") + "\n")
        sys.stdout.flush()
        return "printed to standard output"

    def close(self) -> None:
        """Nothing to release."""


class _HandOver:
    """Notes when the whole message has gone to the server (DATA's final dot): a
    failure after that moment may still have been delivered."""

    handed_over = False
    _in_data = False
    # The server's answer to the last message: (code, text).
    last_reply: tuple[int, bytes] | None = None

    def data(self, msg):
        self.handed_over, self._in_data = False, True
        try:
            self.last_reply = super().data(msg)
            return self.last_reply
        finally:
            self._in_data = False

    def send(self, s):
        super().send(s)
        if self._in_data and isinstance(s, bytes):  # the message itself, not "DATA"
            self.handed_over = True


# A line of the message that starts with a dot gets a second one (RFC 5321 4.5.2).
_LEADING_DOT = re.compile(rb"(?m)^\.")


def _plain(sender: str, recipients, msg, options=()) -> bool:
    """Whether a message can go pipelined: one ASCII recipient, no options."""
    return (isinstance(recipients, list) and len(recipients) == 1 and isinstance(msg, bytes)
            and not options and (sender + recipients[0]).isascii())


class _Pipelining:
    """MAIL, RCPT and DATA in one write and their answers read together when the
    server offers PIPELINING (RFC 2920; Postfix, Exim and the big relays do): two
    round trips per message instead of four, which over a network to a relay is
    most of the time an email takes. With `then` (the next message's sender,
    recipient and bytes) that message's MAIL, RCPT and DATA follow this body in the
    same write (RFC 2920 lets a message's content start a group): one round trip
    per message. Otherwise smtplib's own exchange. Failures raise what smtplib
    raises, so they are told apart the same way."""

    # True when the envelope of `then` went with the last body: its answers wait.
    envelope_sent = False

    def pipelines(self) -> bool:
        """Whether the server offers PIPELINING (after EHLO)."""
        self.ehlo_or_helo_if_needed()
        return bool(self.has_extn("pipelining"))

    def _envelope(self, from_addr: str, to_addr: str, msg: bytes) -> bytes:
        size = f" SIZE={len(msg)}" if self.has_extn("size") else ""
        return (f"MAIL FROM:{smtplib.quoteaddr(from_addr)}{size}\r\n"
                f"RCPT TO:{smtplib.quoteaddr(to_addr)}\r\nDATA\r\n").encode("ascii")

    def sendmail(self, from_addr, to_addrs, msg, mail_options=(), rcpt_options=(), then=None):
        self.ehlo_or_helo_if_needed()
        plain = _plain(from_addr, to_addrs, msg, (*mail_options, *rcpt_options))
        if not (plain and self.has_extn("pipelining")):
            return super().sendmail(from_addr, to_addrs, msg, mail_options, rcpt_options)
        [to_addr] = to_addrs
        self.handed_over = False
        if not self.envelope_sent:  # else it went with the previous message's body
            self.send(self._envelope(from_addr, to_addr, msg))
        self.envelope_sent = False
        answers = []
        for _ in range(3):
            answers.append(self.getreply())
            if answers[-1][0] == 421:  # the server is closing the connection
                self.close()
                break
        (mail_code, mail_reply), *rest = answers
        if mail_code != 250:
            self._after_refusal(answers)
            raise smtplib.SMTPSenderRefused(mail_code, mail_reply, from_addr)
        rcpt_code, rcpt_reply = rest[0]
        if rcpt_code not in (250, 251):
            self._after_refusal(answers)
            raise smtplib.SMTPRecipientsRefused({to_addr: (rcpt_code, rcpt_reply)})
        data_code, data_reply = rest[1]
        if data_code != 354:
            self._after_refusal(answers)
            raise smtplib.SMTPDataError(data_code, data_reply)
        body = _LEADING_DOT.sub(b"..", msg)
        following = self._envelope(*then) if then is not None else b""
        self.send(body + (b"" if body.endswith(b"\r\n") else b"\r\n") + b".\r\n"
                  + following)
        self.handed_over = True
        code, reply = self.last_reply = self.getreply()
        if code != 250:
            if code == 421 or following:
                # A RSET now would land in the next message's DATA: start afresh.
                self.close()
            else:
                self._rset()
            raise smtplib.SMTPDataError(code, reply)
        self.envelope_sent = bool(following)
        return {}

    def _after_refusal(self, answers) -> None:
        """Leave the connection ready for the next message after a refused command
        (a server that said 354 to DATA anyway gets an empty message to refuse)."""
        if self.sock is None or len(answers) < 3:
            return
        if answers[2][0] == 354:
            self.send(b".\r\n")
            self.getreply()
        self._rset()


class _SMTP(_Pipelining, _HandOver, smtplib.SMTP):
    """smtplib.SMTP that knows whether the message went over."""


class _SMTP_SSL(_Pipelining, _HandOver, smtplib.SMTP_SSL):
    """smtplib.SMTP_SSL that knows whether the message went over."""


class SmtpBackend:
    """Sends over SMTP, opening the connection on first use and keeping it open."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self.connection: smtplib.SMTP | None = None
        # The message whose envelope went with the last body, and its bytes.
        self.announced: tuple[Email, bytes] | None = None

    @classmethod
    def configured(cls) -> Self:
        """One for the app's SMTP_* settings; it connects on the first message."""
        return cls(current_app.config)

    def _connect(self) -> smtplib.SMTP:
        config = self.config
        host, port, timeout = config["SMTP_HOST"], config["SMTP_PORT"], config["SMTP_TIMEOUT"]
        if config["SMTP_SECURITY"] == "ssl":
            connection: smtplib.SMTP = _SMTP_SSL(
                host, port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            connection = _SMTP(host, port, timeout=timeout)
        try:
            if config["SMTP_SECURITY"] == "starttls":
                connection.starttls(context=ssl.create_default_context())
            if config["SMTP_USERNAME"]:
                connection.login(config["SMTP_USERNAME"], config["SMTP_PASSWORD"])
        except BaseException:
            connection.close()  # a refused login (535) must not leave the socket open
            raise
        return connection

    def send(self, message: Email, then: Email | None = None) -> str:
        """Send one message; return the server's final reply ("250 2.0.0 Ok …"). 4xx
        and network trouble are temporary; a problem with the server or our account
        (connect, login, sender, relay refused) is a `transport` error for every
        message; only a refused mailbox is a bounce. `then`, the message the next
        call sends, has its envelope sent with this body when the server pipelines."""
        announced, self.announced = self.announced, None
        if announced is not None and announced[0] is not message:
            self._drop()  # the server waits for another message's body: start afresh
            announced = None
        if self.connection is None:
            try:
                self.connection = self._connect()
            except (smtplib.SMTPException, OSError) as error:
                self.connection = None
                raise MailError(f"SMTP connection: {error}", temporary=True,
                                transport=True) from error
        try:
            sender, recipient = message.envelope()
        except DomainError as error:
            raise MailError(str(error), temporary=False) from error
        data = announced[1] if announced is not None else wire_bytes(message)
        following = self._announce(then)
        try:
            self.connection.sendmail(
                sender, [recipient], data, self._utf8_options(message),
                then=following[1:] if following is not None else None)
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
            handed_over = getattr(self.connection, "handed_over", False)
            self.close()
            if handed_over:
                # Resending could deliver it twice; the server is unwell, so the rest
                # of the batch waits too.
                raise MailError(f"no answer after the message was sent: {error}",
                                temporary=False, transport=True, unknown=True) from error
            raise MailError(f"SMTP connection: {error}", temporary=True,
                            transport=True) from error
        if following is not None and self.connection.envelope_sent:
            self.announced = (then, following[3])
        code, reply = getattr(self.connection, "last_reply", None) or (250, b"")
        return " ".join(f"{code} {reply.decode(errors='replace')}".split())

    def _announce(self, then: Email | None) -> tuple | None:
        """(message, sender, recipient, bytes) of the next message when its envelope
        can go with this body: the server pipelines and it needs no SMTPUTF8. A
        message that cannot be written or addressed is left to its own `send`."""
        if then is None or then.smtputf8 or not self.connection.pipelines():
            return None
        try:
            sender, recipient = then.envelope()
            data = wire_bytes(then)
        except (DomainError, MailError):
            return None
        if not _plain(sender, [recipient], data):
            return None
        return then, sender, recipient, data

    def _utf8_options(self, message: Email) -> list[str]:
        """["SMTPUTF8"] for a message that needs it (a non-ASCII local part), when
        the server offers it; a permanent MailError for that message alone when it
        does not (an ASCII form of such an address does not exist)."""
        if not message.smtputf8:
            return []
        self.connection.ehlo_or_helo_if_needed()
        if not self.connection.has_extn("smtputf8"):
            raise MailError(
                f"not sent: {message.recipient} has non-ASCII characters before the @, "
                "and the mail server does not offer SMTPUTF8 to deliver to it",
                temporary=False)
        return ["SMTPUTF8"]

    def close(self) -> None:
        """Say QUIT if the connection is still open (and waits for no message)."""
        if self.announced is not None:
            self._drop()
        if self.connection is not None:
            try:
                self.connection.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self.connection = None

    def _drop(self) -> None:
        """Close the socket without a word: the server waits for a body that does not
        come, so it keeps nothing (a QUIT now would be read as the message)."""
        self.announced = None
        if self.connection is not None:
            self.connection.close()
            self.connection = None


# Every backend by its MAIL_BACKEND name: a new kind is one entry here (and one among
# the setting's allowed values, which settings.py checks at start-up).
BACKENDS: dict[str, type[Backend]] = {
    "outbox": OutboxBackend,
    "smtp": SmtpBackend,
    "console": ConsoleBackend,
}


def open_backend() -> Backend:
    """A new backend of the configured kind; call close() when done."""
    return BACKENDS[current_app.config["MAIL_BACKEND"]].configured()


def send(message: Email) -> str:
    """Send one message through a backend opened for it alone; return its answer."""
    backend = open_backend()
    try:
        return backend.send(message)
    finally:
        backend.close()
