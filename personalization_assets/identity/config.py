"""Tunable settings of the matcher, with one set of defaults for every dataset."""

from __future__ import annotations

from dataclasses import dataclass, field

# Values that look like keys but identify nobody: they must never link records.
PLACEHOLDER_TOKENS = frozenset(
    {"", "test", "unknown", "none", "null", "na", "n/a", "nan", "xxx", "asdf", "noname",
     "anonymous", "customer", "guest", "placeholder", "dummy", "tbd", "abc"}
)
PLACEHOLDER_EMAIL_LOCALS = frozenset(
    {"test", "noreply", "no-reply", "donotreply", "none", "null", "info", "admin", "example",
     "unknown", "nobody", "customer", "guest", "dummy", "fake", "a", "x", "xxx"}
)
# example.org/.com are RFC 2606 documentation domains, but the demo data and many test CRMs use
# them for real-looking people, so only obviously fake domains are blocked.
PLACEHOLDER_EMAIL_DOMAINS = frozenset({"test.com", "none.com", "invalid", "localhost"})


@dataclass(frozen=True)
class MatchConfig:
    """Defaults are the product's defaults; nothing is tuned per dataset."""

    # Posterior match probability above which a fuzzy pair links records.
    threshold: float = 0.5
    # Pairs at or above this are "strong"; weaker links may not bridge two multi-record groups.
    strong_threshold: float = 0.99
    # A cluster larger than this is split along its strongest edges (or held for review).
    max_cluster_size: int = 50
    # An exact key shared by more records than this is treated as shared/placeholder.
    max_key_group: int = 20
    # Blocks larger than this are skipped for that blocking key (other keys still apply).
    max_block_size: int = 5000
    # Blocks larger than window + 1 are compared as a sorted neighbourhood of this width.
    block_window: int = 20
    # Random pairs sampled to estimate the u probabilities.
    u_sample_pairs: int = 200_000
    # Upper bound of the prior "two random records match": a tiny dataset cannot make a bare
    # name agreement look like a match just because it has few pairs.
    max_prior: float = 1e-3
    em_max_iterations: int = 40
    em_tolerance: float = 1e-5
    source_priority: tuple[str, ...] = field(default=("crm", "shop", "events"))
    # Share of the household fields' (surname, street, postcode) positive weight kept beyond
    # the largest one: 0 counts a shared address and surname as one piece of evidence.
    household_extra: float = 0.0
    # Identity limits per golden profile, in priority order (the first one broken is the reason
    # reported): at most this many distinct values in one cluster. One birth date and one first
    # name are enforced as conflicts (evidence.py), whatever the limits say.
    identity_limits: tuple[tuple[str, int], ...] = (("email", 5), ("phone", 5))
    # Sources whose own customer id is one person (one id of such a source per profile). Off by
    # default: the demo CRM, FEBRL and most CRMs hold duplicate records of one person.
    unique_id_sources: tuple[str, ...] = ()
    seed: int = 7
