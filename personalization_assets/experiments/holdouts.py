"""Holdouts declared in YAML, and the gate the sender asks right before each send.

Declarations: `global_control` in `experiments/experiments.yaml`; an optional `holdout: 10%` per
trigger (audiences/definitions/triggers.yaml) or segment (audiences/definitions/*.yaml). They are read here from
the raw YAML, so the trigger and segment loaders need only tolerate the key.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from importlib import resources
from pathlib import Path

import yaml

from .assign import CONTROL, GLOBAL_CONTROL, Experiment, assign_arm, holdout_experiment

SEND_TIME_KIND, SEND_TIME_TARGET = "send_time", "preferred_send_hour"


def _yaml(package: str, name: str) -> dict:
    return yaml.safe_load(resources.files(package).joinpath(name).read_text()) or {}


def _package_docs(package: str) -> list[dict]:
    """Every `definitions/*.yaml` of a package, or [] when the package is absent."""
    try:
        folder = resources.files(package) / "definitions"
        files = sorted((f for f in folder.iterdir() if f.name.endswith(".yaml")), key=lambda f: f.name)
    except (ModuleNotFoundError, FileNotFoundError):
        return []
    return [yaml.safe_load(f.read_text()) or {} for f in files]


def declared_experiments(triggers_path: str | Path | None = None, global_control=None,
                         segment_docs: list[dict] | None = None, audience_docs: list[dict] | None = None,
                         send_time_holdout=None) -> list[Experiment]:
    """Every experiment the YAML declares: the global control first, then triggers, segments, the
    audiences of `audiences/` (issue 22: an audience that sends on entering is the trigger of
    that name, any other a segment), and last the send-time experiment (`send_time_holdout` in
    experiments.yaml; False: none). One experiment declared in two places must agree."""
    found: dict[str, Experiment] = {}

    def add(exp: Experiment, where: str) -> None:
        same = found.get(exp.name)
        if same is not None and (same.split, same.stratify_by) != (exp.split, exp.stratify_by):
            raise ValueError(f"{where}: holdout of {exp.name} is {exp.split} here but {same.split} where it was "
                             "declared first; declare it once, or the same in both places")
        found.setdefault(exp.name, exp)

    share = global_control if global_control is not None else _yaml(__package__, "experiments.yaml").get("global_control")
    if share:
        add(holdout_experiment("global", "all", share), "experiments.yaml")
    triggers = (yaml.safe_load(Path(triggers_path).read_text()) if triggers_path
                else _yaml("personalization_assets.audiences.definitions", "triggers.yaml")) or {}
    for t in triggers.get("triggers") or []:
        if t.get("holdout") is not None:
            add(holdout_experiment("trigger", t["name"], t["holdout"]), "triggers.yaml")
    for s in segment_docs or []:  # explicit segment docs (tests); the packaged segments are audiences now
        if s.get("holdout") is not None:
            add(holdout_experiment("segment", s["name"], s["holdout"], stratify_by=s.get("holdout_stratify_by")),
                f"segment {s['name']}")
    for a in _package_docs("personalization_assets.audiences") if audience_docs is None else audience_docs:
        if a.get("holdout") is None:
            continue
        sends = (a.get("on_enter") or {}).get("send")
        kind, target = ("trigger", sends) if sends else ("segment", a["name"])
        add(holdout_experiment(kind, target, a["holdout"], stratify_by=a.get("holdout_stratify_by")),
            f"audience {a['name']}")
    send_time = (send_time_holdout if send_time_holdout is not None
                 else _yaml(__package__, "experiments.yaml").get("send_time_holdout"))
    if send_time:
        add(holdout_experiment(SEND_TIME_KIND, SEND_TIME_TARGET, send_time), "experiments.yaml")
    return list(found.values())


def covering(experiments: list[Experiment], kind: str, target: str) -> list[Experiment]:
    """The experiments a send of this trigger or segment belongs to (the global control always)."""
    return [e for e in experiments if e.name == GLOBAL_CONTROL or (e.kind == kind and e.target == target)]


EXPOSURE_COLUMNS = ["experiment", "decision_key", "customer_id", "customer_key", "arm", "ghost", "exposed_at"]


class ExposureLog:
    """Append-only SQLite log of send decisions per experiment; one row per (experiment, decision),
    so a retried decision is never logged twice."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self.conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
        self.conn.execute("pragma journal_mode=wal")
        self.conn.execute("pragma synchronous=normal")  # WAL: a power cut may lose the last decisions, never corrupt
        self.conn.execute("create table if not exists exposures (experiment text not null, decision_key text not null,"
                          " customer_id text, customer_key text not null, arm text not null, ghost integer not null,"
                          " exposed_at real not null, primary key (experiment, decision_key))")
        # the send-time experiment's input, copied from marts.customer_profiles (experiments/send_time.py)
        self.conn.execute("create table if not exists send_hours (customer_key text primary key,"
                          " preferred_send_hour integer not null, timezone text)")

    def log(self, rows: list[tuple]) -> None:
        with self._lock:
            self.conn.executemany("insert or ignore into exposures values (?, ?, ?, ?, ?, ?, ?)", rows)

    def rows(self) -> list[tuple]:
        with self._lock:
            return self.conn.execute(f"select {', '.join(EXPOSURE_COLUMNS)} from exposures order by exposed_at").fetchall()

    def sync_send_hours(self, rows: list[tuple[str, int, str | None]]) -> int:
        """Replace the copy of (customer_key, preferred_send_hour, timezone), in one transaction:
        people no longer in the marts (erased, merged away) leave it too."""
        with self._lock:
            self.conn.execute("begin immediate")
            try:
                self.conn.execute("delete from send_hours")
                self.conn.executemany("insert or replace into send_hours values (?, ?, ?)", rows)
                self.conn.execute("commit")
            except BaseException:
                self.conn.execute("rollback")
                raise
        return len(rows)

    def send_hour(self, customer_key: str) -> tuple[int, str | None] | None:
        with self._lock:
            row = self.conn.execute("select preferred_send_hour, timezone from send_hours where customer_key = ?",
                                    (customer_key,)).fetchone()
        return None if row is None else (int(row[0]), row[1])

    def erase(self, customer_ids: set[str]) -> int:
        ids = sorted(customer_ids)
        with self._lock:
            for chunk in (ids[i:i + 500] for i in range(0, len(ids), 500)):
                self.conn.execute(f"delete from send_hours where customer_key in ({', '.join('?' * len(chunk))})", chunk)
            return sum(self.conn.execute(f"delete from exposures where customer_id in ({', '.join('?' * len(chunk))})"
                                         f" or customer_key in ({', '.join('?' * len(chunk))})", chunk + chunk).rowcount
                       for chunk in (ids[i:i + 500] for i in range(0, len(ids), 500)))

    def close(self) -> None:
        self.conn.close()


