"""Identity merges and unmerges reach destinations through the sync: real receivers on 127.0.0.1
that keep profiles the way a platform does (one per customer_key)."""

import json

import pandas as pd
import pytest

from personalization_assets.activation.destinations import BrazeTrack, SignedWebhook
from personalization_assets.activation.destinations.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from personalization_assets.activation.engine import SyncSpec, run_sync
from personalization_assets.activation.identity_changes import (
    MERGE, UNMERGE, IdentityChange, derive_changes, propagate_identity_changes,
)
from personalization_assets.activation.model import MIRROR, UPSERT
from personalization_assets.activation.sources import segment_members_sql
from personalization_assets.identity.keys import key_for

from .conftest import NOW, Marts
from .servers import BrazeServer, WebhookReceiver

SECRET = "s3cret"
A, B = key_for("crm:1"), key_for("web:2")  # the keys the two people were born with


class ProfileReceiver(WebhookReceiver):
    """A webhook receiver that keeps profiles: rows create and update them, `identity.merge`
    folds one into another, `identity.unmerge` is recorded, `erase` deletes."""

    def __init__(self, secret):
        super().__init__(secret)
        self.profiles: dict[str, set[str]] = {}  # customer_key -> segments
        self.identity: dict[str, dict] = {}  # idempotency key -> identity event

    def handle(self, method, path, headers, body):
        doc = json.loads(body)
        if "identity" in doc:
            self.count += 1
            if not verify(self.secret, headers.get(TIMESTAMP_HEADER, ""), body, headers.get(SIGNATURE_HEADER, "")):
                return 401, {}, {"error": "bad signature"}
            for event in doc["identity"]:
                if event["idempotency_key"] in self.identity:
                    continue
                self.identity[event["idempotency_key"]] = event
                if event["type"] == "identity.merge":
                    self.profiles.setdefault(event["into"], set()).update(self.profiles.pop(event["from"], set()))
            return 200, {}, {}
        seen = set(self.applied)
        answer = super().handle(method, path, headers, body)
        if "erase" in doc:
            for key in doc["erase"]["customer_keys"]:
                self.profiles.pop(key, None)
        for row in doc.get("rows", []):
            if row["idempotency_key"] in seen:
                continue
            segments = self.profiles.setdefault(row["customer_key"], set())
            (segments.discard if row["op"] == "removed" else segments.add)(row["segment"])
        return answer


class World:
    """Crosswalk and marts by hand: records crm:1 and web:2, one or two people."""

    def __init__(self, duck, marts=None):
        if marts is None:  # the marts tables exist already (a file warehouse, reopened)
            marts = Marts.__new__(Marts)
            marts.conn = duck
        self.duck, self.marts = duck, marts
        duck.execute("create schema if not exists core")
        duck.execute("create table if not exists core.customer_crosswalk (record_id varchar, customer_key varchar, "
                     "previous_customer_key varchar)")

    def people(self, crosswalk: dict[str, tuple[str, str | None]], segments: dict[str, list[str]]) -> None:
        self.duck.execute("delete from core.customer_crosswalk")
        self.duck.raw.executemany("insert into core.customer_crosswalk values (?, ?, ?)",
                                  [[r, k, p] for r, (k, p) in crosswalk.items()])
        self.duck.execute("delete from marts.customer_profiles")
        keys = sorted({k for k, _ in crosswalk.values()})
        self.duck.raw.executemany("insert into marts.customer_profiles values (?, ?, ?, 'en-GB', 'GB', 'Europe/London', 'loyal', 9)",
                                  [[k, f"{k}@example.com", f"Name{k[-3:]}"] for k in keys])
        for segment, members in segments.items():
            self.marts.members(segment, members)


def sync(duck, destination, segments=("vip", "lapsed"), mode=MIRROR) -> dict:
    """What the sync assets do: identity changes first, then each segment's diff."""
    moved = propagate_identity_changes(duck, destination, NOW)
    sent = [run_sync(duck, SyncSpec(destination, s, mode, segment_members_sql(duck))).counts() for s in segments]
    return {"identity": moved, "sent": sent}


@pytest.fixture
def world(duck, marts):
    return World(duck, marts)


def hook(receiver, transport):
    return SignedWebhook(url=receiver.url + "/hook", secret=SECRET, transport=transport)


