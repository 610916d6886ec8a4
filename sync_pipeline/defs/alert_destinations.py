"""Alerts through Dagster's own integrations: Slack (dagster-slack), PagerDuty (dagster-pagerduty)
and Microsoft Teams (dagster-msteams), beside the webhook and email of `sync_pipeline.io.notify`.

The integrations are the `alerts` extra, imported only when a destination is configured (the
settings refuse a destination whose integration is missing). Each `send_*` raises
`AlertDeliveryError` naming the channel and its host, never the token, routing key or the
webhook's path; the payloads are built from the alert in `sync_pipeline.core.report.alert_payloads`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any
from urllib.parse import urlsplit

from sync_pipeline.core.report.alert_payloads import pagerduty_event, teams_lines
from sync_pipeline.core.report.failure_alerts import Alert
from sync_pipeline.core.report.redact import safe_target
from sync_pipeline.io.notify import AlertDeliveryError, failure_reason

SLACK_API_URL = "https://slack.com/api/"


def send_slack(
    alert: Alert, token: str, channel: str, api_url: str | None = None, timeout: float = 10
) -> None:
    """Post `alert.slack_payload()` (Block Kit) to `channel` with a bot token, through
    dagster-slack's `SlackResource` client; `api_url` replaces Slack's Web API URL."""
    from dagster_slack import SlackResource
    from slack_sdk.errors import SlackApiError

    client = SlackResource(token=token).get_client()
    client.base_url = _with_slash(api_url or SLACK_API_URL)
    client.timeout = int(max(1, timeout))
    target = safe_target(client.base_url)
    payload = alert.slack_payload()
    try:
        client.chat_postMessage(channel=channel, text=payload["text"], blocks=payload["blocks"])
    except SlackApiError as exc:  # Slack answered, and said no: its error code says why
        error = exc.response.get("error") if exc.response is not None else None
        raise AlertDeliveryError(
            "slack", target, f"Slack refused the message: {error or 'unknown'}"
        ) from None
    except Exception as exc:
        raise AlertDeliveryError("slack", target, failure_reason(exc, token)) from None


def send_pagerduty(alert: Alert, routing_key: str, timeout: float = 10) -> None:
    """Send `alert` as an Events API v2 event (trigger, or resolve for a resolved alert) through
    dagster-pagerduty's `PagerDutyService`.

    Its client (pypd) posts to a URL of its own (`pypd.EventV2.base_url`) with no timeout: the
    call runs in a worker thread and is given up after `timeout`, so a hung connection cannot
    hold the sensor (the thread ends when the connection does).
    """
    import pypd
    from dagster_pagerduty import PagerDutyService

    target = safe_target(pypd.EventV2.base_url)
    service = PagerDutyService(routing_key=routing_key)
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pagerduty-alert")
    try:
        worker.submit(service.EventV2_create, **pagerduty_event(alert)).result(timeout=timeout)
    except FutureTimeout:
        raise AlertDeliveryError("pagerduty", target, f"no answer within {timeout:g}s") from None
    except Exception as exc:
        raise AlertDeliveryError("pagerduty", target, failure_reason(exc, routing_key)) from None
    finally:
        worker.shutdown(wait=False)


def teams_payload(alert: Alert) -> dict[str, Any]:
    """The alert as dagster-msteams' adaptive card: one text block per line of `teams_lines`."""
    from dagster_msteams.adaptive_card import AdaptiveCard

    card = AdaptiveCard()
    for line in teams_lines(alert):
        card.add_attachment(text_message=line)
    return card.payload


def send_teams(alert: Alert, hook_url: str, timeout: float = 10) -> None:
    """Post `alert` to a Teams incoming webhook (or a Workflows webhook) through dagster-msteams'
    `MSTeamsResource` client."""
    from dagster_msteams import MSTeamsResource

    target = safe_target(hook_url)
    parts = urlsplit(hook_url)
    secrets = (hook_url, parts.path if len(parts.path) > 1 else None, parts.query)  # the path is the key
    try:
        MSTeamsResource(hook_url=hook_url, timeout=timeout).get_client().post_message(teams_payload(alert))
    except Exception as exc:
        raise AlertDeliveryError("teams", target, failure_reason(exc, *secrets)) from None


def _with_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"
