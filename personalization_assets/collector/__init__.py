"""Segment-compatible HTTP event collector that appends durably to the event bus."""

from .app import create_app
from .server import run_collector
from .settings import CollectorSettings

__all__ = ["CollectorSettings", "create_app", "run_collector"]
