"""What runs report and alert: metrics, run totals, freshness, failure alerts, redaction."""
