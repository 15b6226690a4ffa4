"""`personalization forget` on a real demo: exact and complete, with a verified receipt.

Exact: a second customer who shares the person's phone and street keeps every row, event, file
line and guard entry they had. Complete: afterwards no file of the data dir (warehouse, buses,
guard store, trigger ledger, landing and export files) and nothing under DAGSTER_HOME holds a byte
of the person's identifiers (addresses raw and normalized, phones raw and E.164, anonymous ids,
customer key). The demo's stand-ins for the source systems (the CRM file and the shop API's
catalogue) are the sources themselves, not stores of this platform: the CRM tombstone keeps a
re-import from coming back.
"""

import hashlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import orjson
import pytest

from personalization_assets import cli
from personalization_assets.activation.destinations import MailchimpAudience
from personalization_assets.activation.destinations.mailchimp import subscriber_hash
from personalization_assets.activation.erasure import process_erasure_queue, resolve, scan
from personalization_assets.activation.erasure_stores import local_stores
from personalization_assets.assets import all_definitions
from personalization_assets.assets.activation import pii_tables
from personalization_assets.email_events.bus import email_events_bus_url
from personalization_assets.email_events.files import landing_dir
from personalization_assets.realtime.engine import Decision
from personalization_assets.realtime.ledger import Ledger
from personalization_assets import settings
from personalization_assets.warehouse import WarehouseConnection

from .servers import MailchimpServer

SOURCES = ("crm.sqlite", "shop")  # the demo's CRM and shop systems


