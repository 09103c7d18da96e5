"""Dashboard area: outbox (being written)."""

from capture.admin import bp  # noqa: F401
