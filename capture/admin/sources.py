"""Dashboard area: sources (being written)."""

from capture.admin import bp  # noqa: F401
