"""Lasting alert conditions: sent once, resolved once (core/report/alert_state.py), and the PagerDuty
and Teams renderings of an alert (core/report/alert_payloads.py). Plain functions, no server."""

import json

from sync_pipeline.core.report.alert_payloads import pagerduty_event, teams_lines
from sync_pipeline.core.report.alert_state import (
    OPEN_KEY,
    conditions_json,
    open_conditions,
    track,
)
from sync_pipeline.core.report.failure_alerts import Alert, alert_for_buffer_lag, alert_for_capture_missing

SECRET = "hunter2"


def lag(spec: str = "orders", age: float = 700.0) -> Alert:
    return alert_for_buffer_lag(spec, 5, age, "drains not running")


def run_alert(run_id: str, title: str = "Run of orders_sync failed") -> Alert:
    return Alert("run_failure", "orders", "2026-10-05", run_id, {"failed": 3}, None, title)


def test_a_condition_fires_once_stays_silent_and_resolves_once():
    sent, opened = track({}, [lag()], now=100.0)
    assert [a.title for a in sent] == [lag().title] and not sent[0].resolved

    # the next ticks: the same condition (its numbers moved on) is not sent again
    sent, opened = track(opened, [lag(age=715.0)], now=115.0)
    assert sent == []
    sent, opened = track(opened, [lag(age=730.0)], now=130.0)
    assert sent == []

    # it clears: one resolved message, naming the opening title and how long it lasted
    (resolved,), opened = track(opened, [], now=160.0)
    assert resolved.resolved and resolved.kind == "buffer_lag" and resolved.spec == "orders"
    assert resolved.title == f"Resolved: {lag().title}"
    assert resolved.counts == {"open_seconds": 60}
    assert resolved.dedup_key == lag().dedup_key  # PagerDuty closes the incident it opened
    assert opened == {}

    # and stays quiet while it is clear, then fires again when it comes back
    assert track(opened, [], now=175.0) == ([], {})
    sent, _ = track(opened, [lag()], now=190.0)
    assert len(sent) == 1 and not sent[0].resolved


def test_conditions_are_apart_per_kind_and_spec():
    missing = alert_for_capture_missing("orders", ["orders: trigger t disabled"])
    sent, opened = track({}, [lag("orders"), lag("customers"), missing], now=1.0)
    assert len(sent) == 3 and len(opened) == 3
    sent, opened = track(opened, [lag("orders"), missing], now=2.0)
    assert [(a.spec, a.resolved) for a in sent] == [("customers", True)]


def test_open_conditions_survive_the_cursor_round_trip_and_ignore_junk():
    _, opened = track({}, [lag()], now=100.0)
    cursor = json.loads(json.dumps({"max_id": 7, OPEN_KEY: conditions_json(opened)}))
    assert open_conditions(cursor) == opened
    assert track(open_conditions(cursor), [lag()], now=115.0)[0] == []
    # a cursor from before (throttle timestamps) or a damaged one: nothing open
    assert open_conditions({"lag_alerted_at": 5.0}) == {}
    assert open_conditions({OPEN_KEY: {"k": {"kind": "buffer_lag"}, "j": "x"}}) == {}


def test_alerts_about_runs_each_have_their_own_dedup_key():
    first, second = run_alert("run-a"), run_alert("run-b")
    check = run_alert("run-a", "Check no_failed_documents failed on orders_index")
    assert len({first.dedup_key, second.dedup_key, check.dedup_key}) == 3
    assert lag().dedup_key == "sync_pipeline/buffer_lag/orders"


def test_pagerduty_event_triggers_and_resolves_under_one_dedup_key():
    trigger = pagerduty_event(lag())
    assert trigger["event_action"] == "trigger" and trigger["severity"] == "warning"
    assert trigger["dedup_key"] == "sync_pipeline/buffer_lag/orders"
    assert trigger["summary"] == lag().title and trigger["component"] == "orders"
    assert trigger["custom_details"]["counts"] == {"pending": 5, "oldest_age_seconds": 700}
    (resolved,), _ = track(track({}, [lag()], 1.0)[1], [], 2.0)
    resolve = pagerduty_event(resolved)
    assert (resolve["event_action"], resolve["dedup_key"]) == ("resolve", trigger["dedup_key"])


def test_pagerduty_event_is_bounded_and_carries_no_secret():
    alert = Alert("run_failure", "orders", None, "run-a", {}, f"postgresql://u:{SECRET}@db/x", "x" * 5000)
    event = pagerduty_event(alert)
    assert len(event["summary"]) <= 1024 and event["severity"] == "error"
    assert SECRET not in json.dumps(event)


def test_teams_lines_name_title_spec_run_counts_and_error():
    alert = Alert(
        "check_failure", "orders", "2026-10", "run-9", {"dead_lettered": 2}, "mapper_parsing", "Check failed"
    )
    lines = teams_lines(alert)
    assert lines[0] == "**Check failed**"
    text = "\n".join(lines)
    for fact in ("`orders`", "`2026-10`", "`run-9`", "`check_failure`", "dead_lettered=2", "mapper_parsing"):
        assert fact in text
    (resolved,), _ = track(track({}, [lag()], 1.0)[1], [], 2.0)
    assert teams_lines(resolved)[0].startswith("**✅ Resolved:")
