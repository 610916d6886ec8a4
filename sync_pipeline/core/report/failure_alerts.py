"""Failure alerts: what went wrong, formatted once (plain Python, no Dagster, no environment).

The `Alert` dataclass and its renderings (`text`, `subject`, `slack_payload`), and the helpers
sensors use to decide and build alerts (`error_rate`, `exceeds_error_rate`,
`alert_from_run_failure`, `alert_from_check`). Delivery is in `sync_pipeline.io.notify`; the
Dagster resource and sensors are in `sync_pipeline.defs.alerts`.

No message produced here carries a URL password: alert titles and errors go through
`sync_pipeline.core.report.redact.redact` when the alert is created.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sync_pipeline.core.naming import SPEC_TAG, partition_label
from sync_pipeline.core.report.redact import redact, without_values

ALERT_KINDS = (
    "run_failure",
    "check_failure",
    "error_rate",
    "buffer_lag",
    "slot_lag",
    "capture_missing",
    "stale",
)
# a slot in one of these states no longer holds all its WAL (unreserved) or has lost some (lost)
SLOT_AT_RISK = ("unreserved", "lost")

MAX_ERROR_CHARS = 2000  # first_error in a message; Slack caps a section's text at 3000
_SLACK_HEADER_MAX = 150  # Slack's limit for a header block's plain_text

# load totals that count as documents handled; "failed" and "dead_lettered" are the errors
SUCCESS_COUNTS = ("indexed", "deleted", "stale_skipped")


def one_line(text: str, limit: int) -> str:
    """`text` with its whitespace runs (newlines included) collapsed, cut to `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Alert:
    """One failure worth telling a human about. `title` and `first_error` are redacted on creation."""

    kind: str  # one of ALERT_KINDS
    spec: str | None
    partition: str | None
    run_id: str
    counts: dict[str, int]
    first_error: str | None
    title: str
    resolved: bool = False  # the condition this alert's kind and spec name has cleared

    def __post_init__(self) -> None:
        if self.kind not in ALERT_KINDS:
            raise ValueError(f"alert kind must be one of {', '.join(ALERT_KINDS)}, not {self.kind!r}")
        object.__setattr__(self, "title", redact(self.title))
        if self.first_error is not None:  # no credential, and none of a document's own values
            object.__setattr__(self, "first_error", redact(without_values(self.first_error)))

    @property
    def dedup_key(self) -> str:
        """One key per condition: kind and spec, so a lasting condition (a lagging buffer) keeps
        its key from tick to tick and its resolution names the same one; alerts about a run
        (failure, failed check, error rate) add the run and a digest of the title, one each."""
        key = f"sync_pipeline/{self.kind}/{self.spec or '-'}"
        if self.run_id:
            digest = hashlib.sha1(self.title.encode("utf-8")).hexdigest()[:10]
            key += f"/{self.run_id}/{digest}"
        return key

    @property
    def subject(self) -> str:
        """A one-line subject for email."""
        return one_line(f"[sync_pipeline] {self.title}", 200)

    def counts_text(self) -> str:
        return ", ".join(f"{k}={v:,}" for k, v in self.counts.items()) or "-"

    def text(self) -> str:
        """A readable multi-line message for logs and email bodies."""
        lines = [
            self.subject,
            f"kind:        {self.kind}" + (" (resolved)" if self.resolved else ""),
            f"spec:        {self.spec or '-'}",
            f"partition:   {self.partition or '-'}",
            f"run id:      {self.run_id or '-'}",
            f"counts:      {self.counts_text()}",
        ]
        if self.first_error:
            lines.append("first error:")
            lines.extend(f"  {line}" for line in _truncate(self.first_error, MAX_ERROR_CHARS).splitlines())
        return "\n".join(lines)

    def slack_payload(self) -> dict[str, Any]:
        """Slack-compatible incoming-webhook JSON: a fallback `text` plus Block Kit `blocks`."""
        fallback = (
            f"{self.title} | spec {self.spec or '-'} | partition {self.partition or '-'}"
            f" | run {self.run_id or '-'} | {self.counts_text()}"
        )
        fields = [
            ("Spec", self.spec),
            ("Partition", self.partition),
            ("Run id", self.run_id),
            ("Kind", self.kind),
        ]
        blocks: list[dict[str, Any]] = [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": one_line(self.title, _SLACK_HEADER_MAX)},
            },
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{name}*\n{_slack_code(value) if value else '-'}"}
                    for name, value in fields
                ],
            },
        ]
        if self.counts:
            counts = "  ·  ".join(f"{_slack_escape(k)}: *{v:,}*" for k, v in self.counts.items())
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Counts*\n{counts}"}})
        if self.first_error:
            error = _slack_escape(_truncate(self.first_error, MAX_ERROR_CHARS)).replace("```", "'''")
            blocks.append(
                {"type": "section", "text": {"type": "mrkdwn", "text": f"*First error*\n```{error}```"}}
            )
        return {"text": _truncate(fallback, 3000), "blocks": blocks}


def _slack_escape(text: str) -> str:
    """Slack mrkdwn needs only these three escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_code(text: str) -> str:
    return "`" + _slack_escape(one_line(text, 500)).replace("`", "'") + "`"


# --- deciding and building alerts ---------------------------------------------------------------


def error_rate(indexed: int, failed: int, dead_lettered: int) -> float:
    """Share of documents that did not make it: (failed + dead_lettered) / all. 0.0 when nothing ran.

    `indexed` is every document Elasticsearch accepted (`exceeds_error_rate` passes indexed + deleted
    + stale_skipped, so a run of deletes with one failure is not a 100% error rate).
    """
    errors = failed + dead_lettered
    total = indexed + errors
    return errors / total if total > 0 else 0.0


def exceeds_error_rate(counts: Mapping[str, Any], threshold: float) -> bool:
    """True when the error rate of `counts` (load totals: indexed, deleted, stale_skipped, failed,
    dead_lettered; missing keys are 0) is above `threshold` (SYNC_ALERT_ERROR_RATE, read by
    `sync_pipeline.settings`: `load().alerts.error_rate`).
    """

    def count(key: str) -> int:
        return int(_numeric(counts.get(key)) or 0)

    rate = error_rate(sum(map(count, SUCCESS_COUNTS)), count("failed"), count("dead_lettered"))
    return rate > threshold


def _numeric(value: Any) -> int | float | None:
    """An int/float, or a Dagster metadata value wrapping one; bools and everything else → None."""
    if hasattr(value, "value") and not isinstance(value, int | float):
        value = value.value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def alert_from_run_failure(
    run_id: str,
    job_name: str,
    tags: Mapping[str, str],
    error_message: str | None,
    counts: Mapping[str, int],
) -> Alert:
    """An alert for a failed run: spec from the `sync_pipeline/spec` tag, partition from
    `dagster/partition` or the range tags (`start…end`)."""
    spec = tags.get(SPEC_TAG) or None
    partition = partition_label(tags)
    where = " ".join(part for part in (spec, partition) if part)
    return Alert(
        kind="run_failure",
        spec=spec,
        partition=partition,
        run_id=run_id,
        counts={k: int(v) for k, v in counts.items()},
        first_error=error_message or None,
        title=f"Run of {job_name} failed" + (f" ({where})" if where else ""),
    )


def _first_error_from_metadata(metadata: Mapping[str, Any]) -> str | None:
    for key in ("first_error", "error"):
        value = metadata.get(key)
        value = getattr(value, "value", value)
        if value:
            return value if isinstance(value, str) else json.dumps(value, default=str)
    errors = metadata.get("first_errors")
    errors = getattr(errors, "data", getattr(errors, "value", errors))
    if isinstance(errors, str):
        try:
            errors = json.loads(errors)
        except ValueError:
            return errors or None
    if isinstance(errors, list | tuple) and errors:
        first = errors[0]
        return first if isinstance(first, str) else json.dumps(first, default=str)
    return None


def alert_from_check(
    run_id: str,
    asset_key: str,
    check_name: str,
    partition: str | None,
    metadata: Mapping[str, Any],
    spec: str | None,
) -> Alert:
    """An alert for a failed asset check. Counts are the check's integer metadata values (plain or
    Dagster `MetadataValue`s); the first error comes from `first_error`, `error` or `first_errors`."""
    counts = {}
    for key, value in metadata.items():
        number = _numeric(value)
        if isinstance(number, int):
            counts[key] = number
    where = " ".join(part for part in (spec, partition) if part)
    return Alert(
        kind="check_failure",
        spec=spec,
        partition=partition,
        run_id=run_id,
        counts=counts,
        first_error=_first_error_from_metadata(metadata),
        title=f"Check {check_name} failed on {asset_key}" + (f" ({where})" if where else ""),
    )


def alert_for_buffer_lag(spec: str, pending: int, age_seconds: float, reason: str) -> Alert:
    """The oldest buffered change of a spec waited too long: drains are not keeping up, stuck
    behind a run, or not running at all (`reason`: the sensor's own view of why)."""
    return Alert(
        kind="buffer_lag",
        spec=spec,
        partition=None,
        run_id="",
        counts={"pending": pending, "oldest_age_seconds": int(age_seconds)},
        first_error=reason,
        title=f"Change buffer of {spec} is {int(age_seconds)}s behind ({pending} changes waiting)",
    )


def alert_for_slot_lag(
    spec: str, slot: str, retained_bytes: int, limit_mb: float, wal_status: str | None
) -> Alert:
    """A logical spec's replication slot keeps more WAL than its threshold (counted from its
    restart_lsn: what the server cannot remove), or is `unreserved`/`lost`: the server keeps the
    WAL on disk until a drain confirms, and invalidates the slot past max_slot_wal_keep_size."""
    held = f"holds {retained_bytes / 1048576:.0f} MB of WAL"
    if wal_status in SLOT_AT_RISK:
        title = f"Replication slot of {spec} is {wal_status} ({held})"
    else:
        title = f"Replication slot of {spec} {held} (> {limit_mb:g} MB)"
    return Alert(
        kind="slot_lag",
        spec=spec,
        partition=None,
        run_id="",
        counts={"retained_bytes": retained_bytes, "limit_bytes": int(limit_mb * 1024 * 1024)},
        first_error=f"slot {slot}: wal_status {wal_status or '-'}",
        title=title,
    )


def alert_for_capture_missing(spec: str, gaps: list[str]) -> Alert:
    """Some of a spec's capture triggers are missing, disabled or not `ENABLE ALWAYS`: the
    changes they would record are not buffered, and no drain can bring them (`gaps`: one line
    each, table, trigger and what is wrong)."""
    return Alert(
        kind="capture_missing",
        spec=spec,
        partition=None,
        run_id="",
        counts={"triggers": len(gaps)},
        first_error="\n".join(gaps),
        title=f"Change capture of {spec}: {len(gaps)} trigger(s) missing, disabled or bypassed",
    )


def alert_for_stale(spec: str, stale: list[str]) -> Alert:
    """Dagster's freshness of some of a spec's assets is FAIL: no window synced, or no drain run
    ended, for longer than the asset's freshness policy allows (`stale`: one line per asset)."""
    return Alert(
        kind="stale",
        spec=spec,
        partition=None,
        run_id="",
        counts={"stale_assets": len(stale)},
        first_error="\n".join(stale),
        title=f"Index of {spec} is stale: {', '.join(line.split(':')[0] for line in stale)}",
    )
