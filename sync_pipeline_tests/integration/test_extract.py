"""The COPY → Arrow window read against a real PostgreSQL: every column type arrives as the
keyset pages (psycopg rows) deliver it, so documents do not depend on the read path."""

import pyarrow as pa
import pytest
import sqlalchemy as sa

from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.core.sql.columns import arrow_schema
from sync_pipeline.core.sql.statements import read_columns
from sync_pipeline.core.sql.versions import VERSION_BASE, VERSION_COLUMN
from sync_pipeline.core.windows import Window
from sync_pipeline.io.postgres import describe_source, iter_pages, libpq_url, stream_window

TABLE = "extract_types_probe"


@pytest.fixture()
def typed_table(pg):
    with pg.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {TABLE}"))
        conn.execute(
            sa.text(
                f"""CREATE TABLE {TABLE} (
                    id int4 PRIMARY KEY, small int2, big int8, real4 float4, real8 float8,
                    amount numeric(12, 3), flag bool, at_utc timestamptz, at_local timestamp, day date,
                    label varchar(20), code char(3), note text, ident uuid, doc jsonb, raw json,
                    words text[], numbers int[], updated_at timestamptz)"""
            )
        )
        conn.execute(
            sa.text(
                f"""INSERT INTO {TABLE}
                SELECT g, g::int2, g * 10000000000, g / 3.0, 'NaN'::float8 * (g % 2) + g, g * 1.125,
                       g % 2 = 0, '2026-03-01 08:00+00'::timestamptz + g * interval '1 second',
                       '2026-03-01 08:00'::timestamp, '2026-03-01'::date + g, 'l' || g, 'c' || (g % 10),
                       E'tab\\there "quoted" 青花 ' || g, md5(g::text)::uuid,
                       jsonb_build_object('g', g, 'nested', jsonb_build_array(1, 'x', null)),
                       '{{"raw": true}}'::json, ARRAY['a', 'b' || g], ARRAY[g, NULL],
                       CASE WHEN g % 5 = 0 THEN NULL ELSE '2026-03-01 08:00+00'::timestamptz END
                FROM generate_series(1, 1200) g"""
            )
        )
        conn.execute(sa.text(f"INSERT INTO {TABLE} (id) VALUES (5000)"))  # NULL in every column
    yield
    with pg.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {TABLE}"))


def test_copy_read_matches_the_keyset_pages_for_every_column_type(typed_table, pg, live):
    spec = parse_specs(
        f"""
specs:
  - name: probe
    source: {{table: {TABLE}, primary_key: id, updated_at: updated_at}}
    target: {{index: probe}}
    partitions: {{start: "2026-01-01"}}
"""
    )[0]
    window = Window(None, None, include_null_updated_at=True)
    with pg.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        columns = describe_source(conn, spec)
        keyset = pa.Table.from_batches(list(iter_pages(conn, spec, columns, window, 500)))
    pages = list(stream_window(libpq_url(live.pg_url), spec, columns, window, page_size=500))
    copied = pa.Table.from_batches(pages, schema=arrow_schema(read_columns(columns)))
    # each read carries its own snapshot's version: compare the rows, not when they were read
    assert copied.column(VERSION_COLUMN).to_pylist()[0] >= VERSION_BASE
    keyset, copied = keyset.drop_columns([VERSION_COLUMN]), copied.drop_columns([VERSION_COLUMN])

    assert max(p.num_rows for p in pages) <= 500
    assert copied.num_rows == keyset.num_rows == 1201
    assert copied.schema == keyset.schema

    def rows(table: pa.Table) -> list[dict]:
        # NaN never equals itself; compare it as a marker
        return [
            {k: "NaN" if v != v else v for k, v in row.items()} for row in table.sort_by("id").to_pylist()
        ]

    expected = rows(keyset)
    differing = [(a, b) for a, b in zip(rows(copied), expected, strict=True) if a != b]
    assert not differing, [{k for k in a if a[k] != b[k]} for a, b in differing[:3]]
    assert any(r["real8"] == "NaN" for r in expected)  # the probe really holds a NaN
