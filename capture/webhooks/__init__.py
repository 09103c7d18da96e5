"""Outgoing webhooks: the events emitted, their delivery and the owner's endpoints."""
