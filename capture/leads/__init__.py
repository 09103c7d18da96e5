"""Leads: the one opt-in, lifecycle, confirmations, timeline, engagement, upgrades, imports."""
