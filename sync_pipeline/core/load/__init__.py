"""Bulk bodies and their outcomes: what one load sends, how it retries, what it counted."""
