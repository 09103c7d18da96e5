"""Leads: the one opt-in, their lifecycle, confirmations, timeline, engagement, queries, exports and imports."""
