"""Prometheus metrics of the trigger engine (names agreed with the monitoring dashboards)."""

from prometheus_client import Counter, Gauge, Histogram

EVENTS_CONSUMED = Counter("triggers_events_consumed_total", "Bus records the trigger engine processed")
EVENTS_SKIPPED = Counter("triggers_events_skipped_total",
                         "Bus records that cannot drive a trigger (malformed)", ["reason"])
CONSUMER_LAG = Gauge("triggers_consumer_lag_events", "Bus records appended but not yet processed")
TIMERS_OPEN = Gauge("triggers_timers_open", "Open trigger timers", ["trigger"])
FIRED = Counter("triggers_fired_total", "Trigger fires recorded in the ledger (exactly once)", ["trigger"])
CANCELLED = Counter("triggers_cancelled_total", "Timers cancelled, by what matched", ["trigger", "reason"])
DEFERRED = Counter("triggers_deferred_total", "Fires deferred to the end of quiet hours", ["trigger"])
SUPPRESSED = Counter("triggers_suppressed_total", "Fires suppressed by a guard or limit",
                     ["trigger", "reason"])
DECISION_LATENCY = Histogram(
    "triggers_decision_latency_seconds",
    "From the moment a timer became decidable (due + allowed lateness, in receive time) to its"
    " fire record", buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
WATERMARK = Gauge("triggers_frontier_timestamp_seconds",
                  "Receive time up to which every bus record is processed")


def observe(decisions, recorded_at: float) -> None:
    """Count engine decisions; only fires that were new in the ledger reach here as 'fire'."""
    for d in decisions:
        if d.kind == "fire":
            FIRED.labels(d.trigger).inc()
            if d.ready_at is not None:
                DECISION_LATENCY.observe(max(0.0, recorded_at - d.ready_at.timestamp()))
        elif d.kind == "cancel":
            CANCELLED.labels(d.trigger, d.reason or "unknown").inc()
        elif d.kind == "defer":
            DEFERRED.labels(d.trigger).inc()
        elif d.kind == "suppress":
            # a trait reason carries the condition, value and as_of: the label keeps its kind only
            SUPPRESSED.labels(d.trigger, (d.reason or "unknown").split(":", 1)[0]).inc()
