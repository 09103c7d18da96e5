"""The sequences of an app: every folder under SEQUENCES_DIR, read by
`capture.mail.sequences` and kept until one of its files changes; within one web
request (or a `looked_at_once` block, the intake's processor) each folder is looked
at once."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from flask import Flask, current_app, has_request_context, request

from capture.mail.sequences import Sequence, load_sequence


class Library:
    """Every sequence under one folder, re-read when its files change."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._cache: dict[str, Sequence] = {}
        self._lock = threading.Lock()

    @classmethod
    def init_app(cls, app: Flask) -> None:
        """Give the app its library, of the folders under SEQUENCES_DIR."""
        app.extensions["capture.mail.sequences"] = cls(app.config["SEQUENCES_DIR"])

    @classmethod
    def current(cls) -> "Library":
        """The current app's library."""
        return current_app.extensions["capture.mail.sequences"]

    def names(self) -> list[str]:
        """The sequence folders, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and not p.name.startswith("."))

    def get(self, name: str) -> Sequence | None:
        """The sequence in folder `name`, loaded fresh if its files changed (looked at
        once per web request: an opt-in asks for its sequences several times)."""
        seen = _seen_in_request(self)
        if name in seen:
            return seen[name]
        seen[name] = found = self._get(name)
        return found

    def _get(self, name: str) -> Sequence | None:
        folder = self.root / name
        if not folder.is_dir() or name.startswith("."):
            return None
        signature = _signature(folder)
        with self._lock:
            cached = self._cache.get(name)
            if cached is not None and cached.signature == signature:
                return cached
            sequence = load_sequence(folder)
            sequence.signature = signature
            self._cache[name] = sequence
            return sequence

    def all(self) -> list[Sequence]:
        """Every sequence, loaded."""
        seen = _seen_in_request(self)
        if "\0all" not in seen:
            seen["\0all"] = [s for name in self.names() if (s := self.get(name)) is not None]
        return seen["\0all"]


# Set by `looked_at_once`: what the block has read of each library.
_HELD: ContextVar[dict | None] = ContextVar("capture_sequences_held", default=None)


@contextmanager
def looked_at_once() -> Iterator[None]:
    """Within the block (outside a request), each folder is looked at once, as in a
    web request: the intake's processor, whose every sign-up asks for its sequences
    (looking at the files each time was a quarter of its work)."""
    token = _HELD.set({})
    try:
        yield
    finally:
        _HELD.reset(token)


def _seen_in_request(library: Library) -> dict:
    """What this web request (or `looked_at_once` block) has read of the library
    already; a new dict, kept by nobody, elsewhere: the scheduler and commands look at
    the files each time."""
    if has_request_context():
        return request.environ.setdefault(f"capture.sequences.{id(library)}", {})
    held = _HELD.get()
    return {} if held is None else held.setdefault(id(library), {})


def _signature(folder: Path) -> tuple:
    """What changes when any file of the folder is added, removed or edited."""
    entries = []
    for path in sorted(folder.iterdir()):
        if path.is_file():
            stat = path.stat()
            entries.append((path.name, stat.st_mtime_ns, stat.st_size))
    return tuple(entries)
