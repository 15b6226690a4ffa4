"""`forget`: after it, no PII-tagged column of the warehouse holds any identifier of the person."""

import json

import duckdb
import pytest

from personalization_assets.activation import suppression, tables
from personalization_assets.activation.destinations import FileExport, SignedWebhook
from personalization_assets.activation.engine import SyncSpec, run_sync
from personalization_assets.activation.erasure import PiiTable, forget, process_erasure_queue, resolve, scan
from personalization_assets.activation.model import UPSERT
from personalization_assets.activation.sources import segment_members_sql
from personalization_assets.audiences.suppression import suppressed_customers
from personalization_assets.warehouse import WarehouseConnection
from personalization_assets_tests.marts.conftest import NOW, History, ago

from .servers import WebhookReceiver
from personalization_assets_tests.conftest import require_module


def warehouse(conn) -> None:
    """Anna has two CRM records merged into one customer, events under her user and anonymous ids,
    an order, raw payloads mentioning her, and a sync to two destinations. Bob is untouched."""
    h = History()
    for key in ("anna", "bob"):
        h.customer(key)
        h.order(key, ago(days=10))
        h.event(key, "Product Added", ago(days=1), anonymous_id=f"anon-{key}-0001")
    h.rows["core.customer_crosswalk"].append({"record_id": "crm:4242", "customer_key": "anna"})
    h.rows["core.identity_map"].append({"identity_type": "anonymous_id", "identity": "anon-anna-0001", "customer_key": "anna"})
    h.write(conn)
    conn.execute("create table staging.customers (record_id varchar, email varchar, email_raw varchar, phone varchar)")
    conn.execute("insert into staging.customers values ('crm:anna', 'anna@example.com', ' Anna@Example.com', null), "
                 "('crm:4242', 'anna.old@example.com', 'ANNA.OLD@example.com', '+447700900123'), "
                 "('crm:bob', 'bob@example.com', 'bob@example.com', null)")
    conn.execute("create schema raw")
    conn.execute("create table raw.events (message_id varchar, bus_offset bigint, payload varchar)")
    for i, (uid, anon, mail) in enumerate([("anna", "anon-anna-0001", None), (None, "anon-anna-0001", None),
                                           ("bob", "anon-bob-0001", None), ("4242", None, "anna.old@example.com")]):
        doc = {"userId": uid, "anonymousId": anon, "traits": {"email": mail}}
        conn.execute("insert into raw.events values (?, ?, ?)", [f"raw-m{i}", i, json.dumps(doc)])
    conn.execute("create schema if not exists marts")
    conn.execute("create table marts.customer_profiles as select customer_key, email, first_name, locale, country, "
                 "timezone, 'loyal' as rfm_segment, 9 as preferred_send_hour from core.customers")
    conn.execute("create table marts.segment_membership as select 'vip' as segment, customer_key, now() as since "
                 "from core.customers")


PII = [PiiTable("core", "customers"), PiiTable("staging", "orders"), PiiTable("staging", "events"),
       PiiTable("staging", "customers"), PiiTable("raw", "events"), PiiTable("marts", "customer_profiles"),
       PiiTable("marts", "segment_membership", ("customer_key",)), PiiTable("activation", "sync_state"),
       PiiTable("activation", "suppression"), PiiTable("activation", "suppression_propagation")]


@pytest.fixture
def conn(tmp_path):
    raw = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    yield WarehouseConnection(raw, "duckdb")
    raw.close()


def every_text_value(conn) -> set[str]:
    """Every value of every text column of every PII-tagged table, lower-cased."""
    found = set()
    for t in PII:
        if not conn.table_exists(t.schema, t.table):
            continue
        cols = conn.query("select column_name from information_schema.columns where table_schema = ? and table_name = ? "
                          "and data_type = 'VARCHAR'", [t.schema, t.table])["column_name"]
        for c in cols:
            found |= {str(v).lower() for v in conn.query(f"select {c} from {t.name}")[c] if v is not None}
    return found


