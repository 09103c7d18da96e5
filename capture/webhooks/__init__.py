"""Outgoing webhooks: the events emitted and their delivery."""