@pytest.mark.parametrize("mode", [MIRROR, UPSERT])
def test_merge_leaves_one_profile_and_unmerge_brings_both_back(duck, world, transport, mode):
    world.people({"crm:1": (A, None), "web:2": (B, None)}, {"vip": [A], "lapsed": [B]})
    with ProfileReceiver(SECRET) as receiver:
        sync(duck, hook(receiver, transport), mode=mode)
        assert receiver.profiles == {A: {"vip"}, B: {"lapsed"}}

        # crm:1 and web:2 are one person: B survives and now is in both segments
        world.people({"crm:1": (B, A), "web:2": (B, B)}, {"vip": [B], "lapsed": [B]})
        before = set(receiver.applied)
        merged = sync(duck, hook(receiver, transport), mode=mode)
        assert merged["identity"]["merged"] == 1
        assert receiver.profiles == {B: {"vip", "lapsed"}}  # one profile: A was merged into B
        events = list(receiver.identity.values())
        assert [(e["type"], e["from"], e["into"]) for e in events] == [("identity.merge", A, B)]
        new_rows = [r for k, r in receiver.applied.items() if k not in before]
        assert not [r for r in new_rows if r["op"] == "added"]  # B is never re-added to vip as a new member
        assert not [r for r in new_rows if r["customer_key"] == A]  # nothing more is sent about A

        count = receiver.count
        assert sync(duck, hook(receiver, transport), mode=mode)["identity"] == {"merged": 0, "unmerged": 0, "deleted": 0}
        assert receiver.count == count  # a re-run sends nothing

        # a steward unlinks them: crm:1 gets its own key back
        world.people({"crm:1": (A, B), "web:2": (B, B)}, {"vip": [A], "lapsed": [B]})
        unmerged = sync(duck, hook(receiver, transport), mode=mode)
        assert unmerged["identity"]["unmerged"] == 1
        assert set(receiver.profiles) == {A, B} and "vip" in receiver.profiles[A]
        split = [e for e in receiver.identity.values() if e["type"] == "identity.unmerge"]
        assert [(e["from"], e["into"]) for e in split] == [(B, sorted([A, B]))]

        count = receiver.count
        again = sync(duck, hook(receiver, transport), mode=mode)
        assert again["identity"]["unmerged"] == 0 and receiver.count == count
    assert duck.scalar("select count(*) from activation.identity_changes") == 2


def test_a_refused_merge_stops_the_sync_and_is_retried(duck, world, transport):
    world.people({"crm:1": (A, None), "web:2": (B, None)}, {"vip": [A, B]})
    with ProfileReceiver(SECRET) as receiver:
        sync(duck, hook(receiver, transport), segments=("vip",))
    world.people({"crm:1": (B, A), "web:2": (B, B)}, {"vip": [B]})
    with ProfileReceiver("another secret") as wrong:  # answers 401: the merge is not acknowledged
        with pytest.raises(Exception, match="401"):
            propagate_identity_changes(duck, hook(wrong, transport), NOW)
    assert duck.scalar("select count(*) from activation.identity_changes") == 0
    assert duck.scalar("select count(*) from activation.sync_state where row_key = ? and present", [A]) == 1
    with ProfileReceiver(SECRET) as receiver:
        assert propagate_identity_changes(duck, hook(receiver, transport), NOW)["merged"] == 1
        assert [e["from"] for e in receiver.identity.values()] == [A]


class BrazeMergeServer(BrazeServer):
    """BrazeServer plus `POST /users/merge` (merge_updates by external_id, at most 50)."""

    def __init__(self, api_key):
        super().__init__(api_key)
        self.merges: list[tuple[str, str]] = []

    def handle(self, method, path, headers, body):
        if path != "/users/merge":
            return super().handle(method, path, headers, body)
        if headers.get("Authorization") != f"Bearer {self.api_key}":
            return 401, {}, {"message": "Invalid API key"}
        updates = json.loads(body)["merge_updates"]
        if len(updates) > 50:
            return 400, {}, {"message": "at most 50 merge_updates"}
        for u in updates:
            old, keep = u["identifier_to_merge"]["external_id"], u["identifier_to_keep"]["external_id"]
            self.merges.append((old, keep))
            gone = self.users.pop(old, None)
            if gone:
                self.users.setdefault(keep, {"segments": set()})["segments"] |= gone["segments"]
        return 202, {}, {"message": "success"}


def test_braze_merges_through_users_merge(duck, world, transport):
    world.people({"crm:1": (A, None), "web:2": (B, None)}, {"vip": [A], "lapsed": [B]})
    with BrazeMergeServer("key") as server:
        braze = BrazeTrack(server.url, "key", transport)
        sync(duck, braze)
        assert set(server.users) == {A, B}
        world.people({"crm:1": (B, A), "web:2": (B, B)}, {"vip": [B], "lapsed": [B]})
        sync(duck, braze)
        assert server.merges == [(A, B)] and set(server.users) == {B}
        assert server.users[B]["segments"] == {"vip", "lapsed"} and server.deleted == []


