"""Delivery: trigger fires become e-mails, through a durable outbox, exactly once where the
destination deduplicates on a key (see `sender.py` for the guarantees). No Dagster import here."""
