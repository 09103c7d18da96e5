"""Leads: the one opt-in, lifecycle, confirmations, engagement, upgrades, queries, exports, imports."""
