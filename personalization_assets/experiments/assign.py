"""Who is in which arm: deterministic, sticky, declared in YAML as `holdout: 10%`.

An arm is a pure function of (experiment salt, customer_key): the same customer gets the same arm
on every run, on every machine, with no table to read. Stratified assignment (small audiences)
and merges need memory, so they take the previous assignments and never move a kept customer.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

CONTROL, TREATMENT = "control", "treatment"
GLOBAL_CONTROL = "global_control"
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def parse_holdout(value, where: str = "holdout") -> float:
    """`10%`, `"10 %"` or `0.1` -> 0.1. Anything else, or outside (0, 1), is an error naming `where`."""
    if isinstance(value, bool):
        raise ValueError(f"{where}: {value!r} is not a share; write e.g. `holdout: 10%`")
    if isinstance(value, str):
        m = _PERCENT.match(value)
        if not m:
            raise ValueError(f"{where}: {value!r} is not a percentage; write e.g. `holdout: 10%`")
        share = float(m.group(1)) / 100
    elif isinstance(value, (int, float)):
        share = float(value)
    else:
        raise ValueError(f"{where}: {value!r} is not a share; write e.g. `holdout: 10%`")
    if not 0 < share < 1:
        raise ValueError(f"{where}: {value!r} must be strictly between 0% and 100%")
    return share


@dataclass(frozen=True)
class Experiment:
    """One randomization. `split` maps arm -> share (shares sum to 1, declared order kept)."""

    name: str
    split: dict[str, float]
    kind: str = "trigger"  # trigger | segment | global
    target: str | None = None  # the trigger or segment held out
    salt: str = ""
    stratify_by: str | None = None  # e.g. "rfm_segment" for small audiences

    def __post_init__(self):
        total = sum(self.split.values())
        if abs(total - 1) > 1e-9 or any(v <= 0 for v in self.split.values()):
            raise ValueError(f"experiment {self.name}: split {self.split} must be positive shares summing to 1")
        if not self.salt:
            object.__setattr__(self, "salt", self.name)


def holdout_experiment(kind: str, target: str, holdout, salt: str | None = None,
                       stratify_by: str | None = None) -> Experiment:
    share = parse_holdout(holdout, f"{kind} {target}")
    name = f"{kind}:{target}" if kind != "global" else GLOBAL_CONTROL
    return Experiment(name, {CONTROL: share, TREATMENT: 1 - share}, kind, target, salt or name, stratify_by)


def unit_hash(salt: str, customer_key: str) -> float:
    """A uniform number in [0, 1) from SHA-256 (stable across Python versions, unlike hash())."""
    digest = hashlib.sha256(f"{salt}\x1f{customer_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_arm(experiment: Experiment, customer_key: str) -> str:
    u, edge = unit_hash(experiment.salt, customer_key), 0.0
    for arm, share in experiment.split.items():
        edge += share
        if u < edge:
            return arm
    return arm  # u within float rounding of 1


def assign_stratified(experiment: Experiment, strata: dict[str, str], previous: dict[str, str] | None = None
                      ) -> dict[str, str]:
    """Arms balanced within each stratum (e.g. RFM segment), for audiences too small for hashing
    alone to balance. Kept customers keep their arm (sticky); newcomers, in hash order, each take
    the arm furthest below its share of the stratum. Same inputs -> same arms."""
    previous = previous or {}
    out = {k: previous[k] for k in strata if k in previous}
    by_stratum: dict[str, list[str]] = {}
    for key, stratum in strata.items():
        by_stratum.setdefault(stratum, []).append(key)
    arms = list(experiment.split)
    for keys in by_stratum.values():
        counts = {arm: sum(1 for k in keys if out.get(k) == arm) for arm in arms}
        for key in sorted((k for k in keys if k not in out), key=lambda k: unit_hash(experiment.salt, k)):
            n = sum(counts.values()) + 1
            arm = max(arms, key=lambda a: (experiment.split[a] * n - counts[a], -arms.index(a)))
            out[key] = arm
            counts[arm] += 1
    return out


@dataclass
class MergeOutcome:
    arms: dict[str, str]
    contaminated: list[dict] = field(default_factory=list)


def apply_merges(experiment: Experiment, arms: dict[str, str], merges: list[tuple[str, str]]) -> MergeOutcome:
    """After identity merges (absorbed key -> surviving key), the survivor's arm wins.

    The absorbed key leaves the experiment; when its arm differed from the survivor's, the person
    may have seen both arms: recorded as contamination (analyses may exclude them)."""
    out, contaminated = dict(arms), []
    for absorbed, survivor in merges:
        if absorbed == survivor:
            continue
        absorbed_arm = out.pop(absorbed, None)
        survivor_arm = out.get(survivor) or assign_arm(experiment, survivor)
        out[survivor] = survivor_arm
        if absorbed_arm is not None and absorbed_arm != survivor_arm:
            contaminated.append({"experiment": experiment.name, "absorbed_key": absorbed, "survivor_key": survivor,
                                 "absorbed_arm": absorbed_arm, "survivor_arm": survivor_arm})
    return MergeOutcome(out, contaminated)
