"""Text that goes into SQL from configuration: identifiers and literals, quoted one way.

Everything core/ builds as SQL (statements, relation subqueries, key texts,
trigger bodies) quotes through these, so no name from a spec is ever formatted
into SQL raw.
"""

from __future__ import annotations

from sync_pipeline.core.spec.sources import split_table


def quote_ident(name: str) -> str:
    """A PostgreSQL identifier, quoted: embedded quotes doubled, so any text is safe."""
    return '"' + name.replace('"', '""') + '"'


def sql_literal(text: str) -> str:
    """A SQL string literal (for statements that cannot take parameters, such as DDL bodies)."""
    return "'" + text.replace("'", "''") + "'"


def text_literal(text: str) -> str:
    """A SQL string literal for a value read from the data (a key bound in a COPY statement, which
    cannot take parameters): an escape string, so a backslash in it means the same whatever the
    server's standard_conforming_strings."""
    return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def qualified_table(name: str) -> str:
    """`schema.table` (or `table`) quoted part by part."""
    schema, table = split_table(name)
    return ".".join(quote_ident(p) for p in (schema, table) if p)
