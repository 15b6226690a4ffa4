"""Versioned schemas: JSON Schemas of the tracking plan (events/) and Pandera table models (tables.py)."""
