"""The bounce mailbox reader: CAPTURE_BOUNCE_MAILBOX over IMAP (or POP3), one pass per call.

Each new message (by UID) is parsed (capture.mail.reports); a bounce or complaint
about one of our emails is acted upon (capture.mail.bounces), then moved to the
`Processed` folder (made if missing), never deleted. Everything else (auto-replies,
people writing, reports naming no genuine VERP address, reports about emails since
deleted) is left where it is, untouched: not even flagged as read.

Idempotent across restarts: the actions are idempotent per (email, kind), and a
message is moved only after its action is committed, so a crash in between means it
is read again and changes nothing. The UIDs already looked at are remembered in
`instance/bounce_mailbox.json` (with the folder's UIDVALIDITY), so a message left in
place is not parsed again on every pass.

`imaps://` is TLS from the start; `imap://` upgrades with STARTTLS, and a server that
does not offer it is refused, except on a loopback address (nothing leaves the
machine); `pop3s://` and `pop3://` (STLS) likewise. POP3 is read-only: it has no
folder to move a message to and deleting one is not ours to do, so everything stays
on the server and the UIDLs looked at are remembered instead.
"""

import fcntl
import hashlib
import imaplib
import json
import logging
import os
import poplib
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from flask import current_app
from sqlalchemy import text

from capture import clock
from capture.db import db
from capture.mail import bounces, reports
from capture.settings import PRIVATE_FILE

log = logging.getLogger(__name__)
PROCESSED = "Processed"
_LOOPBACK = ("127.0.0.1", "::1", "localhost")
_ACTIONS = {reports.HARD: bounces.hard_bounce, reports.SOFT: bounces.soft_bounce,
            reports.COMPLAINT: bounces.complaint}


class MailboxError(Exception):
    """The mailbox could not be read: its address, its server, or our login."""


@dataclass
class Pass:
    """What one pass over the mailbox did: messages moved to Processed by kind, and
    the ones left in place by why."""

    handled: dict[str, int] = field(default_factory=dict)
    left: dict[str, int] = field(default_factory=dict)
    # Another scheduler process was reading the mailbox: this pass read nothing.
    busy: bool = False

    def line(self) -> str:
        """One line for the log and the `bounces fetch` command."""
        if self.busy:
            return "bounce mailbox: another process is reading it now; nothing read"
        def counts(found: dict[str, int]) -> str:
            return ", ".join(f"{count} {kind}" for kind, count in sorted(found.items())) or "none"
        return f"bounce mailbox: handled {counts(self.handled)}; left in place {counts(self.left)}"


@dataclass(frozen=True)
class Address:
    """CAPTURE_BOUNCE_MAILBOX, taken apart."""

    scheme: str
    host: str
    port: int
    user: str
    password: str
    folder: str


def address(url: str) -> Address:
    """The parts of a mailbox URL; MailboxError for one that cannot be read."""
    parts = urlsplit(url.strip())
    ports = {"imaps": 993, "imap": 143, "pop3s": 995, "pop3": 110}
    if parts.scheme not in ports:
        raise MailboxError(f"CAPTURE_BOUNCE_MAILBOX must start imaps://, imap://, "
                           f"pop3s:// or pop3://, not {parts.scheme or 'nothing'}")
    if not parts.hostname or not parts.username:
        raise MailboxError("CAPTURE_BOUNCE_MAILBOX needs user:password@host")
    try:
        port = parts.port or ports[parts.scheme]
    except ValueError as error:
        raise MailboxError(f"CAPTURE_BOUNCE_MAILBOX: {error}") from None
    return Address(parts.scheme, parts.hostname, port, unquote(parts.username),
                   unquote(parts.password or ""), unquote(parts.path.strip("/")) or "INBOX")


def fetch() -> Pass | None:
    """Read the configured mailbox once; None when none is set. MailboxError when it
    cannot be read (the caller logs one line). Either way the outcome is kept for the
    dashboard (`last_failure`)."""
    url = current_app.config.get("BOUNCE_MAILBOX") or ""
    if not url:
        return None
    where = address(url)
    with _one_reader(where) as alone:
        if not alone:
            return Pass(busy=True)
        try:
            done = _fetch(where)
        except MailboxError as error:
            _save_health({"failed_at": clock.utcnow().isoformat(),
                          "error": str(error)[:300]})
            raise
    _save_health({})
    return done


