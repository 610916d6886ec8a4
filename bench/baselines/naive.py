"""The naive baseline: the "page out of PostgreSQL, hand it to helpers.bulk" script.

A re-implementation, for measurement only, of the approach described in
shared/reference/seed_article_zh.txt (a Flask blog post on bulk-updating
Elasticsearch from PostgreSQL). What it does, and deliberately nothing more:

- one SQLAlchemy connection (default driver for a ``postgresql://`` URL, i.e.
  psycopg2) runs ``SELECT * FROM <table>`` with ``stream_results=True``, so
  rows come through a server-side cursor;
- ``fetchmany(page_size)`` pages of 1,000 rows each become a ``pandas.DataFrame``;
- the frame is turned into plain dicts with ``to_dict(orient="records")`` — the
  article's "field mapping and cleansing" step is an empty placeholder;
- each dict becomes an ``index`` action with ``_id`` = the row's ``id`` and the
  whole row as ``_source``;
- ``elasticsearch.helpers.bulk`` sends them (its defaults: 500 actions per
  request, ``stats_only=True``), one page after the other, on a single thread.

One deviation, and it favours the baseline: the DataFrame is built with
``dtype=object``. The article's ``pd.DataFrame(batch, columns=...)`` was written
for pandas 1.x/2.x, where a text column holding NULLs stays an object column of
``str``/``None``. Under pandas >= 3 (what this project installs) such a column
becomes an Arrow-backed string column whose NULLs turn into ``NaN``, which the
client serialises as the bare token ``NaN`` and Elasticsearch refuses
(``Non-standard token 'NaN'``), so the literal code fails on the first NULL
text value. ``dtype=object`` restores the behaviour the article relied on and is
also ~35% cheaper than pandas' type inference on this table, so the baseline is,
if anything, measured faster than the literal code would run.

No index is created beforehand (Elasticsearch's dynamic mapping decides the
types), there is no version, no retry policy of its own, no delete handling and
no refresh. Wrapping it in a Flask route, as the article does, adds nothing to
the work, so the function is called directly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd
from elasticsearch import Elasticsearch, helpers
from sqlalchemy import create_engine, text

PAGE_SIZE = 1000  # the article's default page size


@dataclass
class NaiveResult:
    pages: int
    succeeded: int
    failed: int
    seconds: float


def rows_as_frames(engine, query: str, page_size: int = PAGE_SIZE):
    """Stream the query's rows as DataFrames of at most `page_size` rows."""
    with engine.connect() as connection:
        result = connection.execution_options(stream_results=True).execute(text(query))
        columns = list(result.keys())
        while True:
            rows = result.fetchmany(page_size)
            if not rows:
                return
            # dtype=object: see the module docstring ("one deviation")
            yield pd.DataFrame(rows, columns=columns, dtype=object)


def frame_to_records(frame: pd.DataFrame) -> list[dict]:
    """The 'transform' step: nothing but DataFrame → list of dicts."""
    return frame.to_dict(orient="records")


def send_records(es: Elasticsearch, index: str, records: list[dict]) -> tuple[int, int]:
    actions = ({"_index": index, "_id": record["id"], "_source": record} for record in records)
    succeeded, failed = helpers.bulk(es, actions, stats_only=True)
    return succeeded, failed


def naive_sync(pg_url: str, es_url: str, table: str, index: str, page_size: int = PAGE_SIZE) -> NaiveResult:
    """Copy every row of `table` into `index`, the naive way. The caller's URLs are libpq-style."""
    engine = create_engine(pg_url)  # postgresql:// → SQLAlchemy's default PostgreSQL driver
    es = Elasticsearch(es_url, request_timeout=300)
    started = time.perf_counter()
    pages = succeeded = failed = 0
    for frame in rows_as_frames(engine, f"SELECT * FROM {table}", page_size):
        ok, bad = send_records(es, index, frame_to_records(frame))
        pages += 1
        succeeded += ok
        failed += bad
    return NaiveResult(pages, succeeded, failed, time.perf_counter() - started)
