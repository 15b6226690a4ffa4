"""The batch path: a segment sync leaves out the control arm of the segment's holdout and of the
global control (they are ghost exposures), and changes nothing before any assignment exists."""

import duckdb

from personalization_assets.activation.sources import segment_members_sql
from personalization_assets.warehouse import WarehouseConnection


def test_segment_members_leave_out_control_arms():
    conn = WarehouseConnection(duckdb.connect(), "duckdb")
    conn.execute("create schema marts")
    conn.execute("create table marts.segment_membership (segment varchar, customer_key varchar, since timestamptz)")
    conn.execute("create table marts.customer_profiles (customer_key varchar, email varchar, first_name varchar, "
                 "locale varchar, country varchar, timezone varchar, rfm_segment varchar, preferred_send_hour integer)")
    for key in ("a", "b", "c", "d"):
        conn.execute("insert into marts.segment_membership values ('win_back', ?, now())", [key])
        conn.execute("insert into marts.customer_profiles (customer_key, email) values (?, ?)", [key, f"{key}@x.org"])
    sql, _ = segment_members_sql(conn)
    assert sorted(conn.query(sql, ["win_back"]).customer_key) == ["a", "b", "c", "d"]  # no experiments yet
    conn.execute("create table marts.experiment_assignments (experiment varchar, customer_key varchar, arm varchar)")
    conn.execute("insert into marts.experiment_assignments values ('segment:win_back', 'a', 'control'), "
                 "('segment:win_back', 'b', 'treatment'), ('global_control', 'c', 'control'), "
                 "('segment:at_risk', 'd', 'control')")
    sql, _ = segment_members_sql(conn)
    assert sorted(conn.query(sql, ["win_back"]).customer_key) == ["b", "d"]


def test_batch_trigger_emails_leave_out_the_triggers_control_arm():
    from personalization_assets.activation.sources import trigger_fires_sql

    conn = WarehouseConnection(duckdb.connect(), "duckdb")
    for schema in ("activation", "core", "marts"):
        conn.execute(f"create schema {schema}")
    conn.execute("create table activation.trigger_fires (fire_key varchar, trigger varchar, customer_id varchar, outcome varchar)")
    conn.execute("create table core.identity_map (identity_type varchar, identity varchar, customer_key varchar)")
    conn.execute("create table marts.personalization_payloads (customer_key varchar, email varchar, payload varchar)")
    for key in ("a", "b", "c"):
        conn.execute("insert into activation.trigger_fires values (?, 'cart_abandonment', ?, 'fire')", [f"f-{key}", f"u{key}"])
        conn.execute("insert into core.identity_map values ('user_id', ?, ?)", [f"u{key}", key])
        conn.execute("insert into marts.personalization_payloads values (?, ?, '{}')", [key, f"{key}@x.org"])
    conn.execute("create table marts.experiment_assignments (experiment varchar, customer_key varchar, arm varchar)")
    conn.execute("insert into marts.experiment_assignments values ('trigger:cart_abandonment', 'a', 'control'), "
                 "('trigger:cart_abandonment', 'b', 'treatment'), ('global_control', 'c', 'control')")
    sql, _ = trigger_fires_sql(conn)
    assert sorted(conn.query(sql, ["cart_abandonment"]).customer_key) == ["b"]
