"""The batch path: a segment sync leaves out the control arm of the segment's holdout and of the
global control (they are ghost exposures), and changes nothing before any assignment exists."""

import duckdb

from personalization_assets.activation.sources import segment_members_sql
from personalization_assets.resources.warehouse import WarehouseConnection


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
