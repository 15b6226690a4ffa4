"""Clustering guards: weak chains, size cap, cannot-link."""

import numpy as np

from personalization_assets.identity.cluster import Edges, cluster


def edges(triples):
    a, b, p = zip(*triples)
    return Edges(np.array(a), np.array(b), np.array(p, float))


def test_weak_link_attaches_single_record_but_never_bridges_two_groups():
    # groups {0,1} and {2,3} are strong; 1-2 is weak -> held; 4 attaches weakly to 3 -> merged
    e = edges([(0, 1, 0.999), (2, 3, 0.999), (1, 2, 0.7), (3, 4, 0.7)])
    labels, review, used = cluster(5, e, strong=0.99, max_size=50)
    assert labels[0] == labels[1] and labels[2] == labels[3] == labels[4]
    assert labels[1] != labels[2]
    assert list(review["reason"]) == ["weak_chain"]
    assert not used[2] and used[3]


def test_oversized_component_is_split_and_reported():
    chain = [(i, i + 1, 0.999) for i in range(30)]
    labels, review, _ = cluster(31, edges(chain), strong=0.99, max_size=10)
    assert np.bincount(labels).max() <= 10
    assert (review["reason"] == "cluster_too_large").sum() == 31


def test_cannot_link_is_honoured_even_through_a_third_record():
    e = edges([(0, 1, 0.999), (1, 2, 0.999)])
    labels, _, _ = cluster(3, e, strong=0.99, max_size=50, cannot_link={(0, 2)})
    assert labels[0] != labels[2]


def _rules(conflicts=(), linked=()):
    """Rules whose pair verdicts come from the given sets (positions)."""
    import numpy as np

    from personalization_assets.identity.cluster import Rules

    def assess(a, b):
        pairs = list(zip(a.tolist(), b.tolist()))
        return (np.array([p in conflicts for p in pairs], bool), np.array([p in linked for p in pairs], bool))
    return Rules(assess=assess)


def test_one_record_with_two_weak_links_does_not_chain_two_people():
    # 0 is weakly linked to 1 and to 2; 1 and 2 are not linked to each other (nor conflicting)
    e = edges([(0, 1, 0.8), (0, 2, 0.7)])
    labels, review, used = cluster(3, e, strong=0.99, max_size=50, rules=_rules(linked={(0, 1), (0, 2)}))
    assert labels[0] == labels[1] != labels[2]
    assert list(review["reason"]) == ["weak_chain"] and not used[1]


def test_a_conflict_anywhere_in_the_cluster_splits_it_on_the_weakest_link():
    # strong 0-1 and 0-2; 1 and 2 conflict (two birth dates): the weaker link (0-2) is refused
    e = edges([(0, 1, 0.9999), (0, 2, 0.995)])
    labels, review, _ = cluster(3, e, strong=0.99, max_size=50, rules=_rules(conflicts={(1, 2)}))
    assert labels[0] == labels[1] != labels[2]
    assert review.iloc[0][["left", "right", "reason"]].tolist() == [0, 2, "conflict"]


def test_identity_limit_splits_on_the_weakest_link_and_a_decision_overrides_it():
    import numpy as np

    from personalization_assets.identity.cluster import Rules

    email = np.array([0, 1, 2, 3])  # four records, four distinct e-mails, at most 2 per profile
    e = edges([(0, 1, 0.9999), (1, 2, 0.9995), (2, 3, 0.999)])
    labels, review, _ = cluster(4, e, strong=0.99, max_size=50, rules=Rules(identities={"email": (email, 2)}))
    assert labels[0] == labels[1] and labels[2] == labels[3] and labels[1] != labels[2]
    assert list(review["reason"]) == ["limit:email"]
    forced = np.array([False, True, False])
    labels, _, _ = cluster(4, e, strong=0.99, max_size=50,
                           rules=Rules(identities={"email": (email, 2)}, forced=forced))
    assert labels[1] == labels[2]
