"""Helpers and fixtures more than one test module uses (docs/testing.md)."""
