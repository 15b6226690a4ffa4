"""`personalization forget` on the embedded DuckDB warehouse of PERSONALIZATION_DATA_DIR."""

import duckdb

from personalization_assets import cli
from personalization_assets.activation.erasure import scan
from personalization_assets.assets.activation import pii_tables
from personalization_assets.assets import all_definitions
from personalization_assets.warehouse import WarehouseConnection

from .test_erasure import resolve, warehouse


def test_forget_command_erases_and_verifies(local_env, capsys):
    local_env.mkdir(parents=True)
    raw = duckdb.connect(str(local_env / "warehouse.duckdb"))
    conn = WarehouseConnection(raw, "duckdb")
    warehouse(conn)
    ids = resolve(conn, "anna@example.com")
    raw.close()

    assert cli.main(["forget", "anna@example.com"]) == 0
    out = capsys.readouterr().out
    assert "verified" in out and "core.customers" in out
    raw = duckdb.connect(str(local_env / "warehouse.duckdb"))
    conn = WarehouseConnection(raw, "duckdb")
    assert sum(scan(conn, ids, pii_tables(all_definitions())).values()) == 0
    assert conn.scalar("select count(*) from compliance.erasure_ledger where verified") == 1
    raw.close()

    assert cli.main(["forget", "anna@example.com"]) == 0  # again: nothing left, verified again
    assert "0 rows deleted" in capsys.readouterr().out
    assert cli.main(["forget", "anna"]) == 0  # by her key, which nothing holds any more: said so
    assert "was erased already" in capsys.readouterr().out
    assert cli.main(["forget", "nobody"]) == 1
    assert "nothing in the warehouse identifies 'nobody'" in capsys.readouterr().err
