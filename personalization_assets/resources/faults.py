"""The fault points of the crash tests, for the Dagster shells (they live in the Dagster-free
`personalization_assets/faults.py`, so the plain warehouse connection can stop at one too)."""

from ..faults import FAULT_ENV, fault_point

__all__ = ["FAULT_ENV", "fault_point"]
