"""Dashboard area: pages (being written)."""

from capture.admin import bp  # noqa: F401
