"""Personalization data platform: Dagster assets over plain-Python domain logic."""
