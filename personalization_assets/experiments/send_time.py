"""Send-time choice as an experiment: `preferred_send_hour` used by the sender behind a holdout.

The sender asks `SendTimeGate.schedule` once a fire is cleared to be sent (suppression checks and
holdouts passed). The arm is a hash of customer_key and the experiment's salt, as for every
holdout; both arms are logged in the exposure log at the first decision (both are sent, so
neither is a ghost):
- treatment: held until the customer's preferred hour (local time, from
  marts.customer_profiles), counted from when the engine decided to fire, so asking again
  later gives the same instant;
- control: sent at once, as without the experiment.
A customer whose hour is unknown is logged in their arm and sent at once (intent-to-treat).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .assign import CONTROL, Experiment, assign_arm
from .holdouts import SEND_TIME_KIND, ExposureLog

SEND_HOURS_SQL = ("select customer_key, preferred_send_hour, timezone from marts.customer_profiles"
                  " where preferred_send_hour is not null")


def _zone(name: str | None):
    try:
        return ZoneInfo(name) if name else timezone.utc
    except (ZoneInfoNotFoundError, ValueError):  # an unknown zone counts as UTC, as in marts/profiles.py
        return timezone.utc


def preferred_instant(base: float, hour: int, zone_name: str | None) -> float:
    """The first instant at or after `base` (epoch seconds) whose local hour in the zone is `hour`:
    `base` itself when it already is, else the start of that hour (daylight saving included)."""
    if not 0 <= hour <= 23:
        raise ValueError(f"preferred_send_hour {hour!r} is not an hour of the day (0-23)")
    zone = _zone(zone_name)
    if datetime.fromtimestamp(base, zone).hour == hour:
        return base
    top = base - base % 900  # quarter hours: zones with :30 and :45 offsets start their hours there
    for step in range(1, 4 * 50):
        at = top + 900 * step
        local = datetime.fromtimestamp(at, zone)
        if local.hour == hour and local.minute < 15:
            return at
    raise AssertionError(f"no {hour}:00 in {zone_name} within 50 hours of {base}")  # every zone has one daily


class SendTimeGate:
    """Decides when a cleared fire goes out, and logs the decision with its arm."""

    def __init__(self, experiment: Experiment, log: ExposureLog, clock=time.time, key_of=None):
        if experiment.kind != SEND_TIME_KIND:
            raise ValueError(f"{experiment.name} is not a send-time experiment")
        self.experiment, self.exposures, self.clock = experiment, log, clock
        self.key_of = key_of or (lambda customer_id: None)

    def schedule(self, decision_key: str, customer_id: str | None, decided_at: float | None,
                 customer_key: str | None = None) -> float | None:
        """When to send (epoch seconds) in the treatment arm, or None: send now."""
        customer_key = customer_key or self.key_of(customer_id) or customer_id
        if not customer_key:
            return None
        arm = assign_arm(self.experiment, customer_key)
        self.exposures.log([(self.experiment.name, decision_key, customer_id, customer_key, arm, 0, self.clock())])
        if arm == CONTROL:
            return None
        found = self.exposures.send_hour(customer_key)
        if found is None:
            return None
        return preferred_instant(decided_at if decided_at is not None else self.clock(), *found)


def refresh_send_hours(warehouse_path: str | Path, log: ExposureLog) -> int | None:
    """Copy the preferred hours from a DuckDB warehouse file; None when it is missing or a run
    holds it (the previous copy stays in use), as `delivery.payloads.refresh_from_duckdb`."""
    if not Path(warehouse_path).exists():
        return None
    import duckdb

    try:
        raw = duckdb.connect(str(warehouse_path), read_only=True)
    except duckdb.Error:
        return None
    try:
        found = raw.execute("select count(*) from information_schema.tables where table_schema = 'marts'"
                            " and table_name = 'customer_profiles'").fetchone()[0]
        if not found:
            return None
        rows = [(str(k), int(h), tz) for k, h, tz in raw.execute(SEND_HOURS_SQL).fetchall()]
    finally:
        raw.close()
    return log.sync_send_hours(rows)
