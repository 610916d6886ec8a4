"""An alert as PagerDuty and Microsoft Teams take it (plain Python; Slack's is `Alert.slack_payload`).

The integrations that deliver them (dagster-pagerduty, dagster-msteams) are wired in
`sync_pipeline.defs.alert_destinations`; what they are handed is built here, from an `Alert`
whose title and error are already redacted.
"""

from __future__ import annotations

from typing import Any

from sync_pipeline.core.report.failure_alerts import MAX_ERROR_CHARS, Alert, one_line

PAGERDUTY_SOURCE = "sync_pipeline"
_PAGERDUTY_SUMMARY_MAX = 1024  # the Events API v2 limit
# how impacted the system is, PagerDuty's scale: lost or refused documents and a broken capture
# are errors; a lagging buffer or slot is a warning until the drains catch up
_PAGERDUTY_SEVERITY = {
    "run_failure": "error",
    "check_failure": "error",
    "error_rate": "error",
    "capture_missing": "error",
    "buffer_lag": "warning",
    "slot_lag": "warning",
    "stale": "warning",
}


def pagerduty_event(alert: Alert, source: str = PAGERDUTY_SOURCE) -> dict[str, Any]:
    """Keyword arguments of dagster-pagerduty's `PagerDutyService.EventV2_create`: a trigger, or a
    resolve for a resolved alert, under the alert's dedup key (so the resolve closes the
    incident its trigger opened)."""
    details: dict[str, Any] = {"counts": dict(alert.counts)}
    if alert.partition:
        details["partition"] = alert.partition
    if alert.run_id:
        details["run_id"] = alert.run_id
    if alert.first_error:
        details["first_error"] = alert.first_error[:MAX_ERROR_CHARS]
    return {
        "summary": one_line(alert.title, _PAGERDUTY_SUMMARY_MAX),
        "source": source,
        "severity": "info" if alert.resolved else _PAGERDUTY_SEVERITY.get(alert.kind, "error"),
        "event_action": "resolve" if alert.resolved else "trigger",
        "dedup_key": alert.dedup_key,
        "component": alert.spec or "-",
        "group": PAGERDUTY_SOURCE,
        "event_class": alert.kind,
        "custom_details": details,
    }


def teams_lines(alert: Alert) -> list[str]:
    """The alert as Teams text blocks (Markdown): title first, then one line per fact."""
    lines = [f"**{'✅ ' if alert.resolved else ''}{one_line(alert.title, 300)}**"]
    facts = (("Spec", alert.spec), ("Partition", alert.partition), ("Run id", alert.run_id))
    lines.extend(f"{name}: `{value}`" for name, value in facts if value)
    lines.append(f"Kind: `{alert.kind}`" + (" (resolved)" if alert.resolved else ""))
    if alert.counts:
        lines.append("Counts: " + alert.counts_text())
    if alert.first_error:
        lines.append("First error: " + one_line(alert.first_error, MAX_ERROR_CHARS))
    return lines
