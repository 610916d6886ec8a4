"""Alerts about conditions that last: sent once when the condition starts, once more when it clears.

A sensor looks at its conditions (a lagging buffer, a slot keeping too much WAL, a bypassed
trigger, an index gone stale) on every tick. Without memory a condition lasting an hour would
page on every tick; `track` compares what fires now with the conditions still open from earlier
ticks, which the sensor keeps in its cursor (`open_conditions` reads them back), and says what
to send: a new condition's alert, and a "resolved" alert for each open one no longer firing.
Conditions are keyed by `Alert.dedup_key` (kind and spec), the key PagerDuty dedupes on too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sync_pipeline.core.report.failure_alerts import Alert

OPEN_KEY = "open_alerts"  # where a sensor's cursor keeps its open conditions


@dataclass(frozen=True)
class OpenCondition:
    """What a resolved message needs of the alert that opened the condition."""

    kind: str
    spec: str | None
    title: str
    since: float  # when it was first sent (epoch seconds)

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "spec": self.spec, "title": self.title, "since": self.since}


def open_conditions(cursor: Mapping[str, Any]) -> dict[str, OpenCondition]:
    """The open conditions kept in a sensor's (parsed) cursor; anything malformed is dropped,
    so a cursor from before conditions were tracked starts with none."""
    found: dict[str, OpenCondition] = {}
    raw = cursor.get(OPEN_KEY)
    if not isinstance(raw, dict):
        return found
    for key, value in raw.items():
        try:
            found[str(key)] = OpenCondition(
                kind=str(value["kind"]),
                spec=value.get("spec"),
                title=str(value["title"]),
                since=float(value["since"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return found


def resolved_alert(condition: OpenCondition, now: float) -> Alert:
    """The message that closes `condition`: same kind and spec (so the same dedup key), the
    opening title, and how long it lasted."""
    return Alert(
        kind=condition.kind,
        spec=condition.spec,
        partition=None,
        run_id="",
        counts={"open_seconds": max(0, int(now - condition.since))},
        first_error=None,
        title=f"Resolved: {condition.title}",
        resolved=True,
    )


def track(
    opened: Mapping[str, OpenCondition], firing: Iterable[Alert], now: float
) -> tuple[list[Alert], dict[str, OpenCondition]]:
    """(the alerts to send now, the conditions open after this tick).

    A firing alert whose condition is already open is not sent again; an open condition that
    does not fire any more is sent once as resolved and closed. Two firing alerts of one
    condition in the same tick: the first is sent.
    """
    still_open: dict[str, OpenCondition] = {}
    to_send: list[Alert] = []
    for alert in firing:
        key = alert.dedup_key
        if key in still_open:
            continue
        if key in opened:
            still_open[key] = opened[key]
            continue
        still_open[key] = OpenCondition(alert.kind, alert.spec, alert.title, now)
        to_send.append(alert)
    to_send.extend(resolved_alert(c, now) for key, c in opened.items() if key not in still_open)
    return to_send, still_open


def conditions_json(conditions: Mapping[str, OpenCondition]) -> dict[str, dict[str, Any]]:
    """`conditions` as the cursor keeps them (under `OPEN_KEY`)."""
    return {key: condition.as_json() for key, condition in sorted(conditions.items())}
