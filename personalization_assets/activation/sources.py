"""What a destination should hold: SQL over the marts, one row per (row_key, person), with the
payload as a JSON string. Suppressed people are filtered later, in one place (`engine`)."""

from __future__ import annotations

from ..experiments.sql import holdout_exclusion
from ..marts.inputs import Sql

PROFILE_FIELDS = ("first_name", "locale", "country", "timezone", "rfm_segment", "preferred_send_hour")


def _json_object(conn: Sql, pairs: dict[str, str]) -> str:
    if conn.dialect == "duckdb":
        return "to_json(struct_pack(" + ", ".join(f"{k} := {v}" for k, v in pairs.items()) + "))::varchar"
    return "to_varchar(object_construct_keep_null(" + ", ".join(f"'{k}', {v}" for k, v in pairs.items()) + "))"


def segment_members_sql(conn: Sql) -> tuple[str, int]:
    """(sql, number of `?` for the segment name): current members with their profile fields."""
    payload = _json_object(conn, {f: f"p.{f}" for f in PROFILE_FIELDS})
    return f"""select m.customer_key as row_key, m.customer_key, lower(p.email) as email, {payload} as payload
from marts.segment_membership m join marts.customer_profiles p on p.customer_key = m.customer_key
where m.segment = ?{holdout_exclusion(conn)}""", 1


def segment_changes_sql(conn: Sql) -> tuple[str, int]:
    """Entered/exited events from `marts.segment_changes`, one row per change and run."""
    when = "cast(c.run_at as varchar)"
    payload = _json_object(conn, {"change": "c.change", "time": when, "name": "'segment_' || c.change"})
    return f"""select c.customer_key || '|' || c.change || '|' || {when} as row_key, c.customer_key,
       lower(p.email) as email, {payload} as payload
from marts.segment_changes c left join marts.customer_profiles p on p.customer_key = c.customer_key
where c.segment = ?""", 1


def trigger_fires_sql(conn: Sql) -> tuple[str, int]:
    """Fired triggers (e.g. cart abandonment) with the merge fields of their customer, for SMTP.
    The segment name given is the trigger name; row_key is the engine's fire_key. Holdouts' control
    arms are left out (this fallback path logs no ghost exposures: the sender service does)."""
    return """select f.fire_key as row_key, m.customer_key, lower(p.email) as email, p.payload
from activation.trigger_fires f
join core.identity_map m on m.identity_type = 'user_id' and m.identity = f.customer_id
join marts.personalization_payloads p on p.customer_key = m.customer_key
where f.outcome = 'fire' and f.trigger = ?""" + holdout_exclusion(conn, "m.customer_key", "'trigger:' || f.trigger"), 1