def test_a_destination_without_merge_deletes_the_old_profile(duck, world, tmp_path):
    from personalization_assets.activation.destinations import FileExport

    world.people({"crm:1": (A, None), "web:2": (B, None)}, {"vip": [A, B]})
    files = FileExport(tmp_path / "exports")
    sync(duck, files, segments=("vip",))
    world.people({"crm:1": (B, A), "web:2": (B, B)}, {"vip": [B]})
    assert sync(duck, files, segments=("vip",))["identity"] == {"merged": 1, "unmerged": 0, "deleted": 1}
    held = set()
    for path in files.files():
        held |= set(files._read(path)["customer_key"])
    assert A not in held and B in held


def test_derive_changes_from_lineage():
    # merged away (born key and previous key both lead to B), split with the key kept, split
    # with the key gone, and an erased key (no lineage) left to the ordinary sync
    lineage = [("A", "B"), ("B", "B"), ("C", "C"), ("C", "D"), ("E", "F"), ("E", "G")]
    changes = derive_changes({"A": 1, "B": 1, "C": 1, "E": 2, "Z": 1}, {"B", "C"}, lineage)
    assert changes == [IdentityChange(MERGE, "A", ("B",), 1), IdentityChange(UNMERGE, "C", ("C", "D")),
                       IdentityChange(UNMERGE, "E", ("F", "G"), 2)]
    assert len({c.change_id for c in changes}) == 3
    assert derive_changes({"A": 1}, set(), []) == []


