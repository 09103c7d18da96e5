"""The opt-in's CPU in-process: the Flask test client posts opt-ins to the demo page
of a throw-away SQLite database, and this prints the CPU time per opt-in (no server,
no network: what the app itself costs), for the queued sign-up (the request, then the
intake's processor folding them in) and for the direct one (the request does it all).
`--profile` prints where the request's time goes.

    .venv/bin/python bench/optin_inprocess.py [--count 400] [--profile]
"""

import argparse
import cProfile
import pstats
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=400, help="timed opt-ins (400)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile summary")
    args = parser.parse_args()

    for processing in ("queued", "direct"):
        measure(processing, args)


def measure(processing: str, args) -> None:
    from capture import create_app
    from capture.db import db
    from capture.leads import intake
    from capture.pages import demo

    folder = tempfile.mkdtemp(prefix="capture-optin-")
    url = f"sqlite:///{folder}/bench.db"
    app = create_app({"SECRET_KEY": "x" * 32, "WTF_CSRF_ENABLED": False,
                      "SQLALCHEMY_DATABASE_URI": url, "MIN_FORM_SECONDS": 0,
                      "OPTIN_RATE_LIMIT": "1000000/minute", "INSTANCE_PATH": folder,
                      "OPTIN_PROCESSING": processing})
    with app.app_context():
        db.create_all()
        demo.install()

    def fold_in() -> float:
        """The processor's CPU (ms) for what waits."""
        with app.app_context():
            started = time.process_time()
            intake.process()
            return (time.process_time() - started) * 1000
    client = app.test_client()
    page = client.get("/p/demo").get_data(as_text=True)
    tokens = dict(re.findall(r'name="(csrf_token|started)" type="hidden" value="([^"]*)"',
                             page))

    def run(count: int, offset: int) -> None:
        for number in range(count):
            response = client.post("/p/demo", data={
                **tokens, "email": f"u{offset + number}@example.com", "name": "Ann",
                "consent": "y"})
            if response.status_code != 303:
                raise SystemExit(f"opt-in answered {response.status_code}")

    run(50, 0)  # warm-up: templates, statements, caches
    fold_in()
    started = time.process_time()
    run(args.count, 1_000_000)
    per = (time.process_time() - started) / args.count * 1000
    if processing == "queued":
        folded = fold_in() / args.count
        print(f"queued: CPU per opt-in request {per:.2f} ms + processor {folded:.2f} ms "
              f"= {per + folded:.2f} ms (in-process, SQLite, {args.count} opt-ins)")
    else:
        print(f"direct: CPU per opt-in {per:.2f} ms (in-process, SQLite, "
              f"{args.count} opt-ins)")
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        run(args.count, 2_000_000)
        profile.disable()
        pstats.Stats(profile).sort_stats("cumulative").print_stats(30)


if __name__ == "__main__":
    main()
