"""Long reads hold no long snapshot (issue 30, item 13).

`verify`, `verify --fix`, the TRUNCATE reconcile and a rebuild's fill and repair
passes read a whole table. Each key range of it is now read in a transaction of
its own, so no transaction of ours stays open across the read (vacuum is never
held back by it) and what is written meanwhile is seen by the ranges read after
it. Each scenario watches from another session, at every Elasticsearch request
of the read, which of our transactions over the table are open; writes land in
the middle of the read, and every scenario ends in `verify` = 0 drift.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from sync_pipeline.io.ranges import range_transaction


def test_our_sessions_end_an_idle_transaction_and_a_range_read_is_bounded(pg, monkeypatch):
    with pg.connect() as conn:
        assert conn.execute(sa.text("SHOW idle_in_transaction_session_timeout")).scalar_one() == "15min"
        conn.rollback()
    monkeypatch.setenv("SYNC_PG_STATEMENT_TIMEOUT", "0.2")
    with pytest.raises(sa.exc.OperationalError, match="statement timeout"), range_transaction(pg) as conn:
        conn.execute(sa.text("SELECT pg_sleep(2)"))
    with pg.connect() as conn:  # SET LOCAL: the session's own limit is back
        assert conn.execute(sa.text("SHOW statement_timeout")).scalar_one() == "0"
        conn.rollback()
