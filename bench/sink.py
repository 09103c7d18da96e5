"""The benchmark's SMTP peer: aiosmtpd on loopback, in a process of its own, that
accepts every message and only counts (messages, bytes, distinct recipients).

    python bench/sink.py PORT

Prints `READY PORT`, then answers one JSON line per command read from standard input:
`stats` (the counts so far) or `reset` (the counts, then zero them). Stops at end of
input.
"""

import json
import sys
import threading
from collections import Counter

from aiosmtpd.controller import Controller


class CountingHandler:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages = 0
        self.bytes = 0
        self.recipients: Counter = Counter()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages += 1
            self.bytes += len(envelope.content or b"")
            self.recipients.update(envelope.rcpt_tos)
        return "250 OK"

    def stats(self, reset: bool = False) -> dict:
        with self.lock:
            result = {
                "messages": self.messages,
                "bytes": self.bytes,
                "recipients": len(self.recipients),
                "duplicates": sum(n - 1 for n in self.recipients.values() if n > 1),
            }
            if reset:
                self.messages, self.bytes = 0, 0
                self.recipients.clear()
        return result


def main() -> None:
    port = int(sys.argv[1])
    handler = CountingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    print(f"READY {port}", flush=True)
    try:
        for line in sys.stdin:
            command = line.strip()
            if command in ("stats", "reset"):
                print(json.dumps(handler.stats(reset=command == "reset")), flush=True)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
