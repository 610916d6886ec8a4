"""Document versions ordered by what was read, not by a column the application controls.

Every statement that reads rows for Elasticsearch also reads the version of its
own snapshot (`VERSION_SQL`, an InitPlan evaluated once per statement with the
statement's snapshot). The version is derived from that snapshot alone:

    2^53  +  xmax · 2^16  +  (2^16 − 1 − |xip|)

where `xmax` is the first transaction id not yet assigned when the snapshot
was taken and `xip` the transactions still in progress then. PostgreSQL
snapshots only grow over time: a later snapshot has an xmax at least as
large, and with an equal xmax no new transaction id was assigned in between,
so its in-progress set can only have shrunk. So a snapshot that sees a commit
an earlier one did not gets a strictly greater version, and two snapshots with
the same version see exactly the same committed transactions — the same rows,
the same documents. Elasticsearch's `external_gte` then keeps the document of
the newest read whatever order the writes arrive in: a late backfill, a re-sent
staged partition, or a slow drain never replaces what a newer read wrote.

2^53 lies above every version the earlier scheme wrote (updated_at in epoch
microseconds, ~1.8·10^15 today), so existing indexes accept the new versions;
and xmax < 2^47 leaves room for 10^14 transactions below Elasticsearch's 2^63.
"""

from __future__ import annotations

VERSION_BASE = 2**53
XIP_SLOTS = 2**16
VERSION_COLUMN = "__sync_version"

VERSION_SQL = (
    f"(SELECT {VERSION_BASE} + CAST(CAST(pg_snapshot_xmax(snap.s) AS text) AS bigint) * {XIP_SLOTS}"
    f" + {XIP_SLOTS - 1} - least((SELECT count(*) FROM pg_snapshot_xip(snap.s)), {XIP_SLOTS - 1})"
    " FROM (SELECT pg_current_snapshot() AS s) AS snap)"
)