class HoldoutGate:
    """Asked by the sender AFTER its suppression checks (a suppressed person is in neither arm),
    so every row logged here is a send that would happen: a control member's row is a ghost."""

    def __init__(self, experiments: list[Experiment], log: ExposureLog, clock=time.time, key_of=None):
        self.experiments, self.exposures, self.clock = experiments, log, clock
        self.key_of = key_of or (lambda customer_id: None)  # tracked id -> golden customer_key

    @classmethod
    def from_yaml(cls, exposure_path: str | Path, triggers_path: str | Path | None = None, key_of=None) -> "HoldoutGate":
        return cls(declared_experiments(triggers_path), ExposureLog(exposure_path), key_of=key_of)

    def decide(self, trigger: str, decision_key: str, customer_id: str | None,
               customer_key: str | None = None) -> str | None:
        """Log the decision in every experiment covering it; the reason to hold the send back, or None.

        A global-control member is logged in the global control only: left in a trigger's
        experiment they would count as treated without a send. The global arm is independent of
        the trigger's, so leaving them out keeps the trigger's comparison randomized."""
        customer_key = customer_key or self.key_of(customer_id) or customer_id  # the batch side hashes the same key
        now = self.clock()
        arms = [(e, assign_arm(e, customer_key)) for e in covering(self.experiments, "trigger", trigger)]
        globally_held = [(e, arm) for e, arm in arms if e.name == GLOBAL_CONTROL and arm == CONTROL]
        logged = globally_held or arms
        self.exposures.log([(e.name, decision_key, customer_id, customer_key, arm, int(arm == CONTROL), now)
                            for e, arm in logged])
        held = [e.name for e, arm in logged if arm == CONTROL]
        if held:
            return f"holdout: control arm of {', '.join(held)} (ghost exposure logged, not sent)"
        return None


def payload_customer_key(payloads, customer_id: str | None) -> str | None:
    """The golden customer_key of a tracked id, from the sender's payload copy (delivery/payloads.py)."""
    if not customer_id:
        return None
    row = payloads.conn.execute("select customer_key from delivery_payloads where customer_id = ?", (customer_id,)).fetchone()
    return row[0] if row and row[0] else None
