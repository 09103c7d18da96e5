"""Dashboard area: deliveries (being written)."""

from capture.admin import bp  # noqa: F401
