"""Thin asset layers over the domain packages, one module per layer or concern.

To add a module: give it a module-level `defs = dg.Definitions(...)` and list it in MODULES.
"""

from importlib import import_module

import dagster as dg

MODULES = [
    "seeds",
    "raw",
    "staging",
    "core",
    "marts",
    "event_stream",
    "realtime",
    "email_events",
    "quality",
    "activation",
    "audiences",
    "experiments",
]


def all_definitions() -> dg.Definitions:
    """The merged definitions of every asset module (assets, checks, sensors, schedules, jobs)."""
    return dg.Definitions.merge(*(import_module(f"{__name__}.{m}").defs for m in MODULES))
