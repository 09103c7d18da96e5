"""Segments: the one filter language over leads (parsed, checked, compiled to SQL)."""
