"""The benchmark's SMTP peer on loopback, in a process of its own, that accepts every
message and only counts (messages, bytes, distinct recipients, duplicates: the same
subject to the same recipient more than once).

    python bench/sink.py PORT [--impl light|aiosmtpd] [--delay-ms 20]

`light` (the default) is a minimal SMTP server on asyncio's protocol layer: greeting,
EHLO/HELO, MAIL, RCPT, DATA (to the lone dot), RSET, NOOP, QUIT, one reply per
command, as a mail server answers. It costs a fraction of aiosmtpd's CPU per message,
which on a 2-core machine otherwise competes with the sender being measured.
`aiosmtpd` is the full server the tests use. `--delay-ms` (light only) sends each
reply that long after the command that asked for it came in, as a relay across a
network answers (20 ms: a sending service in another data centre); commands that came
together (pipelined) are answered together, one delay later.

Prints `READY PORT`, then answers one JSON line per command read from standard input:
`stats` (the counts so far) or `reset` (the counts, then zero them). Stops at end of
input.
"""

import argparse
import asyncio
import json
import sys
import threading
from collections import Counter, deque


class Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages = 0
        self.bytes = 0
        self.recipients: Counter = Counter()
        # (recipient, subject): a lead may get a welcome step and a broadcast, never
        # the same email twice.
        self.emails: Counter = Counter()

    def add(self, size: int, recipients: list[str], subject: bytes = b"") -> None:
        with self.lock:
            self.messages += 1
            self.bytes += size
            self.recipients.update(recipients)
            self.emails.update((recipient, subject) for recipient in recipients)

    def stats(self, reset: bool = False) -> dict:
        with self.lock:
            result = {
                "messages": self.messages,
                "bytes": self.bytes,
                "recipients": len(self.recipients),
                "duplicates": sum(n - 1 for n in self.emails.values() if n > 1),
            }
            if reset:
                self.messages, self.bytes = 0, 0
                self.recipients.clear()
                self.emails.clear()
        return result


def subject_of(message: bytes) -> bytes:
    """The raw Subject header line of a message (its first line; enough to tell two
    emails apart), or b''."""
    start = message.find(b"\nSubject:")
    if start < 0:
        return b""
    end = message.find(b"\r\n", start + 1)
    return message[start + 1:end if end >= 0 else None]


class LightSmtp(asyncio.Protocol):
    """One SMTP session: commands line by line, then the message up to CRLF.CRLF."""

    def __init__(self, counts: Counts, delay: float = 0.0) -> None:
        self.counts = counts
        self.delay = delay
        self.buffer = b""
        self.in_data = False
        self.recipients: list[str] = []
        # Replies waiting for their delay: (due time, bytes), in order.
        self.waiting: deque = deque()

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.loop = asyncio.get_running_loop()
        self.answer(b"220 sink ESMTP\r\n")

    def answer(self, reply: bytes) -> None:
        """Send a reply now, or `delay` after the command came (in order)."""
        if not self.delay:
            self.transport.write(reply)
            return
        due = self.loop.time() + self.delay
        self.waiting.append((due, reply))
        if len(self.waiting) == 1:
            self.loop.call_at(due, self.flush)

    def flush(self) -> None:
        now = self.loop.time()
        out = []
        while self.waiting and self.waiting[0][0] <= now:
            out.append(self.waiting.popleft()[1])
        if out and not self.transport.is_closing():
            self.transport.write(b"".join(out))
            if out[-1].startswith(b"221 "):
                self.transport.close()
        if self.waiting:
            self.loop.call_at(self.waiting[0][0], self.flush)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.in_data:
                # The message ends at a line holding a lone dot.
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    return
                self.counts.add(end, self.recipients, subject_of(self.buffer[:end]))
                self.buffer = self.buffer[end + 5:]
                self.in_data, self.recipients = False, []
                self.answer(b"250 OK queued\r\n")
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                return
            line, self.buffer = self.buffer[:end], self.buffer[end + 2:]
            reply = self.reply(line)
            if reply:
                self.answer(reply)

    def reply(self, line: bytes) -> bytes:
        verb = line[:4].upper()
        if verb == b"EHLO":
            return b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
        if verb in (b"HELO", b"MAIL", b"NOOP"):
            return b"250 OK\r\n"
        if verb == b"RSET":
            self.recipients = []
            return b"250 OK\r\n"
        if verb == b"RCPT":
            address = line.partition(b":")[2].strip().split(b" ")[0].strip(b"<>")
            self.recipients.append(address.decode(errors="replace").lower())
            return b"250 OK\r\n"
        if verb == b"DATA":
            self.in_data = True
            # A message may start with the lone dot at once (an empty message).
            self.buffer = b"\r\n" + self.buffer
            return b"354 End data with <CR><LF>.<CR><LF>\r\n"
        if verb == b"QUIT":
            if not self.delay:
                self.transport.write(b"221 Bye\r\n")
                self.transport.close()
                return b""
            return b"221 Bye\r\n"  # the connection closes once it is sent
        return b"500 Command not recognized\r\n"


def start_light(counts: Counts, port: int, delay: float = 0.0) -> None:
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    async def serve() -> None:
        await loop.create_server(lambda: LightSmtp(counts, delay), "127.0.0.1", port)
        ready.set()

    def run() -> None:
        loop.run_until_complete(serve())
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    ready.wait(10)


def start_aiosmtpd(counts: Counts, port: int):
    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            counts.add(len(envelope.content or b""), [r.lower() for r in envelope.rcpt_tos],
                       subject_of(b"\n" + (envelope.original_content or b"")))
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    return controller


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--impl", choices=["light", "aiosmtpd"], default="light")
    parser.add_argument("--delay-ms", type=float, default=0.0,
                        help="answer each command this long after it came (light only)")
    args = parser.parse_args()
    if args.delay_ms and args.impl != "light":
        parser.error("--delay-ms works with --impl light only")
    counts = Counts()
    controller = None
    if args.impl == "light":
        start_light(counts, args.port, args.delay_ms / 1000)
    else:
        controller = start_aiosmtpd(counts, args.port)
    print(f"READY {args.port}", flush=True)
    try:
        for line in sys.stdin:
            command = line.strip()
            if command in ("stats", "reset"):
                print(json.dumps(counts.stats(reset=command == "reset")), flush=True)
    finally:
        if controller is not None:
            controller.stop()


if __name__ == "__main__":
    main()
