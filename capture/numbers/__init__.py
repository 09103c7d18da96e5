"""Every number: the metrics, the report rollups and what the overview warns about."""
