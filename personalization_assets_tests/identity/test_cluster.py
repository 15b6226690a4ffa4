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