def test_forget_erases_every_identifier_everywhere_and_leaves_a_receipt(conn, tmp_path, transport):
    warehouse(conn)
    export = FileExport(tmp_path / "files")
    with WebhookReceiver("s") as receiver:
        hook = SignedWebhook(receiver.url, "s", transport)
        for dest in (export, hook):
            run_sync(conn, SyncSpec(dest, "vip", UPSERT, segment_members_sql(conn)))
        tables.prepare(conn, "suppression")
        conn.execute("insert into activation.suppression values ('anna.old@example.com', null, 'bounced', 'sendgrid', ?, null)", [NOW])
        suppression.request_propagation(conn, ["webhook"])

        ids = resolve(conn, "ANNA.OLD@example.com")
        assert ids.customer_keys == {"anna"} and {"crm:anna", "crm:4242"} <= ids.record_ids
        assert ids.emails == {"anna@example.com", "anna.old@example.com"} and ids.anonymous_ids == {"anon-anna-0001"}
        assert "+447700900123" in ids.phones

        receipt = forget(conn, "ANNA.OLD@example.com", PII, destinations=["braze"], now=NOW)
        assert receipt.verified and receipt.destinations == ["braze", "file", "webhook"]
        assert receipt.deleted["raw.events"] == 3 and receipt.deleted["core.customer_crosswalk"] == 2
        erased = process_erasure_queue(conn, [export, hook], now=NOW)
    assert erased == {"file": 1, "webhook": 1}
    assert receiver.erased == [{"emails": ["anna.old@example.com", "anna@example.com"], "customer_keys": ["anna"]}]

    # The proof: a scan of every text column of every PII-tagged table, plus the worked-off queue and
    # the ledger. (A queue row still waiting for its destination holds the identifiers it must send.)
    values = every_text_value(conn)
    done = conn.query("select * from activation.erasure_queue where done_at is not null")
    values |= {str(v).lower() for v in done.astype(str).to_numpy().ravel()}
    values |= {str(v).lower() for v in conn.query("select * from compliance.erasure_ledger").astype(str).to_numpy().ravel()}
    for identifier in ids.searchable():  # long identifiers: not even inside a document
        assert not any(identifier in v for v in values), identifier
    assert not ids.values() & values  # short ones (ids, order and message ids): no whole value left
    assert sum(scan(conn, ids, PII).values()) == 0
    assert all("anna" not in str(f.read_text()).lower() for f in export.files())
    assert "bob@example.com" in values and "anon-bob-0001" in values  # nobody else was touched
    (ledger,) = conn.query("select * from compliance.erasure_ledger").to_dict("records")
    assert ledger["verified"] and ledger["rows_remaining"] == 0 and ledger["rows_deleted"] == sum(receipt.deleted.values())
    assert json.loads(ledger["destinations_queued"]) == ["braze", "file", "webhook"]
    pending = conn.query("select destination from activation.erasure_queue where done_at is null")["destination"]
    assert set(pending) == {"braze"}  # not configured here: it stays queued (hashed people only)


def test_reingested_person_stays_suppressed_by_hash(conn):
    warehouse(conn)
    forget(conn, "anna", PII, now=NOW)
    conn.execute("insert into core.customers (customer_key, email, email_opt_in, consent_processing) "
                 "values ('cus_new', 'Anna@Example.com', true, true)")  # the CRM sends her again
    suppression.write(conn, suppression.build(conn, NOW))
    assert list(suppressed_customers(conn)["customer_key"]) == ["cus_new"]  # the marts keep her out of every segment
    stored = conn.query("select email, customer_key, reason, email_sha256 from activation.suppression order by customer_key")
    assert stored["email"].isna().all() and set(stored["reason"]) == {"erased"}
    assert "cus_new" in set(stored["customer_key"])


def test_forget_an_unknown_person_is_a_clear_error(conn):
    warehouse(conn)
    with pytest.raises(LookupError, match="nothing in the warehouse identifies .nobody."):
        forget(conn, "nobody", PII)


