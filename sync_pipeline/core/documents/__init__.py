"""Rows → documents in Arrow: cleansing, transforms, JSON text, index mappings, diffs."""