def test_webhook_sync_asset_carries_a_merge(tmp_path, monkeypatch):
    import dagster as dg

    from personalization_assets.assets import activation
    from personalization_assets.resources.warehouse import DuckDBWarehouse

    monkeypatch.setenv("ACTIVATION_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("ERASURE_KEY_DIR", str(tmp_path / "keys"))
    warehouse = DuckDBWarehouse(database=str(tmp_path / "warehouse.duckdb"))
    with ProfileReceiver(SECRET) as receiver:
        config = {"ops": {"activation__webhook_sync": {"config": {"webhook_url": receiver.url, "segments": ["vip"]}}}}

        def materialize(crosswalk, members) -> dict:
            with warehouse.connect() as conn:
                world = World(conn, Marts(conn) if not conn.table_exists("marts", "customer_profiles") else None)
                world.people(crosswalk, {"vip": members})
            result = dg.materialize([activation.webhook_sync], resources={"warehouse": warehouse}, run_config=config)
            return result.get_asset_materialization_events()[0].materialization.metadata

        first = materialize({"crm:1": (A, None), "web:2": (B, None)}, [A, B])
        assert first["added"].value == 2 and set(receiver.profiles) == {A, B}
        second = materialize({"crm:1": (B, A), "web:2": (B, B)}, [B])
        assert second["identity_merged"].value == 1 and second["removed"].value == 0
        assert set(receiver.profiles) == {B}
        third = materialize({"crm:1": (B, A), "web:2": (B, B)}, [B])
        assert third["identity_merged"].value == 0 and third["added"].value == third["changed"].value == 0


def test_deleting_the_merged_away_profile_spares_the_survivors_address(duck, world, tmp_path):
    from personalization_assets.activation.destinations import FileExport

    class Files(FileExport):  # a destination without a merge call, keyed by address as well
        def delete(self, emails, customer_keys):
            calls.append((list(emails), list(customer_keys)))
            super().delete(emails, customer_keys)

    calls = []
    shared = "update marts.customer_profiles set email = 'family@example.com'"
    world.people({"crm:1": (A, None), "web:2": (B, None)}, {"vip": [A]})  # B is not held there yet
    duck.execute(shared)
    files = Files(tmp_path / "exports")
    sync(duck, files, segments=("vip",))
    world.people({"crm:1": (B, A), "web:2": (B, B)}, {"vip": [B]})
    duck.execute(shared)
    assert sync(duck, files, segments=("vip",))["identity"]["deleted"] == 1
    assert calls == [([], [A])]  # by key only: the survivor uses the address
    held = pd.concat([files._read(p) for p in files.files()])
    assert set(held["customer_key"]) == {B}


def test_braze_split_with_the_old_key_gone_deletes_it(duck, world, transport):
    C = key_for("pos:3")
    world.people({"crm:1": (C, None), "web:2": (C, None)}, {"vip": [C]})
    with BrazeMergeServer("key") as server:
        braze = BrazeTrack(server.url, "key", transport)
        sync(duck, braze, segments=("vip",))
        world.people({"crm:1": (A, C), "web:2": (B, C)}, {"vip": [A, B]})  # C was a false merge of two people
        assert sync(duck, braze, segments=("vip",))["identity"] == {"merged": 0, "unmerged": 1, "deleted": 1}
        assert server.deleted == [C] and set(server.users) - {C} == {A, B}


def test_three_profiles_merged_into_one_in_a_single_run(duck, world, transport):
    C = key_for("pos:3")
    world.people({"crm:1": (A, None), "web:2": (B, None), "pos:3": (C, None)}, {"vip": [A, C], "lapsed": [B]})
    with ProfileReceiver(SECRET) as receiver:
        sync(duck, hook(receiver, transport))
        before = set(receiver.applied)
        world.people({"crm:1": (B, A), "web:2": (B, B), "pos:3": (B, C)}, {"vip": [B], "lapsed": [B]})
        assert sync(duck, hook(receiver, transport))["identity"]["merged"] == 2
        assert receiver.profiles == {B: {"vip", "lapsed"}}
        assert not [r for k, r in receiver.applied.items() if k not in before and r["op"] == "added"]
    held = duck.query("select row_key from activation.sync_state where present order by 1")["row_key"].tolist()
    assert held == [B, B]  # one row per segment, for the survivor only


def test_a_record_that_left_its_born_key_long_ago_is_no_unmerge(duck, world, transport):
    # web:2 was born with key B but belongs to A since before this destination's first sync
    world.people({"crm:1": (A, A), "web:2": (A, A), "pos:3": (B, B)}, {"vip": [A, B]})
    with ProfileReceiver(SECRET) as receiver:
        assert sync(duck, hook(receiver, transport))["identity"] == {"merged": 0, "unmerged": 0, "deleted": 0}
        assert receiver.identity == {} and set(receiver.profiles) == {A, B}


def test_linked_unlinked_and_linked_again_merges_again(duck, world, transport):
    together, apart = {"crm:1": (B, A), "web:2": (B, B)}, {"crm:1": (A, B), "web:2": (B, B)}
    world.people({"crm:1": (A, None), "web:2": (B, None)}, {"vip": [A, B]})
    with ProfileReceiver(SECRET) as receiver:
        sync(duck, hook(receiver, transport))
        for crosswalk, members, profiles in [(together, [B], {B}), (apart, [A, B], {A, B}), (together, [B], {B})]:
            world.people(crosswalk, {"vip": members})
            sync(duck, hook(receiver, transport))
            assert set(receiver.profiles) == profiles
        merges = [e for e in receiver.identity.values() if e["type"] == "identity.merge"]
        assert [(e["from"], e["into"]) for e in merges] == [(A, B), (A, B)]  # two merges, two keys


def test_the_identity_engines_link_and_unlink_reach_the_webhook(duck, marts, transport):
    """Real crosswalks from `identity.resolve`: a steward links Tom to Ann's CRM record (Tom's key
    merges away; Ann's shop record, whose first name conflicts with Tom's, splits off), then unlinks
    them again; the receiver holds exactly the golden keys."""
    from personalization_assets.identity import resolve
    from personalization_assets_tests.identity.test_stewardship import family

    df = family()
    world = World(duck, marts)

    def publish(res) -> set[str]:
        crosswalk = res.crosswalk[["record_id", "customer_key", "previous_customer_key"]].astype(object)
        crosswalk = crosswalk.where(crosswalk.notna(), None)
        world.people({r: (k, p) for r, k, p in crosswalk.itertuples(index=False)}, {})
        keys = sorted(set(crosswalk["customer_key"]))
        marts.members("vip", keys)
        return set(keys)

    def decided(*pairs):
        return pd.DataFrame([{"left_record_id": a, "right_record_id": b, "decision": d} for a, b, d in pairs])

    first = resolve(df)
    linked = resolve(df, previous=first.state(), decisions=decided(("crm:tom", "crm:ann", "link")))
    unlinked = resolve(df, previous=linked.state(), decisions=decided(("crm:tom", "crm:ann", "unlink")))
    key = {name: res.crosswalk.set_index("record_id")["customer_key"] for name, res in
           [("first", first), ("linked", linked), ("unlinked", unlinked)]}
    assert key["linked"]["crm:tom"] == key["linked"]["crm:ann"] and key["first"]["crm:tom"] != key["first"]["crm:ann"]
    with ProfileReceiver(SECRET) as receiver:
        for res in (first, linked, unlinked):
            golden = publish(res)
            sync(duck, hook(receiver, transport), segments=("vip",))
            assert set(receiver.profiles) == golden  # no duplicate, nothing left behind
            count = receiver.count
            sync(duck, hook(receiver, transport), segments=("vip",))
            assert receiver.count == count
    kinds = sorted(e["type"] for e in receiver.identity.values())
    assert "identity.merge" in kinds and "identity.unmerge" in kinds
