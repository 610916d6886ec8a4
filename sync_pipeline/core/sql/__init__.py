"""Spec → SQL text: quoting, keys, relations, versions and the statements a read runs."""
