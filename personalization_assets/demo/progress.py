"""What the demo prints while Dagster runs: one short line per layer as it completes.

A Dagster logger receives every event of the run in the process that runs it; this one keeps the
steps of each layer (the first part of the asset key: seeds, raw, staging, core, marts, ...) and
prints the layer's line when its last step has ended: assets built, rows, seconds, failed checks,
assets held back. It replaces Dagster's console logger, so a failure the demo causes on purpose
prints no coloured ERROR lines or stack traces; the full logs stay in the instance (the UI).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

import dagster as dg

LOGGER_NAME = "demo_progress"
_ENDED = {dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.STEP_SKIPPED}


@dataclass
class _Layer:
    steps: set[str]
    assets: int
    ended: set[str] = field(default_factory=set)
    rows: dict[str, int] = field(default_factory=dict)  # asset built -> rows (once per asset, not per partition)
    seconds: float = 0.0
    failed_checks: list[str] = field(default_factory=list)


def layer_of(key: dg.AssetKey) -> str:
    return key.path[0] if len(key.path) > 1 else "other"


def step_layers(job: dg.JobDefinition) -> dict[str, str]:
    """Step key -> layer, for every step of `job` (asset steps and asset check steps)."""
    out = {}
    for assets_def in job.asset_layer.asset_graph.assets_defs:
        if not assets_def.is_executable:
            continue
        keys = sorted(assets_def.keys) or sorted(c.asset_key for c in assets_def.check_keys)
        if keys:
            out[assets_def.node_def.name] = layer_of(keys[0])
    return out


class LayerProgress:
    """Counts the events of one run and calls `say` with a line per completed layer."""

    def __init__(self, job: dg.JobDefinition, say: Callable[[str], None] = print):
        self.say = say
        self.layer_of_step = step_layers(job)
        assets = defaultdict(int)
        for key in job.asset_layer.executable_asset_keys:
            assets[layer_of(key)] += 1
        steps = defaultdict(set)
        for step, layer in self.layer_of_step.items():
            steps[layer].add(step)
        self.layers = {name: _Layer(steps[name], assets[name]) for name in steps}
        self._started: dict[str, float] = {}
        self.printed: list[str] = []

    def handle(self, event: dg.DagsterEvent) -> None:
        step = event.step_key
        layer = self.layers.get(self.layer_of_step.get(step, ""))
        if layer is None:
            return
        kind = event.event_type
        if kind == dg.DagsterEventType.STEP_START:
            self._started[step] = time.perf_counter()
        elif kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.event_specific_data.materialization
            rows = materialization.metadata.get("dagster/row_count")
            layer.rows[materialization.asset_key.to_user_string()] = int(rows.value) if rows and rows.value else 0
        elif kind == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            check = event.event_specific_data
            if not check.passed:
                layer.failed_checks.append(f"{check.check_name} ({check.severity.value})")
        elif kind in _ENDED and step not in layer.ended:
            layer.ended.add(step)
            if step in self._started:
                layer.seconds += time.perf_counter() - self._started.pop(step)
            if layer.ended >= layer.steps:
                self._print(self.layer_of_step[step], layer)

    def finish(self) -> None:
        """At the end of the run: the layers whose steps never ran (held back) print too."""
        for name, layer in self.layers.items():
            if name not in self.printed:
                self._print(name, layer)

    def _print(self, name: str, layer: _Layer) -> None:
        if name in self.printed:
            return
        self.printed.append(name)
        built = len(layer.rows)
        line = (f"  {name:<11}{built:>3} of {layer.assets:<3} assets {sum(layer.rows.values()):>10,} rows"
                f" {layer.seconds:>6.1f} s")
        if built < layer.assets:
            line += f"   {layer.assets - built} not built"
        if layer.failed_checks:
            line += "   failed: " + ", ".join(layer.failed_checks)
        self.say(line)


def progress_logger(progress: LayerProgress) -> dg.LoggerDefinition:
    """A Dagster logger that feeds every event of the run to `progress` and prints nothing else."""

    class _Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            event = getattr(record, "dagster_event", None)
            if event is not None:
                progress.handle(event)

    @dg.logger(description="One line per layer as it completes (personalization demo).")
    def _progress(_init_context) -> logging.Logger:
        log = logging.getLogger(f"{LOGGER_NAME}.{id(progress)}")
        log.setLevel(logging.DEBUG)
        log.propagate = False
        log.handlers = [_Handler()]
        return log

    return _progress