@contextmanager
def _one_reader(where: Address) -> Iterator[bool]:
    """Whether this process may read the mailbox now: one reader at a time, across
    scheduler processes (two readers moving one message at the same moment can leave
    two copies of it in Processed). On PostgreSQL a session advisory lock on a
    connection of its own; on SQLite, whose processes share one machine, a lock on a
    file beside the state file. Either goes with the process if it dies."""
    if db.engine.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(_key(where).encode()).digest()[:8], "big",
                             signed=True)
        with db.engine.connect() as connection:
            alone = connection.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                       {"key": key}).scalar()
            try:
                yield bool(alone)
            finally:
                if alone:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"),
                                       {"key": key})
        return
    descriptor = os.open(_state_path().with_suffix(".lock"), os.O_RDWR | os.O_CREAT,
                         PRIVATE_FILE)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(descriptor)  # releases the lock


def last_failure() -> tuple[datetime, str] | None:
    """When the last read of the mailbox failed and why, or None when it succeeded
    (or none was made yet, or no mailbox is set). Written by whichever scheduler
    process read it last."""
    if not current_app.config.get("BOUNCE_MAILBOX"):
        return None
    try:
        health = json.loads(_health_path().read_text(encoding="utf-8"))
        return datetime.fromisoformat(health["failed_at"]), str(health["error"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _fetch(where: Address) -> Pass:
    if where.scheme.startswith("pop3"):
        try:
            return _read_pop3(where)
        except (OSError, poplib.error_proto, ssl.SSLError) as error:
            raise MailboxError(f"{where.host}:{where.port}: {error}") from error
    try:
        connection = _connect(where)
    except (OSError, imaplib.IMAP4.error, ssl.SSLError) as error:
        raise MailboxError(f"{where.host}:{where.port}: {error}") from error
    try:
        return _read(connection, where)
    except (OSError, imaplib.IMAP4.error, ssl.SSLError) as error:
        raise MailboxError(f"{where.host}:{where.port}: {error}") from error
    finally:
        try:
            connection.logout()
        except (OSError, imaplib.IMAP4.error):
            pass


def _connect(where: Address) -> imaplib.IMAP4:
    timeout = current_app.config["BOUNCE_MAILBOX_TIMEOUT"]
    context = ssl.create_default_context()
    if where.scheme == "imaps":
        connection = imaplib.IMAP4_SSL(where.host, where.port, ssl_context=context,
                                       timeout=timeout)
    else:
        connection = imaplib.IMAP4(where.host, where.port, timeout=timeout)
        try:
            if "STARTTLS" in connection.capabilities:
                connection.starttls(context)
            elif where.host not in _LOOPBACK:
                raise MailboxError(f"{where.host} does not offer STARTTLS: the password "
                                   "would go in clear (use imaps://)")
        except BaseException:
            _shut(connection)
            raise
    try:
        connection.login(where.user, where.password)
        # What the server offers changes with the login (MOVE, UIDPLUS).
        _, data = connection.capability()
        connection.capabilities = tuple(data[-1].decode("ascii", "replace").upper().split())
    except BaseException:
        _shut(connection)
        raise
    return connection


def _shut(connection: imaplib.IMAP4) -> None:
    """Close a connection that failed half-way, keeping the error that made it fail
    (a failed TLS handshake leaves a socket that cannot even be shut down)."""
    try:
        connection.shutdown()
    except OSError:
        pass


def _read(connection: imaplib.IMAP4, where: Address) -> Pass:
    """One pass: the new UIDs of the folder, in order, each handled or left."""
    status, data = connection.select(_quoted(where.folder))
    if status != "OK":
        raise MailboxError(f"cannot open the folder {where.folder}: {data}")
    validity = _uid_validity(connection)
    state = _state(where)
    last = state.get("last_uid", 0) if state.get("uid_validity") == validity else 0
    status, data = connection.uid("SEARCH", None, f"UID {last + 1}:*")
    uids = sorted(int(uid) for uid in (data[0] or b"").split() if int(uid) > last)
    uids = uids[:current_app.config["BOUNCE_BATCH_SIZE"]]
    done = Pass()
    processed_ready = False
    for uid in uids:
        status, data = connection.uid("FETCH", str(uid), "(BODY.PEEK[])")
        raw = next((item[1] for item in data or () if isinstance(item, tuple)), None)
        if status != "OK" or raw is None:
            continue  # gone meanwhile (another reader moved it)
        try:
            handled = _act(raw, done)
        except Exception:
            _save_state(where, {"uid_validity": validity, "last_uid": uid - 1})
            raise
        if handled:
            if not processed_ready:
                _ensure_folder(connection, PROCESSED)
                processed_ready = True
            _move(connection, uid)
        _save_state(where, {"uid_validity": validity, "last_uid": uid})
    return done


def _act(raw: bytes, done: Pass) -> bool:
    """Parse one message and act on it; True when it was a report about one of our
    emails (acted upon now, or before), False when it is left alone."""
    report = reports.parse(raw)
    target = bounces.target_of(report.origin) if report.actionable else None
    if target is None:
        why = report.kind if not report.actionable else f"{report.kind} of an unknown email"
        if report.kind in _ACTIONS and report.origin is None:
            why = f"{report.kind} naming none of our emails"
        done.left[why] = done.left.get(why, 0) + 1
        return False
    try:
        _ACTIONS[report.kind](target, report.detail)
    except Exception:
        db.session.rollback()
        raise
    done.handled[report.kind] = done.handled.get(report.kind, 0) + 1
    return True


def _read_pop3(where: Address) -> Pass:
    """One pass over a POP3 mailbox, read-only: POP3 has no folders to move a message
    to, and deleting one is not ours to do, so every message stays on the server and
    the UIDLs looked at are remembered instead (those no longer on the server are
    forgotten). A handled message counts as handled all the same."""
    timeout = current_app.config["BOUNCE_MAILBOX_TIMEOUT"]
    context = ssl.create_default_context()
    if where.scheme == "pop3s":
        connection = poplib.POP3_SSL(where.host, where.port, timeout=timeout,
                                     context=context)
    else:
        connection = poplib.POP3(where.host, where.port, timeout=timeout)
    try:
        if where.scheme == "pop3":
            if "STLS" in _pop3_capabilities(connection):
                connection.stls(context)
            elif where.host not in _LOOPBACK:
                raise MailboxError(f"{where.host} does not offer STLS: the password would "
                                   "go in clear (use pop3s://)")
        connection.user(where.user)
        connection.pass_(where.password)
        _, listing, _ = connection.uidl()
        numbered = [line.decode("ascii", "replace").split(None, 1) for line in listing]
        present = {uid: int(number) for number, uid in numbered}
        seen = set(_state(where).get("uidls", [])) & set(present)
        done = Pass()
        new = [uid for uid in present if uid not in seen]
        for uid in new[:current_app.config["BOUNCE_BATCH_SIZE"]]:
            _, lines, _ = connection.retr(present[uid])
            _act(b"\r\n".join(lines) + b"\r\n", done)
            seen.add(uid)
            _save_state(where, {"uidls": sorted(seen)})
        return done
    finally:
        try:
            connection.quit()
        except (OSError, poplib.error_proto):
            connection.close()


def _pop3_capabilities(connection: poplib.POP3) -> dict:
    try:
        return connection.capa()
    except poplib.error_proto:
        return {}


def _quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _uid_validity(connection: imaplib.IMAP4) -> int:
    _, data = connection.response("UIDVALIDITY")
    try:
        return int((data or [b"0"])[0])
    except (TypeError, ValueError):
        return 0


def _ensure_folder(connection: imaplib.IMAP4, name: str) -> None:
    status, data = connection.list('""', _quoted(name))
    if status == "OK" and any(item for item in data if item):
        return
    status, data = connection.create(_quoted(name))
    if status != "OK":
        raise MailboxError(f"cannot create the folder {name}: {data}")


def _move(connection: imaplib.IMAP4, uid: int) -> None:
    """UID MOVE (RFC 6851); without it, COPY then \\Deleted and, with UIDPLUS, an
    expunge of this UID alone (a plain EXPUNGE would take other clients' deleted
    messages too: without UIDPLUS the copy stays flagged until they expunge)."""
    capabilities = connection.capabilities
    if "MOVE" in capabilities:
        status, data = connection.uid("MOVE", str(uid), _quoted(PROCESSED))
        if status != "OK":
            raise MailboxError(f"cannot move message {uid}: {data}")
        return
    status, data = connection.uid("COPY", str(uid), _quoted(PROCESSED))
    if status != "OK":
        raise MailboxError(f"cannot copy message {uid}: {data}")
    connection.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted)")
    if "UIDPLUS" in capabilities:
        connection.uid("EXPUNGE", str(uid))


def _health_path() -> Path:
    return Path(current_app.instance_path) / "bounce_mailbox_health.json"


def _save_health(values: dict) -> None:
    _write_private(_health_path(), values)


def _state_path() -> Path:
    return Path(current_app.instance_path) / "bounce_mailbox.json"


def _key(where: Address) -> str:
    return f"{where.scheme}://{where.user}@{where.host}:{where.port}/{where.folder}"


def _state(where: Address) -> dict:
    """What was looked at in this mailbox already (IMAP: the folder's UIDVALIDITY and
    last UID; POP3: the UIDLs), if known."""
    try:
        state = json.loads(_state_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) and state.get("mailbox") == _key(where) else {}


def _save_state(where: Address, values: dict) -> None:
    _write_private(_state_path(), {"mailbox": _key(where), **values})


def _write_private(path: Path, values: dict) -> None:
    """Write a JSON file readable by our user alone, whole or not at all (several
    scheduler processes may write it: each writes a partial file of its own)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        json.dump(values, file)
    os.replace(partial, path)
