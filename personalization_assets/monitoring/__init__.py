"""Operational metrics of the batch pipeline, exported for Prometheus.

Runs are short-lived processes, so rather than pushing from each run to a Pushgateway (which keeps
the last value forever and hides dead jobs), a long-lived exporter reads what the runs already
record: materialization metadata in the Dagster instance and a few warehouse tables.
"""

from .exporter import PipelineCollector, run_exporter
from .metrics import PIPELINE_METRICS

__all__ = ["PIPELINE_METRICS", "PipelineCollector", "run_exporter"]
