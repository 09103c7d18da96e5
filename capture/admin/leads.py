"""Dashboard area: leads (being written)."""

from capture.admin import bp  # noqa: F401
