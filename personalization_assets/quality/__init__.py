"""Quality gate: event validation, Pandera validation, Snowplow mapping."""

from personalization_assets.quality.events import Violation, validate_event

__all__ = ["Violation", "validate_event"]
