"""The prod deployment (Snowflake) for real on fakesnow: same assets, only environment changed."""

import contextlib
import os

from datetime import datetime

import dagster as dg
import pandas as pd
import pytest

from personalization_assets_tests.conftest import require_module

fakesnow = require_module("fakesnow")

from personalization_assets.assets import core, raw, staging  # noqa: E402
from personalization_assets.resources import resources_for  # noqa: E402
from personalization_assets.sources.crm import write_customers  # noqa: E402

ROWS = [
    {"customer_id": i, "first_name": "Ann", "last_name": "Lee", "email": email, "phone": None,
     "street": None, "city": None, "postcode": None, "country": "Germany", "birth_date": None,
     "timezone": "Europe/Berlin", "locale": "de-DE", "email_opt_in": True, "consent_processing": True,
     "created_at": datetime(2026, 1, i), "updated_at": datetime(2026, 2, i)}
    for i, email in [(1, "ann@example.org"), (2, "ANN@example.org "), (3, "bob@example.org"), (4, "broken")]
]


@contextlib.contextmanager
def _warehouse(resources):
    """The configured Snowflake warehouse resource, with its EnvVars resolved as Dagster does."""
    with dg.build_resources({"warehouse": resources["warehouse"]}) as built:
        with built.warehouse.connect() as conn:
            yield conn


def test_prod_path_materializes_and_reads_back(snowflake_env):
    write_customers(os.environ["CRM_DATABASE_URL"], ROWS)
    resources = resources_for("prod")
    selection = [raw.crm_customers, staging.customers, core.customers]
    result = dg.materialize(selection, resources=resources, selection=None)
    assert result.success
    golden = result.output_for_node("customers", "golden")
    assert sorted(golden["email"]) == ["ann@example.org", "bob@example.org"]

    # Read back downstream: a later run loads core.customers from Snowflake through the IO manager.
    @dg.asset(key=["marts", "probe"], ins={"customers": dg.AssetIn(key=["core", "customers"])})
    def probe(customers):
        return pd.DataFrame({"emails": [len(customers)]})

    reread = dg.materialize([probe, *selection], resources=resources, selection=[probe])
    assert reread.success
    assert reread.output_for_node("marts__probe")["emails"].tolist() == [2]

    with _warehouse(resources) as conn:
        quarantined = conn.query("select record_id, rule from quarantine.crm_customers")
        staged = conn.query("select record_id, email from staging.customers order by record_id")
    assert list(quarantined["record_id"]) == ["crm:4"]
    assert list(staged["record_id"]) == ["crm:1", "crm:2", "crm:3"]

    # A second run replaces rows rather than doubling them.
    assert dg.materialize(selection, resources=resources).success
    with _warehouse(resources) as conn:
        assert conn.scalar("select count(*) from raw.crm_customers") == 4
        assert conn.scalar("select count(*) from core.customers") == 2


@contextlib.contextmanager
def recorded_sign_ins():
    """The keyword arguments of every connection opened (to fakesnow, which ignores credentials)."""
    import snowflake.connector

    fake_connect = snowflake.connector.connect
    calls: list[dict] = []

    def record(*args, **kwargs):
        calls.append(kwargs)
        return fake_connect(*args, **kwargs)

    snowflake.connector.connect = record
    try:
        yield calls
    finally:
        snowflake.connector.connect = fake_connect


