"""Operational metrics of the batch pipeline, exported for Prometheus.

Runs are short-lived processes, so rather than pushing from each run to a Pushgateway (which keeps
the last value forever and hides dead jobs), a long-lived exporter reads what the runs already
record: materialization metadata in the Dagster instance and a few warehouse tables. The exporter
(`exporter.py`, `run_exporter`) is the one module here that reads Dagster; import it by name, so
the metric definitions and warehouse statistics load without Dagster.
"""

from .metrics import PIPELINE_METRICS

__all__ = ["PIPELINE_METRICS"]
