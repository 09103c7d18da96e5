"""SMTP PIPELINING (RFC 2920): with a server that offers it, MAIL, RCPT and DATA go
in one write; refusals are told apart as without it; a server without it gets one
command at a time. (The `smtp` fixture offers it, so the other sending tests run
pipelined too.)"""

import socket
import threading
from contextlib import contextmanager

import pytest

from tests.factories import add_lead, deliveries, three_steps, tick


@contextmanager
def strict_pipelining_server(received: list[bytes]):
    """A raw SMTP server that answers MAIL only once RCPT and DATA have arrived too,
    as a client that waited for each answer would never send them: a client that
    does not pipeline hangs until its timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def serve():
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection:
            connection.sendall(b"220 strict ESMTP\r\n")
            buffer = b""
            while b"\r\n" not in buffer:
                buffer += connection.recv(65536)
            connection.sendall(b"250-strict\r\n250-PIPELINING\r\n250 SIZE 1000000\r\n")
            buffer = b""
            while buffer.count(b"\r\n") < 3:  # MAIL, RCPT and DATA, before any answer
                chunk = connection.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            received.append(buffer)
            connection.sendall(b"250 OK\r\n250 OK\r\n354 go ahead\r\n")
            message = b""
            while not message.endswith(b"\r\n.\r\n"):
                message += connection.recv(65536)
            received.append(message)
            connection.sendall(b"250 queued\r\n")
            buffer = b""
            while b"\r\n" not in buffer:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            connection.sendall(b"221 bye\r\n")  # QUIT

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def test_mail_rcpt_and_data_go_together_to_a_server_that_offers_pipelining(
        smtp_app, clock):
    three_steps(smtp_app)
    lead_id = add_lead(smtp_app, email="ann@example.com")
    smtp_app.config["SMTP_TIMEOUT"] = 10
    received: list[bytes] = []
    with strict_pipelining_server(received) as port:
        smtp_app.config["SMTP_PORT"] = port
        summary = tick(smtp_app)
    assert summary.sent == 1, summary.line()
    commands, message = received
    assert commands.startswith(b"MAIL FROM:<")
    assert b" SIZE=" in commands.split(b"\r\n")[0]
    assert commands.split(b"\r\n")[1:3] == [b"RCPT TO:<ann@example.com>", b"DATA"]
    assert b"Subject: Welcome, Ann" in message
    assert deliveries(smtp_app, lead_id) == [("welcome", "sent")]


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-by-one"])
def test_a_refused_mailbox_bounces_and_the_next_email_on_the_connection_goes(
        smtp_app, smtp, clock, pipelining):
    smtp.pipelining = pipelining
    three_steps(smtp_app)
    gone = add_lead(smtp_app, email="gone@example.com")
    kept = add_lead(smtp_app, email="kept@example.com", name="Kept")
    smtp.refuse.add("gone@example.com")
    summary = tick(smtp_app)
    assert (summary.bounced, summary.sent) == (1, 1)
    assert deliveries(smtp_app, gone) == [("welcome", "failed")]
    assert deliveries(smtp_app, kept) == [("welcome", "sent")]
    assert [str(m["Subject"]) for m in smtp.messages] == ["Welcome, Kept"]


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-by-one"])
def test_a_message_starting_lines_with_dots_arrives_unchanged(smtp_app, smtp, clock,
                                                              pipelining):
    smtp.pipelining = pipelining
    folder = three_steps(smtp_app)
    (folder / "01-welcome.md").write_text(
        "---\nsubject: Dots\n---\n.hidden line\n\n..two dots\n")
    add_lead(smtp_app)
    assert tick(smtp_app).sent == 1
    [message] = smtp.messages
    text = message.get_body(("plain",)).get_content()
    assert ".hidden line" in text and "..two dots" in text
