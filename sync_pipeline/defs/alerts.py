"""Alerts in Dagster: the `AlertChannels` resource, its builder, and the two alert sensors.

`AlertChannels` fans one alert out to every configured channel (webhook and email in
`sync_pipeline.io.notify`, Slack, PagerDuty and Teams through Dagster's integrations in
`defs/alert_destinations.py`); `alert_channels(settings)` builds it with a `dg.EnvVar` for each
SYNC_ALERT_* variable that is set, so URLs, tokens and passwords never show in the Dagster UI.
`run_failure_alerts` and `quality_alerts` turn failed runs, failed checks and high error rates
into alerts (`sync_pipeline.core.report.failure_alerts` formats them).
"""

from dataclasses import replace
from typing import Any, Protocol

import dagster as dg

from sync_pipeline.core.naming import SPEC_TAG
from sync_pipeline.core.report.failure_alerts import (
    Alert,
    alert_from_check,
    alert_from_run_failure,
    error_rate,
    exceeds_error_rate,
    one_line,
)
from sync_pipeline.defs.alert_destinations import send_pagerduty, send_slack, send_teams
from sync_pipeline.defs.runs import failed_checks, run_totals
from sync_pipeline.io.notify import (
    AlertDeliveryError,
    failure_reason,
    send_email,
    send_webhook,
    split_recipients,
)
from sync_pipeline.settings import (
    ALERT_PAGERDUTY_ROUTING_KEY,
    ALERT_SLACK_API_URL,
    ALERT_SLACK_CHANNEL,
    ALERT_SLACK_TOKEN,
    ALERT_SMTP_FROM,
    ALERT_SMTP_HOST,
    ALERT_SMTP_PASSWORD,
    ALERT_SMTP_PORT,
    ALERT_SMTP_TO,
    ALERT_SMTP_USERNAME,
    ALERT_TEAMS_WEBHOOK_URL,
    ALERT_WEBHOOK_URL,
    AlertSettings,
    load,
)


