"""The sync engine's SQL on Snowflake's dialect (fakesnow): diff, mirror removal, suppression by hash."""

from personalization_assets.activation import suppression, tables
from personalization_assets.activation.destinations import FileExport
from personalization_assets.activation.engine import SyncSpec, run_sync
from personalization_assets.activation.model import MIRROR
from personalization_assets.activation.sources import segment_members_sql
from personalization_assets.hashes import identifier_hash
from personalization_assets_tests.marts.conftest import NOW, fakesnow_connection
from personalization_assets_tests.conftest import require_module


def test_mirror_sync_on_snowflake_dialect(tmp_path):
    require_module("fakesnow")
    with fakesnow_connection() as conn:
        conn.execute("create schema if not exists marts")
        conn.execute("create table marts.customer_profiles (customer_key varchar, email varchar, first_name varchar, "
                     "locale varchar, country varchar, timezone varchar, rfm_segment varchar, preferred_send_hour bigint)")
        conn.execute("create table marts.segment_membership (segment varchar, customer_key varchar, since timestamp_tz)")
        for key in ("c1", "c2", "c3"):
            conn.execute("insert into marts.customer_profiles values (?, ?, 'N', 'en', 'GB', 'Europe/London', 'loyal', 9)",
                         [key, f"{key}@x.io"])
            conn.execute("insert into marts.segment_membership values ('vip', ?, current_timestamp)", [key])
        spec = SyncSpec(FileExport(tmp_path), "vip", MIRROR, segment_members_sql(conn))
        assert run_sync(conn, spec).counts()["added"] == 3
        tables.prepare(conn, "suppression")
        suppression.add_erased(conn, [identifier_hash("c2@x.io")], NOW)  # erased: known by hash only
        conn.execute("update marts.customer_profiles set first_name = 'M' where customer_key = 'c3'")
        report = run_sync(conn, spec)
        assert (report.counts()["removed"], report.counts()["changed"]) == (1, 1)
        assert sum(run_sync(conn, spec).counts().values()) == 0
