"""Collector metrics (names are a contract with the monitoring dashboards and alert rules).

With several uvicorn workers, `run_collector` sets PROMETHEUS_MULTIPROC_DIR before the workers
start, and /metrics aggregates all workers through the multiprocess collector.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter("collector_requests_total", "HTTP requests by endpoint and status code", ["endpoint", "code"])
EVENTS_ACCEPTED = Counter("collector_events_accepted_total", "Events appended to the bus", ["type"])
EVENTS_REJECTED = Counter("collector_events_rejected_total", "Events quarantined, by reason", ["reason"])
REQUEST_FIELDS_IGNORED = Counter("collector_request_fields_ignored_total",
                                 "Batch-level fields left out because they could not be used", ["field"])
# The `reason` label takes only these values: quarantine rules can hold client-chosen JSON paths
# ("order_completed:$.properties.products[417].price"), which would grow the series without bound.
REJECT_REASONS = frozenset({
    "event_not_object", "type", "identity", "event", "groupId", "previousId", "properties", "traits",
    "context", "integrations", "too_deep", "integer_out_of_range", "invalid_text", "unserializable", "event_too_large",
    "timestamp", "originalTimestamp", "sentAt", "internal_error", "validator_error", "schema", "payload",
    "other",
})
EVENTS_DEDUPLICATED = Counter("collector_events_deduplicated_total", "Events dropped as duplicates of a stored messageId")
REQUEST_DURATION = Histogram(
    "collector_request_duration_seconds", "Request latency", ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BUS_APPEND_DURATION = Histogram(
    "collector_bus_append_duration_seconds", "Duration of one group-commit append to the bus",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
LAST_EVENT_TIMESTAMP = Gauge(
    "collector_last_event_timestamp_seconds", "Unix time of the last accepted event", multiprocess_mode="max"
)
WEBHOOK_EVENTS = Counter(
    "collector_webhook_events_total", "Webhook events by provider and outcome", ["provider", "outcome"]
)


def reason_label(rule: str) -> str:
    """The metric label of a quarantine rule: itself when in REJECT_REASONS, else its family."""
    if rule in REJECT_REASONS:
        return rule
    if ":" in rule:
        return "payload" if rule.startswith("payload:") else "schema"
    return "other"


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
