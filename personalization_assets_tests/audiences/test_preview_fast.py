"""The fast preview path gives the same answers as evaluating every audience over the full events view."""

from __future__ import annotations

from datetime import timedelta

import duckdb

from personalization_assets.audiences import preview as pv
from personalization_assets.audiences.model import parse
from personalization_assets.audiences.sql import Relations, membership_sql
from personalization_assets.audiences.warehouse import CUSTOMERS_VIEW, EVENTS_VIEW, create_views
from personalization_assets.resources.warehouse import DuckDBWarehouse

from .test_traits import DAYS, START, history, warehouse

DEFINITIONS = [
    {"name": "shoe_fans", "rule": {"all": [
        {"event": "product viewed", "where": {"category": ["shoes", "it's \"quoted\""]}, "count": ">= 2", "within": "2d"},
        {"event": "order completed", "exists": False, "within": "1d"}]}},
    {"name": "abandoners", "exclusions": ["shoe_fans"], "rule": {
        "event": ["product added"], "exists": True, "between": ["1h", "25h"],
        "not_followed_by": {"event": "order completed"}}},
    {"name": "big_spenders", "rule": {"event": "order completed", "sum": "value_minor", "is": ">= 2000",
                                      "within": "3d"}},
    {"name": "hat_people", "traits": {"top": {"most_frequent": "category", "of": "product viewed", "within": "90m"}},
     "rule": {"computed": "top", "op": "=", "value": "hats"}},
    {"name": "ever_viewed_s1", "rule": {"event": "product viewed", "where": {"sku": "s1"}, "exists": True,
                                        "within": "3650d"}},
]


def test_preview_on_recent_events_equals_the_full_view(tmp_path):
    path = tmp_path / "w.duckdb"
    warehouse(path, history(7, people=40, n=1500))
    audiences = [parse(d) for d in DEFINITIONS]
    known = {a.name: a for a in audiences}
    with DuckDBWarehouse(database=str(path)).connect() as conn:
        create_views(conn, "duckdb", has_identity=True)
        full = Relations(customers=CUSTOMERS_VIEW, events=EVENTS_VIEW)
        nonempty = 0
        for hours in range(6, DAYS * 24, 7):
            at = START + timedelta(hours=hours, minutes=13)
            for a in audiences:
                want = set(conn.query(*membership_sql(a, at, known, full))["customer_key"])
                table = pv.recent_events(conn, [a, *(known[x] for x in a.exclusions)], at, has_identity=True)
                got = set(conn.query(*membership_sql(a, at, known, Relations(customers=CUSTOMERS_VIEW,
                                                                           events=table)))["customer_key"])
                assert got == want, (a.name, at)
                nonempty += bool(want)
            result = pv.preview(conn, audiences[0], audiences, at, full)
            fast = pv.on_warehouse(conn, audiences[0], audiences, at, use_stored=False)
            assert (fast.size, fast.overlap, fast.samples) == (result.size, result.overlap, result.samples)
        assert nonempty > 40  # not vacuous


def test_the_overlap_reads_the_other_audiences_tables_when_their_assets_have_run(tmp_path):
    path = tmp_path / "w.duckdb"
    warehouse(path, history(8, people=40, n=1500))
    audiences = [parse(d) for d in DEFINITIONS]
    known = {a.name: a for a in audiences}
    at = START + timedelta(days=DAYS - 1, hours=5)
    with DuckDBWarehouse(database=str(path)).connect() as conn:
        sizes = {a.name: pv.store_membership(conn, a, known, at) for a in audiences[1:]}
        live = pv.on_warehouse(conn, audiences[0], audiences, at, use_stored=False)
        stored = pv.on_warehouse(conn, audiences[0], audiences, at)
        assert stored.overlap == live.overlap and stored.size == live.size
        assert sum(sizes.values()) > 0
    con = duckdb.connect(str(path))  # a stored table is what is read: change it and the overlap follows
    con.execute("delete from audiences.big_spenders")
    con.close()
    with DuckDBWarehouse(database=str(path)).connect() as conn:
        assert pv.on_warehouse(conn, audiences[0], audiences, at).overlap["big_spenders"] == 0


