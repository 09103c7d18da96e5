"""Summaries of a py-spy profile in its `raw` (collapsed stacks) format: where the
time goes, as a share of all samples.

    python bench/profile_summary.py bench/out/<run>/profile-optin.txt [--top 20]

- inclusive: the share of samples with the function anywhere on the stack (each
  function counted once per stack), for Capture's own functions and for all;
- self: the share of samples where the function is the innermost frame, grouped by
  library (sqlite3, jinja2, sqlalchemy, werkzeug, email …) and by function.
"""

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
_GROUPS = (
    ("sqlite3 driver (C: queries, commits, lock waits)",
     ("do_execute (", "do_executemany (", "do_commit (", "do_rollback (", "sqlite3",
      "Cursor.fetch", "CursorResult._fetch", "_fetchall_impl", "_fetchone_impl")),
    ("sqlalchemy", ("sqlalchemy/",)),
    ("jinja2", ("jinja2/",)),
    ("markupsafe", ("markupsafe/",)),
    ("werkzeug", ("werkzeug/",)),
    ("flask / flask_wtf / wtforms", ("flask/", "flask_wtf/", "wtforms/", "flask_sqlalchemy/",
                                      "flask_login/")),
    ("itsdangerous", ("itsdangerous/",)),
    ("email (stdlib: message, headers)", ("email/",)),
    ("smtplib / socket", ("smtplib", "socket", "ssl.py")),
    ("email_validator / idna", ("email_validator/", "idna/")),
    ("markdown_it", ("markdown_it/",)),
    ("gunicorn", ("gunicorn/",)),
    ("capture (own code)", ("capture/",)),
    ("json", ("json/",)),
)


def _parse(path: Path):
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        yield stack.split(";"), int(count)


def _name(frame: str) -> tuple[str, str]:
    """(function label, file) of a frame like `tick (capture/mail/engine.py:36)`."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip(), ""
    file = match.group("file")
    short = re.sub(r"^.*?/(site-packages|lib/python3\.\d+)/", "", file)
    short = re.sub(r"^.*?/main/", "", short)
    return f"{match.group('func')} ({short})", file


def _group(file: str, label: str) -> str:
    path = re.sub(r"^.*?/(site-packages|lib/python3\.\d+)/", "", file)
    for group, needles in _GROUPS:
        for needle in needles:
            if needle.endswith("/") and (path.startswith(needle) or "/" + needle in path):
                return group
            if not needle.endswith("/") and (needle in label or needle in path):
                return group
    return "other (" + (path.split("/")[0] or label) + ")"


def summarize(path: Path, top: int = 15, root: str | None = None) -> str:
    """The summary; with `root`, only stacks through a frame whose label contains it
    count (e.g. the request handler, leaving out a worker's wait for a request)."""
    total = 0
    everything = 0
    inclusive: Counter = Counter()
    own: Counter = Counter()
    leaf: Counter = Counter()
    groups: Counter = Counter()
    for frames, count in _parse(path):
        everything += count
        names = [_name(frame) for frame in frames]
        if root and not any(root in label for label, _ in names):
            continue
        total += count
        seen = set()
        for label, file in names:
            if label in seen:
                continue
            seen.add(label)
            inclusive[label] += count
            if re.search(r"(^|/)capture/", file):
                own[label] += count
        label, file = names[-1]
        leaf[label] += count
        groups[_group(file, label)] += count
    if not total:
        return f"{path.name}: no samples"

    def pct(n: int) -> str:
        return f"{100 * n / total:5.1f} %"

    scope = (f"{total} of {everything} samples are in {root!r} ({100 * total / everything:.0f} %); "
             "shares below are of those" if root else f"{total} samples")
    lines = [f"{path.name}: {scope}"]
    lines.append("  Capture's functions, inclusive (on the stack):")
    lines += [f"    {pct(n)}  {label}" for label, n in own.most_common(top)]
    lines.append("  All functions, inclusive:")
    lines += [f"    {pct(n)}  {label}" for label, n in inclusive.most_common(top)]
    lines.append("  Self time by library:")
    small = sum(n for label, n in groups.items() if label.startswith("other") and n < total / 100)
    lines += [f"    {pct(n)}  {label}" for label, n in groups.most_common()
              if not (label.startswith("other") and n < total / 100)]
    if small:
        lines.append(f"    {pct(small)}  other (each under 1 %)")
    lines.append("  Self time by function:")
    lines += [f"    {pct(n)}  {label}" for label, n in leaf.most_common(top)]
    return "\n".join(lines)


def callees(path: Path, function: str, top: int = 15, depth: int = 1) -> str:
    """Where the time of one function goes: its samples split by the frame(s) it
    called (`depth` frames below it), as shares of all the function's samples."""
    total = 0
    split: Counter = Counter()
    for frames, count in _parse(path):
        names = [_name(frame)[0] for frame in frames]
        index = next((i for i, label in enumerate(names) if label.startswith(function + " (")
                      or label == function), None)
        if index is None:
            continue
        total += count
        below = names[index + 1:index + 1 + depth]
        split[" → ".join(below) if below else "(self)"] += count
    if not total:
        return f"{path.name}: {function} not found"
    lines = [f"{path.name}: {function}, {total} samples, split by what it calls:"]
    lines += [f"    {100 * n / total:5.1f} %  {label}" for label, n in split.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--root", help="only stacks through a frame containing this")
    parser.add_argument("--callees", metavar="FUNCTION",
                        help="split one function's samples by what it calls, e.g. show")
    parser.add_argument("--depth", type=int, default=1, help="frames below, with --callees")
    args = parser.parse_args()
    for path in args.paths:
        if args.callees:
            print(callees(path, args.callees, args.top, args.depth))
        else:
            print(summarize(path, args.top, args.root))
        print()


if __name__ == "__main__":
    main()