def rsa_key(passphrase: bytes | None) -> tuple[bytes, bytes]:
    """A fresh private key as PEM (encrypted with `passphrase` if given) and as the DER that the
    connector must receive."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    encryption = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return pem, der


def test_key_pair_sign_in_from_an_encrypted_key_file(snowflake_env, monkeypatch, tmp_path):
    pem, der = rsa_key(b"correct horse")
    (tmp_path / "rsa_key.p8").write_bytes(pem)
    monkeypatch.delenv("SNOWFLAKE_PASSWORD")
    monkeypatch.setenv("SNOWFLAKE_PRIVATE_KEY_PATH", str(tmp_path / "rsa_key.p8"))
    monkeypatch.setenv("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE", "correct horse")
    write_customers(os.environ["CRM_DATABASE_URL"], ROWS)
    with recorded_sign_ins() as sign_ins:
        result = dg.materialize([raw.crm_customers, staging.customers, core.customers, core.identity_review],
                                resources=resources_for("prod"))
    assert result.success
    assert any("schema" in s for s in sign_ins) and any("schema" not in s for s in sign_ins)  # IO manager and warehouse
    for sign_in in sign_ins:
        assert sign_in["private_key"] == der and "password" not in sign_in
        assert (sign_in["account"], sign_in["user"]) == ("acct", "user")


def test_key_pair_sign_in_from_a_pem_in_the_environment(snowflake_env, monkeypatch):
    pem, der = rsa_key(None)
    monkeypatch.delenv("SNOWFLAKE_PASSWORD")
    monkeypatch.setenv("SNOWFLAKE_PRIVATE_KEY", pem.decode())
    with recorded_sign_ins() as sign_ins, _warehouse(resources_for("prod")) as conn:
        assert conn.scalar("select 1") == 1
    assert [s["private_key"] for s in sign_ins] == [der] and "password" not in sign_ins[0]


def test_oauth_sign_in_reads_the_token_file(snowflake_env, monkeypatch, tmp_path):
    (tmp_path / "token").write_text("oauth-access-token")
    monkeypatch.delenv("SNOWFLAKE_PASSWORD")
    monkeypatch.setenv("SNOWFLAKE_OAUTH_TOKEN_FILE", str(tmp_path / "token"))
    with recorded_sign_ins() as sign_ins, _warehouse(resources_for("prod")) as conn:
        assert conn.scalar("select 1") == 1
    (sign_in,) = sign_ins
    assert sign_in["authenticator"] == "oauth" and sign_in["token_file_path"] == str(tmp_path / "token")
    assert "password" not in sign_in and "private_key" not in sign_in


def test_upsert_is_merge_on_snowflake_and_all_or_nothing(snowflake_env, monkeypatch):
    from personalization_assets import warehouse as warehouse_module

    monkeypatch.setattr(warehouse_module, "MERGE_BINDS", 10)  # 2 rows of 5 values per MERGE
    at = pd.Timestamp("2026-03-10 12:00:00.123456", tz="UTC")
    first = pd.DataFrame({"id": [1, 2], "name": ["a", "b"], "seen_at": [at, at], "score": [1.5, None],
                          "ok": pd.array([True, None], dtype="boolean")})
    later = pd.DataFrame({"id": [2, 3, 3], "name": ["B", "c", "c2"], "seen_at": [at + pd.Timedelta(hours=1)] * 3,
                          "score": [2.5, 3.0, 3.5], "ok": pd.array([False, True, True], dtype="boolean")})
    with _warehouse(resources_for("prod")) as conn:
        conn.prepare_table("raw", "things", first)
        statements: list[str] = []
        execute = conn.execute
        monkeypatch.setattr(conn, "execute", lambda sql, params=(): (statements.append(sql), execute(sql, params))[1])
        with conn.transaction():
            assert conn.upsert_frame("raw", "things", first, ["id"]) == 2
        with conn.transaction():
            assert conn.upsert_frame("raw", "things", later, ["id"]) == 2  # id 3 twice: the last one wins
        writes = [s for s in statements if not s.startswith(("begin", "commit", "rollback", "select", "create"))]
        assert writes and all(s.startswith("merge into raw.things") for s in writes), writes
        expected = [(1, "a", at, 1.5, True), (2, "B", at + pd.Timedelta(hours=1), 2.5, False),
                    (3, "c2", at + pd.Timedelta(hours=1), 3.5, True)]

        def stored():
            frame = conn.query("select id, name, seen_at, score, ok from raw.things order by id")
            return [(int(i), n, pd.Timestamp(t).tz_convert("UTC"), s, bool(o))
                    for i, n, t, s, o in frame.itertuples(index=False)]

        assert stored() == expected
        with pytest.raises(RuntimeError, match="after the merge"), conn.transaction():
            conn.upsert_frame("raw", "things", later.assign(name="lost"), ["id"])
            raise RuntimeError("a failure after the merge")
        assert stored() == expected  # the rolled-back MERGE left nothing behind


def test_merge_statements_stay_within_snowflakes_limits():
    from personalization_assets.warehouse import MERGE_BINDS, MERGE_BYTES, _chunks

    wide = [(i, "x" * 100_000) for i in range(20)]  # 2 MB of text: more than one statement may carry
    chunks = list(_chunks(wide, 2))
    assert [row for chunk in chunks for row in chunk] == wide and len(chunks) > 1
    assert all(sum(len(str(v)) for row in chunk for v in row) <= MERGE_BYTES for chunk in chunks)
    narrow = list(_chunks([(i,) for i in range(20_000)], 1))
    assert max(len(chunk) for chunk in narrow) == MERGE_BINDS and sum(map(len, narrow)) == 20_000
