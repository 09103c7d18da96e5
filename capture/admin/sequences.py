"""Dashboard area: sequences (being written)."""

from capture.admin import bp  # noqa: F401