def test_the_preview_counts_what_a_plain_python_evaluation_of_the_events_counts(tmp_path):
    """Views of a category at least twice in 2 days under any of a person's ids, a spend, no order in
    the last day, evaluated by hand on the staged rows (each resolved through the identity map as
    the events view does) against the preview's size, samples and evidence."""
    path = tmp_path / "w.duckdb"
    frame = history(11, people=40, n=2000)
    warehouse(path, frame)
    audience = parse({"name": "hand_checked", "description": "d", "rule": {"all": [
        {"event": "product viewed", "where": {"category": ["shoes", "hats"]}, "count": ">= 2", "within": "2d"},
        {"any": [{"event": "order completed", "exists": False, "within": "1d"},
                 {"event": "order completed", "sum": "value_minor", "is": ">= 10000", "within": "3d"}]}]}})
    users, devices = {f"u{i}": f"c{i}" for i in range(25)}, {f"a{i}": f"c{i}" for i in range(10)}
    key = [users.get(u) or devices.get(a) or u or f"anon:{a}" for u, a in zip(frame["user_id"], frame["anonymous_id"])]
    ev = frame.assign(customer_key=key)
    at = START + timedelta(days=DAYS - 1, hours=3)

    def within(days):
        return ev[(ev["timestamp"] > at - timedelta(days=days)) & (ev["timestamp"] <= at)]

    views = within(2)[(within(2)["event"] == "product viewed") & within(2)["category"].isin(["shoes", "hats"])]
    viewed = set(views.groupby("customer_key").size().loc[lambda s: s >= 2].index)
    ordered = set(within(1).loc[within(1)["event"] == "order completed", "customer_key"])
    orders3 = within(3)[within(3)["event"] == "order completed"]
    spent = set(orders3.groupby("customer_key")["value_minor"].sum().loc[lambda s: s >= 10000].index)
    members = sorted(viewed & ((set(ev["customer_key"]) - ordered) | spent))
    with DuckDBWarehouse(database=str(path)).connect() as conn:
        result = pv.on_warehouse(conn, audience, [], at)
    assert 5 < len(members) and ordered & set(members) and (viewed - set(members))  # not vacuous
    assert result.size == len(members)
    assert list(result.samples) == members[:5]
    for m, met in result.samples.items():
        assert met[0].startswith("{event: product viewed")
        assert (m not in ordered) == any("exists: False" in c for c in met)
        assert (m in spent) == any("sum: value_minor" in c for c in met)


def test_every_definition_shows_the_same_evidence_as_the_full_view_with_or_without_its_stored_members(tmp_path):
    path = tmp_path / "w.duckdb"
    warehouse(path, history(5, people=40, n=1500))
    audiences = [parse(d) for d in DEFINITIONS]
    known = {a.name: a for a in audiences}
    shown = 0
    with DuckDBWarehouse(database=str(path)).connect() as conn:
        for hours in (30, 77, 125):
            at = START + timedelta(hours=hours, minutes=13)
            for a in audiences:
                pv.store_membership(conn, a, known, at)
            create_views(conn, "duckdb", has_identity=True)
            full = Relations(customers=CUSTOMERS_VIEW, events=EVENTS_VIEW)
            for a in audiences:
                want = pv.preview(conn, a, audiences, at, full)
                for members in (None, f"{pv.SCHEMA}.{a.name}"):
                    got = pv.on_warehouse(conn, a, audiences, at, use_stored=False, members=members)
                    assert (got.size, got.samples) == (want.size, want.samples), (a.name, at, members)
                shown += sum(bool(met) for met in want.samples.values())
    assert shown > 20  # not vacuous