class AlertLog(Protocol):
    """What `deliver` needs of a logger: `logging.Logger` and Dagster's `context.log` both fit."""

    def error(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...
    def warning(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...
    def info(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...


class AlertChannels(dg.ConfigurableResource):
    """Where alerts go: a JSON webhook (Slack-compatible), email, and through Dagster's integrations
    Slack (a bot token and a channel), PagerDuty (an Events API v2 routing key) and Microsoft
    Teams (an incoming webhook). Unset → log only."""

    webhook_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "sync-pipeline@localhost"
    smtp_to: str | None = None  # comma-separated
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_ca_certs: str | None = None
    # through Dagster's integrations (defs/alert_destinations.py)
    slack_token: str | None = None
    slack_channel: str | None = None
    slack_api_url: str | None = None
    pagerduty_routing_key: str | None = None
    teams_webhook_url: str | None = None
    timeout: float = 10.0

    def configured_channels(self) -> list[str]:
        """Names of the channels `deliver` will try: "webhook", "email", "slack", "pagerduty", "teams"."""
        settings = (
            ("webhook", self.webhook_url),
            ("email", self.smtp_host),
            ("slack", self.slack_token and self.slack_channel),
            ("pagerduty", self.pagerduty_routing_key),
            ("teams", self.teams_webhook_url),
        )
        return [name for name, value in settings if value]

    def _send(self, name: str, alert: Alert) -> None:
        """Deliver `alert` by one channel of this (resolved) resource."""
        if name == "webhook":
            send_webhook(str(self.webhook_url), alert, timeout=self.timeout)
        elif name == "email":
            send_email(
                alert,
                host=str(self.smtp_host),
                port=self.smtp_port,
                sender=self.smtp_from,
                recipients=split_recipients(self.smtp_to),
                username=self.smtp_username,
                password=self.smtp_password,
                starttls=self.smtp_starttls,
                ca_certs=self.smtp_ca_certs,
                timeout=self.timeout,
            )
        elif name == "slack":
            send_slack(
                alert, str(self.slack_token), str(self.slack_channel), self.slack_api_url, self.timeout
            )
        elif name == "pagerduty":
            send_pagerduty(alert, str(self.pagerduty_routing_key), self.timeout)
        else:
            send_teams(alert, str(self.teams_webhook_url), self.timeout)

    def _secrets(self) -> tuple[str | None, ...]:
        return (
            self.webhook_url,
            self.smtp_password,
            self.slack_token,
            self.pagerduty_routing_key,
            self.teams_webhook_url,
        )

    def resolved(self) -> "AlertChannels":
        """This resource with its `EnvVar` fields read from the environment.

        Dagster does this itself for resources handed to assets, sensors and hooks; call it (or let
        `deliver` call it) when the resource was built with `EnvVar`s and is used directly.
        """
        values = [getattr(self, name) for name in type(self).model_fields]
        if any(isinstance(v, dg.EnvVar) for v in values) or type(self.smtp_port) is not int:
            return self.process_config_and_initialize()
        return self

    def deliver(self, alert: Alert, log: AlertLog) -> list[str]:
        """Log the alert (error level), then send it to every configured channel.

        Returns the channels that accepted it. A failing channel is logged as a warning (redacted)
        and does not stop the others.
        """
        log.error(alert.text())
        try:
            channels = self.resolved()
        except Exception as exc:  # e.g. an EnvVar whose variable is gone: say so, keep the log line
            reason = one_line(failure_reason(exc).split("Stack Trace:")[0], 500)
            log.warning(f"alert channels not usable, alert only logged: {reason}")
            return []
        delivered: list[str] = []
        for name in channels.configured_channels():
            try:
                channels._send(name, alert)
            except AlertDeliveryError as exc:
                log.warning(f"alert not delivered: {exc}")
                continue
            except Exception as exc:  # a bug in one channel must not silence the others
                log.warning(f"alert not delivered by {name}: {failure_reason(exc, *channels._secrets())}")
                continue
            delivered.append(name)
            log.info(f"alert '{alert.title}' delivered by {name}")
        return delivered


_ENV_FIELDS = (
    ("webhook_url", ALERT_WEBHOOK_URL),
    ("smtp_host", ALERT_SMTP_HOST),
    ("smtp_from", ALERT_SMTP_FROM),
    ("smtp_to", ALERT_SMTP_TO),
    ("smtp_username", ALERT_SMTP_USERNAME),
    ("smtp_password", ALERT_SMTP_PASSWORD),
    ("slack_token", ALERT_SLACK_TOKEN),
    ("slack_channel", ALERT_SLACK_CHANNEL),
    ("slack_api_url", ALERT_SLACK_API_URL),
    ("pagerduty_routing_key", ALERT_PAGERDUTY_ROUTING_KEY),
    ("teams_webhook_url", ALERT_TEAMS_WEBHOOK_URL),
)


def alert_channels(settings: AlertSettings) -> AlertChannels:
    """`AlertChannels` for `settings` (`sync_pipeline.settings.load().alerts`): a `dg.EnvVar` for each
    SYNC_ALERT_* variable that is set (read again when a run or sensor initialises the resource, and
    never shown in the UI), defaults for the rest.

    The SMTP port is a `dg.EnvVar.int` when it is not the default 25. Dagster has no boolean EnvVar
    (`bool` cannot be subclassed), so STARTTLS is the value `settings` read. `settings` must come from
    this process's environment: the EnvVars name its variables, not its values.
    """
    kwargs: dict[str, Any] = {
        field: dg.EnvVar(name) for field, name in _ENV_FIELDS if getattr(settings, field) is not None
    }
    if settings.smtp_port != AlertSettings.smtp_port:
        kwargs["smtp_port"] = dg.EnvVar.int(ALERT_SMTP_PORT)
    kwargs["smtp_starttls"] = settings.smtp_starttls
    kwargs["smtp_ca_certs"] = settings.smtp_ca_certs
    return AlertChannels(**kwargs)


# --- the alert sensors --------------------------------------------------------------------------


def _first_failure_message(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """The root cause of the run's first step failure (Dagster wraps it in its own errors)."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        error = entry.dagster_event.event_specific_data.error
        while error is not None and error.cause is not None:
            error = error.cause
        if error is not None:
            return error.message.strip()
    return None


def alerts_for_failed_run(
    instance: dg.DagsterInstance, run: dg.DagsterRun, message: str | None
) -> list[Alert]:
    counts = run_totals(instance, run.run_id)
    error = _first_failure_message(instance, run.run_id) or message
    return [alert_from_run_failure(run.run_id, run.job_name, run.tags, error, counts)]


def alerts_for_finished_run(
    instance: dg.DagsterInstance, run: dg.DagsterRun, threshold: float | None = None
) -> list[Alert]:
    """One alert per failed asset check, and one when the run's error rate is over the threshold
    (default: SYNC_ALERT_ERROR_RATE, read now, or 0.01)."""
    if threshold is None:
        threshold = load().alerts.error_rate
    spec = run.tags.get(SPEC_TAG)
    alerts = [
        alert_from_check(run.run_id, c["asset_key"], c["check_name"], c["partition"], c["metadata"], spec)
        for c in failed_checks(instance, run.run_id)
    ]
    counts = run_totals(instance, run.run_id)
    if exceeds_error_rate(counts, threshold):
        rate = error_rate(counts["indexed"], counts["failed"], counts["dead_lettered"])
        alert = alert_from_run_failure(run.run_id, run.job_name, run.tags, None, counts)
        alerts.append(
            replace(
                alert, kind="error_rate", title=f"Error rate {rate:.1%} in {run.job_name} ({spec or '-'})"
            )
        )
    return alerts


@dg.run_failure_sensor(
    name="sync_run_failure_alerts",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="one alert per failed run: spec, partition, run id, counts, first error",
)
def run_failure_alerts(context: dg.RunFailureSensorContext, alert_channels: AlertChannels):
    for alert in alerts_for_failed_run(context.instance, context.dagster_run, context.failure_event.message):
        alert_channels.deliver(alert, context.log)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    name="sync_quality_alerts",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="one alert per failed asset check (drift, dead letters) and per error rate over threshold",
)
def quality_alerts(context: dg.RunStatusSensorContext, alert_channels: AlertChannels):
    for alert in alerts_for_finished_run(context.instance, context.dagster_run):
        alert_channels.deliver(alert, context.log)