def test_a_person_sharing_her_phone_and_street_keeps_all_their_data(conn):
    """Bob lives with Anna: same landline, same street. Erasing Anna follows her identity graph
    only; Bob's records, events and the values they share stay (0 collateral erasures)."""
    warehouse(conn)
    conn.execute("alter table staging.customers add column street varchar")
    conn.execute("update staging.customers set phone = '+447700900123', street = '1 Mill Lane' "
                 "where record_id in ('crm:bob', 'crm:4242')")
    conn.execute("insert into raw.events values ('raw-m9', 9, ?)",
                 [json.dumps({"userId": "bob", "traits": {"phone": "+447700900123", "street": "1 Mill Lane"}})])
    bob = resolve(conn, "bob@example.com")
    assert "+447700900123" in bob.shared_phones
    held = {t: n for t, n in scan(conn, bob, PII).items() if n}
    assert sum(held.values()) >= 8

    receipt = forget(conn, "anna.old@example.com", PII, now=NOW)

    assert receipt.verified and sum(receipt.deleted.values()) > 0
    assert {t: n for t, n in scan(conn, bob, PII).items() if n} == held  # every row of Bob's is still there
    assert conn.query("select phone, street from staging.customers where record_id = 'crm:bob'").to_dict("records") == \
        [{"phone": "+447700900123", "street": "1 Mill Lane"}]
    assert conn.scalar("select count(*) from raw.events where message_id = 'raw-m9'") == 1
    assert conn.scalar("select count(*) from staging.customers where record_id in ('crm:anna', 'crm:4242')") == 0


def test_an_address_two_customers_share_is_refused_not_guessed(conn):
    warehouse(conn)
    conn.execute("insert into core.customers (customer_key, email) values ('carol', 'anna@example.com')")
    with pytest.raises(LookupError, match="address of 2 customers .anna, carol.: name the customer key"):
        forget(conn, "anna@example.com", PII, now=NOW)
    assert conn.scalar("select count(*) from core.customers where customer_key in ('anna', 'carol')") == 2
    assert forget(conn, "carol", PII, now=NOW).verified  # by key: exactly her
    assert conn.scalar("select count(*) from core.customers where customer_key = 'anna'") == 1


def test_pending_destination_deletions_are_encrypted_and_survive_verification(conn, erasure_keys):
    """Her Mailchimp deletion waits in the queue (by address, as Mailchimp erases), encrypted;
    the receipt is verified at once, and the key goes when the destination confirms."""
    warehouse(conn)
    receipt = forget(conn, "anna@example.com", PII, destinations=["mailchimp"], now=NOW)
    assert receipt.verified
    queued = conn.query("select email, customer_key from activation.erasure_queue where done_at is null")
    assert len(queued) == 3 and all(str(v).startswith("aesgcm:") for v in queued.stack())
    assert not any("anna" in str(v) for v in queued.stack())
    assert len(list(erasure_keys.glob("*.key"))) == 1

    class Recorder:
        name, batch_size, modes, calls = "mailchimp", 500, frozenset(), []

        def delete(self, emails, keys):
            self.calls.append((emails, keys))

    assert process_erasure_queue(conn, [Recorder()], now=NOW) == {"mailchimp": 1}
    assert Recorder.calls == [(["anna.old@example.com", "anna@example.com"], ["anna"])]
    assert list(erasure_keys.glob("*.key")) == []
    assert conn.scalar("select count(*) from activation.erasure_queue where email is not null or customer_key is not null") == 0


def test_forget_on_snowflake_dialect():
    """The same SQL on Snowflake's dialect (fakesnow): exact, verified, the queue encrypted."""
    require_module("fakesnow")
    from personalization_assets_tests.marts.conftest import fakesnow_connection

    with fakesnow_connection() as conn:
        warehouse(conn)
        receipt = forget(conn, "ANNA.OLD@example.com", PII, destinations=["braze"], now=NOW)
        assert receipt.verified and receipt.deleted["raw.events"] == 3 and receipt.deleted["staging.customers"] == 2
        assert conn.scalar("select count(*) from staging.customers where record_id = 'crm:bob'") == 1
        queued = conn.query("select email from activation.erasure_queue where email is not null")["email"]
        assert len(queued) == 2 and all(v.startswith("aesgcm:") for v in queued)
