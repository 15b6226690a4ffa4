"""Activation: segments and triggers delivered to e-mail platforms, suppression and erasure.

Plain Python, no Dagster: `destinations/` (one interface, several platforms), `engine` (diffs
against the last acknowledged state, batches, retries, exactly-once keys), `suppression` (the
sticky global list and its propagation), `unsubscribe` (RFC 8058 one-click endpoint), `erasure`
(`forget` a person everywhere, with a receipt).
"""
