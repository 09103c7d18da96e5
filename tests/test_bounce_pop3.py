"""The bounce mailbox over POP3: read-only (nothing deleted), each message by UIDL
once. Debian's dovecot here has no POP3 server (dovecot-pop3d), so a small POP3
server on loopback (RFC 1939: USER, PASS, CAPA, UIDL, RETR, QUIT) stands in."""

import socketserver
import threading

import pytest
from sqlalchemy import select

from capture.db import db
from capture.mail import mailbox, verp
from capture.mail.verp import Origin
from capture.models import Lead
from tests import bounce_samples as samples
from tests.factories import add_delivery, add_lead

BOUNCE_ADDRESS = "bounces@mail.example.com"


class Pop3Box:
    """The mailbox: messages by UIDL, and every command the reader sent."""

    def __init__(self) -> None:
        self.messages: dict[str, bytes] = {}
        self.commands: list[str] = []


def _handler(box: Pop3Box):
    class Handler(socketserver.StreamRequestHandler):
        def reply(self, line: str) -> None:
            self.wfile.write(line.encode() + b"\r\n")

        def handle(self) -> None:
            self.reply("+OK ready")
            listing = list(box.messages.items())
            for raw in self.rfile:
                command, _, argument = raw.decode().strip().partition(" ")
                command = command.upper()
                box.commands.append(command)
                if command == "CAPA":
                    self.reply("+OK\r\nUSER\r\nUIDL\r\n.")
                elif command == "USER":
                    self.reply("+OK")
                elif command == "PASS":
                    self.reply("+OK" if argument == "secret" else "-ERR [AUTH] bad login")
                elif command == "UIDL":
                    lines = [f"{n} {uid}" for n, (uid, _) in enumerate(listing, 1)]
                    self.reply("\r\n".join(["+OK", *lines, "."]))
                elif command == "RETR":
                    body = listing[int(argument) - 1][1].replace(b"\r\n", b"\n")
                    stuffed = b"\r\n".join(b"." + line if line.startswith(b".") else line
                                           for line in body.split(b"\n"))
                    self.wfile.write(b"+OK\r\n" + stuffed + b"\r\n.\r\n")
                elif command == "QUIT":
                    self.reply("+OK bye")
                    return
                else:
                    self.reply("-ERR not here")
    return Handler


@pytest.fixture
def pop3():
    box = Pop3Box()
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _handler(box))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    box.port = server.server_address[1]
    yield box
    server.shutdown()
    server.server_close()


def test_pop3_is_read_once_per_message_and_never_deleted(make_app, pop3):
    app = make_app(BOUNCE_ADDRESS=BOUNCE_ADDRESS,
                   BOUNCE_MAILBOX=f"pop3://bounces:secret@127.0.0.1:{pop3.port}/")
    lead = add_lead(app)
    delivery = add_delivery(app, lead)
    with app.app_context():
        address = verp.envelope_sender(Origin("delivery", delivery))
    pop3.messages = {"a1": samples.dsn(address), "a2": samples.out_of_office(address)}
    with app.app_context():
        first = mailbox.fetch()
        second = mailbox.fetch()
        assert db.session.scalar(select(Lead.subscription)) == "bounced"
    assert first.handled == {"hard bounce": 1} and first.left == {"auto-reply": 1}
    assert second.handled == {} and second.left == {}
    assert "DELE" not in pop3.commands and pop3.commands.count("RETR") == 2


def test_pop3_refused_login_is_a_mailbox_error(make_app, pop3):
    app = make_app(BOUNCE_MAILBOX=f"pop3://bounces:wrong@127.0.0.1:{pop3.port}/")
    result = app.test_cli_runner().invoke(args=["bounces", "fetch"])
    assert result.exit_code == 1 and "bad login" in result.output