@pytest.fixture
def demo(tmp_path, monkeypatch):
    data, home = tmp_path / "data", tmp_path / "home"
    for var in ("CRM_DATABASE_URL", "EVENT_BUS_URL", "ORDERS_API_URL", "PERSONALIZATION_DUCKDB_PATH",
                "EMAIL_EVENTS_BUS_URL", "EMAIL_LANDING_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("PERSONALIZATION_DATA_DIR", str(data))
    monkeypatch.setenv("DAGSTER_DEPLOYMENT", "local")
    assert cli.main(["demo", "--scale", "0.2", "--data-dir", str(data), "--dagster-home", str(home)]) == 0
    return data, home


def _open(data: Path) -> tuple[duckdb.DuckDBPyConnection, WarehouseConnection]:
    raw = duckdb.connect(str(data / "warehouse.duckdb"))
    return raw, WarehouseConnection(raw, "duckdb")


PEOPLE = """
select c.customer_key, c.email, c.phone, min(x.record_id) as record_id from core.customers c
join core.customer_crosswalk x using (customer_key)
where c.phone is not null
  and exists (select 1 from activation.sync_state s where s.customer_key = c.customer_key)
  and exists (select 1 from core.identity_map m where m.customer_key = c.customer_key and m.identity_type = 'anonymous_id')
  and exists (select 1 from staging.orders o where o.customer_record_id = x.record_id)
  and exists (select 1 from staging.email_events e where lower(e.email) = lower(c.email))
group by 1, 2, 3 order by 1 limit 2
"""


def _share_phone_and_street(conn: WarehouseConnection, a: tuple, b: tuple) -> None:
    """B gets A's phone and street in every layer (a family sharing a landline and a house)."""
    (street,) = conn.raw.execute("select street from core.customers where customer_key = ?", [a[0]]).fetchone()
    raw_phone = conn.scalar("select phone_raw from staging.customers where record_id = ?", [a[3]])
    conn.execute("update core.customers set phone = ?, street = ? where customer_key = ?", [a[2], street, b[0]])
    conn.execute("update staging.customers set phone = ?, phone_raw = ?, street = ? where record_id in "
                 "(select record_id from core.customer_crosswalk where customer_key = ?)", [a[2], raw_phone, street, b[0]])
    conn.execute("update raw.crm_customers set phone = ?, street = ? where 'crm:' || customer_id in "
                 "(select record_id from core.customer_crosswalk where customer_key = ?)", [raw_phone, street, b[0]])


def _needles(conn: WarehouseConnection, key: str) -> set[str]:
    """Every form of the person's identifiers the platform stored: addresses raw and normalized,
    phones raw and E.164, anonymous ids, the customer key."""
    found = {key}
    for sql in ("select email from core.customers where customer_key = ?",
                "select email_key from core.customers where customer_key = ?",
                "select s.email_raw from staging.customers s join core.customer_crosswalk x using (record_id) where x.customer_key = ?",
                "select s.phone_raw from staging.customers s join core.customer_crosswalk x using (record_id) where x.customer_key = ?",
                "select phone from core.customers where customer_key = ?",
                "select identity from core.identity_map where customer_key = ? and identity_type = 'anonymous_id'"):
        found |= {str(v).strip().lower() for (v,) in conn.raw.execute(sql, [key]).fetchall() if v}
    return found


def _every_identifier(conn: WarehouseConnection) -> set[str]:
    """Every customer's key, address, phone and anonymous id (for the Dagster storage search)."""
    rows = conn.raw.execute("select lower(email) from core.customers where email is not null union "
                            "select phone from core.customers where phone is not null union "
                            "select customer_key from core.customers union "
                            "select identity from core.identity_map where identity_type = 'anonymous_id'").fetchall()
    return {v for (v,) in rows}


def byte_hits(roots: list[Path], needles: set[str], skip: tuple[str, ...] = ()) -> dict[str, set[str]]:
    """{file: needles found in its raw bytes}, ASCII case ignored."""
    hits = {}
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if path.relative_to(root).parts[0] in skip:
                continue
            data = path.read_bytes().lower()
            found = {n for n in needles if n.lower().encode() in data}
            if found:
                hits[str(path.relative_to(root.parent))] = found
    return hits


def _trigger_ledger(path: Path, user_ids: list[str]) -> None:
    """Fires and engine state naming each user, as the trigger engine would have checkpointed them."""
    start = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
    ledger = Ledger(path)
    decisions = [Decision("fire", "cart_abandonment", f"cart_id:cart-{u}", u, start, start + timedelta(hours=1),
                          start + timedelta(hours=1)) for u in user_ids]
    state = {"format": 1, "timers": [["cart_abandonment", f"cart-{u}", 0.0, 0.0, [], [u], u, None, None] for u in user_ids],
             "aliases": {f"anon-of-{u}": u for u in user_ids}, "history": {u: [["cart_abandonment", 1.0]] for u in user_ids},
             "decided": {d.fire_key: 1.0 for d in decisions}}
    ledger.commit(decisions, bus_offset=1, state=state)
    ledger.close()


def _stores_holding(ids) -> dict[str, int]:
    stores = local_stores(settings.data_dir(), settings.event_bus_url(), email_events_bus_url(), landing_dir())
    return {s.name: s.remaining(ids) for s in stores}


def test_forget_is_exact_and_leaves_no_identifier_byte_anywhere(demo, erasure_keys, transport, capsys):
    data, home = demo
    raw, conn = _open(data)
    a, b = raw.execute(PEOPLE).fetchall()
    _share_phone_and_street(conn, a, b)
    uid_a = conn.scalar("select identity from core.identity_map where customer_key = ? and identity_type = 'user_id'", [a[0]])
    uid_b = conn.scalar("select identity from core.identity_map where customer_key = ? and identity_type = 'user_id'", [b[0]])
    _trigger_ledger(data / "triggers.sqlite", [uid_a, uid_b])
    conn.execute("insert into activation.sync_state values ('mailchimp', 'high_value', ?, ?, ?, 'h', 1, true, now())",
                 [a[0], a[0], a[1]])  # she was also synced to Mailchimp, which erases by address
    needles = _needles(conn, a[0])
    everyone = _every_identifier(conn)
    pii = pii_tables(all_definitions())
    ids_b = resolve(conn, b[1])
    assert a[2] in ids_b.shared_phones  # the shared phone (E.164 and raw) is known as shared, not as B's alone
    needles -= ids_b.shared_phones  # B's phone too now: it stays, with B
    b_rows, b_stores = scan(conn, ids_b, pii), _stores_holding(ids_b)
    raw.close()
    assert sum(b_rows.values()) > 10 and b_stores["bus:events"] and b_stores["trigger_guard"] and b_stores["trigger_ledger"]
    before = byte_hits([data], needles, SOURCES)
    holding = {name.split("/")[1] for name in before}  # the stores of the issue each hold her first
    assert {"warehouse.duckdb", "events.db", "landing", "exports"} <= holding, sorted(before)
    raw, conn = _open(data)
    ids_a = resolve(conn, a[1])
    raw.close()
    a_stores = _stores_holding(ids_a)  # the guard store and the ledger key her by ids too short to search as bytes
    assert a_stores["trigger_guard"] and a_stores["trigger_ledger"] and a_stores["bus:events"], a_stores
    assert byte_hits([home], {"***@"}), "Dagster's storage holds the pii assets' previews, masked when written"

    assert cli.main(["forget", a[1].upper()]) == 0  # the first run succeeds, on the address in any case
    assert "verified" in capsys.readouterr().out

    # complete: no byte of her identifiers in any store of the platform, nor in Dagster's storage
    assert byte_hits([data, home], needles, SOURCES) == {}
    assert byte_hits([home], everyone) == {}, "previews of pii assets are masked when written"
    assert _stores_holding(ids_a) == dict.fromkeys(a_stores, 0)
    # exact: B keeps everything, including the phone and street B shares with her
    raw, conn = _open(data)
    assert scan(conn, ids_b, pii) == b_rows and _stores_holding(ids_b) == b_stores  # 0 collateral erasures
    assert conn.scalar("select phone from core.customers where customer_key = ?", [b[0]]) == a[2]
    tombstone = hashlib.sha256(a[1].lower().encode()).hexdigest()  # keeps a CRM re-import unsendable
    assert conn.scalar("select count(*) from activation.suppression where email_sha256 = ? and email is null", [tombstone]) == 1
    ledger = conn.query("select * from compliance.erasure_ledger").iloc[0]
    assert ledger["verified"] and ledger["rows_remaining"] == 0 and ledger["rows_deleted"] > 50
    # the destination that erases by address still can: its queue rows survived, encrypted
    pending = conn.query("select * from activation.erasure_queue where done_at is null")
    assert set(pending["destination"]) == {"mailchimp"} and pending["email"].notna().any()
    assert all(v.startswith("aesgcm:") for v in [*pending["email"].dropna(), *pending["customer_key"].dropna()])
    assert len(list(erasure_keys.glob("*.key"))) == 1
    with MailchimpServer("abc-us6", "L1") as server:
        chimp = MailchimpAudience("abc-us6", "L1", {}, transport, base_url=server.url + "/3.0")
        assert process_erasure_queue(conn, [chimp]) == {"mailchimp": 1}
    assert subscriber_hash(a[1]) in server.deleted
    assert list(erasure_keys.glob("*.key")) == []  # confirmed: the key is shredded
    raw.close()
