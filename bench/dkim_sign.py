"""The CPU DKIM signing adds to each email: a typical sequence email (the demo's
first step, with its list headers, about 5 KB) is written as it goes out, once
unsigned and once signed with an RSA 2048 key, and this prints the milliseconds per
message of each and their difference.

    .venv/bin/python bench/dkim_sign.py [--count 500]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500, help="timed messages (500)")
    args = parser.parse_args()

    from capture import create_app
    from capture.mail import backends, dkim

    folder = Path(tempfile.mkdtemp(prefix="capture-dkim-"))
    key = folder / "dkim.pem"
    dkim.generate_key(key)
    app = create_app({"SECRET_KEY": "x" * 32, "INSTANCE_PATH": str(folder),
                      "DATABASE_URL": f"sqlite:///{folder}/bench.db",
                      "MAIL_FROM": "News <news@example.com>", "DKIM_DOMAIN": "example.com",
                      "DKIM_SELECTOR": "bench", "DKIM_KEY_FILE": str(key)})
    message = _typical_email()
    with app.app_context():
        signed = backends.wire_bytes(message)
        print(f"message: {len(message.as_bytes())} bytes, signed {len(signed)} bytes")
        plain_ms = _per_message(lambda: message.as_bytes(), args.count)
        signed_ms = _per_message(lambda: backends.wire_bytes(message), args.count)
    print(f"written unsigned: {plain_ms:.3f} ms/message (CPU)")
    print(f"written and signed: {signed_ms:.3f} ms/message (CPU)")
    print(f"DKIM signing: {signed_ms - plain_ms:.3f} ms/message (CPU)")


def _per_message(write, count: int) -> float:
    for _ in range(min(count, 20)):  # warm-up
        write()
    start = time.process_time()
    for _ in range(count):
        write()
    return (time.process_time() - start) * 1000 / count


def _typical_email():
    from capture.mail import mime

    paragraph = ("Thanks for signing up. Here is the first of five short lessons: how to "
                 "write a subject line people open, with three examples from our own list.")
    text = "\n\n".join(["Hi Ann,", *[paragraph] * 12, "Leave: https://capture.example.com/u/x"])
    html = "".join(f"<p>{paragraph} <a href=\"https://capture.example.com/c/abc{n}\">"
                   "Read more</a></p>" for n in range(12))
    headers = [("From", "News <news@example.com>"), ("To", "Ann Lee <ann@example.org>"),
               ("Subject", "Lesson 1: subject lines people open"),
               ("Date", "Mon, 02 Mar 2026 10:00:00 +0000"),
               ("Message-ID", "<capture.1.abc@example.com>"),
               ("List-Unsubscribe", "<https://capture.example.com/u/abcdefghijklmnop>"),
               ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]
    return mime.Email(headers, text, html, sender="news@example.com",
                      recipient="ann@example.org")


if __name__ == "__main__":
    main()
