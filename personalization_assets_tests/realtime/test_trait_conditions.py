"""Triggers with `when:` conditions on computed traits: the engine reads the values the warehouse
synced into the trait store (a real SQLite file) at decision time, and suppresses a fire whose
condition fails, naming the condition, the value and its as_of; an unknown customer follows the
trigger's declared policy; the backtest computes the same values from the replayed history."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
import yaml

from personalization_assets.audiences.model import DefinitionError, load_builtin
from personalization_assets.audiences.stream import StreamEvent, trait_at
from personalization_assets.audiences.traits import aligned, declared_traits
from personalization_assets.audiences.traits_store import TraitReader, TraitStore
from personalization_assets.bus import open_bus
from personalization_assets.realtime.backtest import backtest, history_start
from personalization_assets.realtime.definitions import Limits, TriggerSet, load_trigger_set, parse_trigger_set
from personalization_assets.realtime.engine import TriggerEngine
from personalization_assets.realtime.guards import DictGuardProvider
from personalization_assets.realtime.ledger import Ledger
from personalization_assets.realtime.runner import EngineProcess

from personalization_assets_tests.realtime.helpers import LATE, T0, H, M, ev, run

AS_OF = datetime(2026, 6, 1, 11, 0, tzinfo=timezone.utc)
CART = {"name": "vip_cart", "start_on": ["Product Added"], "cancel_on": ["Order Completed"],
        "group_by": ["cart_id"], "cancel_match": ["cart_id", "customer"], "delay": "1h",
        "allowed_lateness": "2m", "cooldown": "0s", "customer_window": "1h"}


def trigger_set(when, **extra) -> TriggerSet:
    """The packaged trait declarations (category_browsers.yaml declares views_7d and spend_30d)."""
    ts = parse_trigger_set({"triggers": [{**CART, "when": when, **extra}]})
    return replace(ts, limits=Limits(cap_messages=100, quiet_hours=None))


VIEWS_3 = [{"computed": "views_7d", "op": ">=", "value": 3}]


def carts(*users):
    """One abandoned cart per user, one minute apart, and a frontier past every due time."""
    events = [ev("Product Added", T0 + i * M, user=u, cart=f"c-{u}") for i, u in enumerate(users)]
    return events, T0 + len(users) * M + H + LATE + M


def decided(decisions) -> dict[str, tuple[str, str | None]]:
    return {d.customer: (d.kind, d.reason) for d in decisions if d.kind in ("fire", "suppress")}


def test_the_engine_reads_the_trait_store_and_suppresses_naming_condition_value_and_as_of(tmp_path):
    store = tmp_path / "trigger_guard.sqlite"
    TraitStore(store).sync([("u1", {"views_7d": 5, "spend_30d": 0}), ("u2", {"views_7d": 1, "spend_30d": 0})],
                           AS_OF)
    reader = TraitReader(store)
    engine = TriggerEngine(trigger_set(VIEWS_3), DictGuardProvider(allow_unknown=True), reader)
    events, until = carts("u1", "u2", "u3")
    out = decided(run(engine, events, until))
    assert out["u1"] == ("fire", None)
    assert out["u2"] == ("suppress", "trait: {computed: views_7d, op: >=, value: 3} with views_7d = 1"
                                     " (as of 2026-06-01T11:00:00+00:00)")
    assert out["u3"] == ("suppress", "trait unknown: views_7d (as of never)")  # not in the store yet
    reader.close()


def test_unknown_policy_send_lets_a_customer_without_values_through_and_any_groups_hold(tmp_path):
    store = tmp_path / "trigger_guard.sqlite"
    TraitStore(store).sync([("u1", {"views_7d": 0, "spend_30d": 60000})], AS_OF)
    when = [{"any": VIEWS_3 + [{"computed": "spend_30d", "op": ">", "value": 50000}]}]
    engine = TriggerEngine(trigger_set(when, trait_unknown="send"), DictGuardProvider(allow_unknown=True),
                           TraitReader(store))
    events, until = carts("u1", "u3")
    out = decided(run(engine, events, until))
    assert out == {"u1": ("fire", None), "u3": ("fire", None)}  # u1 by spend; u3 unknown, sent by policy
    # no store file at all: everyone unknown, the default policy suppresses, nothing raises
    engine = TriggerEngine(trigger_set(VIEWS_3), DictGuardProvider(allow_unknown=True),
                           TraitReader(tmp_path / "absent.sqlite"))
    out = decided(run(engine, *carts("u1")))
    assert out == {"u1": ("suppress", "trait unknown: views_7d (as of never)")}


def test_a_running_engine_process_sees_each_warehouse_sync_without_a_restart(tmp_path):
    now = datetime.now(timezone.utc)  # the SQLite bus stamps receive time with the wall clock
    clock_at = [now]
    store = tmp_path / "trigger_guard.sqlite"
    TraitStore(store).sync([("u1", {"views_7d": 1})], AS_OF)
    bus = open_bus(f"sqlite:///{tmp_path}/events.db")
    ledger = Ledger(tmp_path / "triggers.sqlite")
    proc = EngineProcess(bus, ledger, trigger_set(VIEWS_3), DictGuardProvider(allow_unknown=True),
                         clock=lambda: clock_at[0].timestamp(), traits=TraitReader(store))

    def abandon(cart: str) -> None:
        bus.append([{"type": "track", "event": "Product Added", "userId": "u1", "messageId": cart,
                     "timestamp": clock_at[0].isoformat(), "properties": {"cart_id": cart}}])
        proc.step()
        clock_at[0] += H + 4 * M
        proc.step()

    abandon("c1")
    TraitStore(store).sync([("u1", {"views_7d": 4})], AS_OF + H)  # the warehouse's next refresh
    abandon("c2")
    rows = ledger.conn.execute("select cart, outcome, reason from trigger_fires order by decided_at").fetchall()
    assert [r[:2] for r in rows] == [("cart_id:c1", "suppress"), ("cart_id:c2", "fire")], rows
    assert "views_7d = 1" in rows[0][2] and "2026-06-01T11:00:00+00:00" in rows[0][2]
    ledger.close()
    bus.close()


@pytest.mark.parametrize("when, expected", [
    ([{"computed": "no_such_trait", "op": ">=", "value": 1}], "'no_such_trait' is not declared under traits:"),
    ([{"event": "product viewed", "count": ">= 3", "within": "7d"}], "only computed: conditions"),
    ([{"computed": "views_7d", "op": "~", "value": 1}], "op '~' must be one of"),
    ([{"computed": "views_7d", "op": ">="}], "needs a value"),
    ("views_7d >= 3", "when is a non-empty list"),
])
def test_a_bad_when_is_one_clear_line_naming_the_trigger(when, expected):
    with pytest.raises(DefinitionError) as exc:
        parse_trigger_set(yaml.safe_load(yaml.safe_dump({"triggers": [{**CART, "when": when}]})))
    message = str(exc.value)
    assert "\n" not in message and "trigger 'vip_cart'" in message and expected in message, message


def test_a_bad_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="trait_unknown must be one of"):
        parse_trigger_set({"triggers": [{**CART, "when": VIEWS_3, "trait_unknown": "maybe"}]})


def test_a_trigger_that_is_a_packaged_audience_must_hold_its_when_in_the_audience_rule():
    """cart_abandonment.yaml's rule has no views_7d condition: the engine would check a condition
    that the warehouse audience and the equivalence check never see."""
    doc = {"triggers": [{**CART, "name": "cart_abandonment", "when": VIEWS_3}]}
    with pytest.raises(DefinitionError) as exc:
        parse_trigger_set(doc)
    assert str(exc.value) == ("trigger 'cart_abandonment': when: {computed: views_7d, op: >=, value: 3} is not in"
                              " the rule of audience 'cart_abandonment' (cart_abandonment.yaml); add it there so"
                              " both compilations check it too")
    # category_browsers.yaml holds {computed: views_7d, op: ">=", value: 3} (keys in any order)
    ts = parse_trigger_set({"triggers": [{**CART, "name": "category_browsers",
                                          "when": [{"value": 3, "op": ">=", "computed": "views_7d"}]}]})
    assert [c.trait.name for c in ts.get("category_browsers").trait_conditions] == ["views_7d"]


def test_the_packaged_triggers_parse_and_declare_no_condition_on_undeclared_traits():
    declared = declared_traits(load_builtin())
    for t in load_trigger_set().triggers:
        assert all(c.trait == declared[c.trait.name] for c in t.trait_conditions)


def history() -> pd.DataFrame:
    """Staged-events rows: u1 views 3 products the day before abandoning a cart, u2 views one."""
    rows = []
    day_before = T0 - timedelta(days=1)
    for user, views in (("u1", 3), ("u2", 1)):
        for k in range(views):
            at = day_before + k * M
            rows.append({"message_id": f"v-{user}-{k}", "event": "product viewed", "user_id": user,
                         "anonymous_id": None, "timestamp": at, "received_at": at + M, "cart_id": None,
                         "checkout_id": None, "order_id": None, "category": "shoes"})
    for i, user in enumerate(("u1", "u2", "u3")):
        at = T0 + i * M
        rows.append({"message_id": f"a-{user}", "event": "product added", "user_id": user, "anonymous_id": None,
                     "timestamp": at, "received_at": at, "cart_id": f"c-{user}", "checkout_id": None,
                     "order_id": None, "category": "shoes"})
    return pd.DataFrame(rows)


def test_the_backtest_computes_the_values_the_store_would_have_held_at_each_decision():
    frame = history()
    result = backtest(frame, trigger_set(VIEWS_3))
    out = {r.customer_id: (r.outcome, r.reason) for r in result.itertuples()}
    assert out["u1"] == ("fire", None)
    assert out["u2"][0] == "suppress" and "views_7d = 1" in out["u2"][1]
    # u3's only event is a cart add without a sku, which no declared trait counts (last_carted_sku
    # needs a sku): not a row of the store
    assert out["u3"] == ("suppress", "trait unknown: views_7d (as of never)")
    # the as_of is the bucket edge before the decision, and the value is the stream compilation's
    send_at = result.set_index("customer_id").loc["u2", "send_at"].to_pydatetime()
    traits = declared_traits(load_builtin())
    from personalization_assets.audiences.traits import bucket_seconds

    as_of = aligned(send_at, bucket_seconds(traits))
    assert f"(as of {as_of.isoformat()})" in out["u2"][1]
    u2 = [StreamEvent(r.timestamp.timestamp(), "u2", r.event, r.received_at.timestamp(), {"category": r.category})
          for r in frame[frame["user_id"] == "u2"].itertuples()]
    assert trait_at(traits["views_7d"], u2, as_of.timestamp()) == 1
    # a trait source given explicitly (the live store) is used instead of the replay
    store = {"u2": ({"views_7d": 9}, AS_OF)}

    class Fixed:
        def traits(self, customer_id, now=None):
            return store.get(customer_id, ({}, None))

    # the asset reads history back as far as the longest trait window (views_7d: 7 days)
    assert history_start(trigger_set(VIEWS_3).get("vip_cart"), T0) == T0 - timedelta(days=7)
    result = backtest(frame, trigger_set(VIEWS_3), traits=Fixed())
    assert dict(zip(result["customer_id"], result["outcome"])) == {"u1": "suppress", "u2": "fire", "u3": "suppress"}


@pytest.mark.parametrize("identity", [True, False])
def test_replayed_values_equal_what_the_warehouse_syncs_to_the_store(tmp_path, identity):
    """The backtest's values (ReplayedTraits) and the live engine's (marts.computed_traits folded
    from what had arrived, snapshot on the bucket edge, synced to the store file) are the same
    numbers, trait by trait, customer by customer, with identities resolved through
    core.identity_map (anonymous ids of people 0..9 map to them) or keyed by userId without it."""
    import duckdb

    from personalization_assets.audiences import traits as tr
    from personalization_assets.audiences.model import parse
    from personalization_assets.audiences.traits_store import trait_rows
    from personalization_assets.realtime.backtest import _trait_event, identity_index
    from personalization_assets.realtime.replayed_traits import ReplayedTraits
    from personalization_assets.resources.warehouse import DuckDBWarehouse
    from personalization_assets_tests.audiences.test_traits import AUDIENCE, START, warehouse
    from personalization_assets_tests.audiences.test_traits import history as trait_history

    frame = trait_history(5, people=25, n=1500)
    traits = tr.declared_traits([parse(AUDIENCE)])
    bucket = tr.bucket_seconds(traits)
    now = START + timedelta(days=4, hours=5, minutes=17)
    as_of = tr.aligned(now, bucket)
    path = tmp_path / "w.duckdb"
    warehouse(path, frame[frame["received_at"] <= now], identity=identity)  # what had arrived by then
    index = None
    if identity:
        con = duckdb.connect(str(path))
        index = identity_index(con.execute("select * from core.identity_map").df())
        con.close()
    with DuckDBWarehouse(database=str(path)).connect() as conn:
        conn.execute(tr.STATE_DDL)
        tr.fold(conn, traits, bucket)
        tr.snapshot(conn, traits, as_of, identity)
        TraitStore(tmp_path / "store.sqlite").sync(trait_rows(conn, identity), as_of)
    reader = TraitReader(tmp_path / "store.sqlite")
    replay = ReplayedTraits(traits, traits, index)
    for row in frame.to_dict("records"):
        replay.add(_trait_event(row))
    users = sorted(set(frame["user_id"].dropna()))
    compared = 0
    for user in users:
        live, replayed = reader.traits(user), replay.traits(user, now)
        assert replayed == live, user
        compared += sum(v not in (None, 0) for v in live[0].values())
    assert compared > 60 and len(users) == 25  # not vacuous
    reader.close()


def test_the_trigger_process_reads_traits_from_its_guard_file_and_each_new_sync(tmp_path):
    """`python -m personalization_assets.realtime` as a subprocess on a SQLite bus: with no
    --traits it reads customer_traits from the --guard file, where marts/computed_traits syncs
    them, and a sync made while it runs decides the next fire."""
    import time

    from personalization_assets.realtime.guards import SqliteGuardProvider
    from personalization_assets_tests.realtime.test_processes import _spawn, _stop, _wait_until

    guard_path = tmp_path / "guard.sqlite"
    guard = SqliteGuardProvider(guard_path)
    for user in ("u1", "u2"):
        guard.upsert(user)
    guard.close()
    TraitStore(guard_path).sync([("u1", {"views_7d": 5}), ("u2", {"views_7d": 1})], AS_OF)
    definitions = tmp_path / "triggers.yaml"
    definitions.write_text(yaml.safe_dump({"triggers": [{**CART, "delay": "1s", "allowed_lateness": "0.5s",
                                                         "when": VIEWS_3}]}))
    bus_url = f"sqlite:///{tmp_path}/events.db"
    bus = open_bus(bus_url)
    engine = _spawn(["personalization_assets.realtime", "--bus", bus_url, "--state", str(tmp_path / "t.sqlite"),
                     "--guard", str(guard_path), "--definitions", str(definitions), "--port", "0",
                     "--no-quiet-hours"], tmp_path, "engine")

    def add(user: str, cart: str) -> None:
        bus.append([{"type": "track", "event": "Product Added", "userId": user, "messageId": cart,
                     "timestamp": datetime.now(timezone.utc).isoformat(), "properties": {"cart_id": cart}}])

    ledger = None
    try:
        add("u1", "c1")
        add("u2", "c2")
        ledger = Ledger(tmp_path / "t.sqlite")
        rows = _wait_until(lambda: (lambda r: r if len(r) == 2 else None)(
            ledger.conn.execute("select customer_id, outcome, reason from trigger_fires order by customer_id")
            .fetchall()), 30, "two decisions")
        assert rows[0] == ("u1", "fire", None)
        assert rows[1][:2] == ("u2", "suppress") and "views_7d = 1" in rows[1][2]
        TraitStore(guard_path).sync([("u1", {"views_7d": 5}), ("u2", {"views_7d": 4})], AS_OF + H)
        time.sleep(0.1)
        add("u2", "c3")
        third = _wait_until(lambda: ledger.conn.execute(
            "select outcome, reason from trigger_fires where cart = 'cart_id:c3'").fetchone(), 30, "the c3 decision")
        assert third == ("fire", None)
    finally:
        _stop(engine)
        if ledger is not None:
            ledger.close()
        bus.close()
    assert engine.returncode == 0, (tmp_path / "engine.log").read_text()
