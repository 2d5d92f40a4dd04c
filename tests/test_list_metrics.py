"""Beyond-accuracy list metrics against values worked out by hand on tiny lists."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rectk import registry
from rectk.contracts import FinalLists
from rectk_plugins import list_metrics as lm

# Five items; two learners with lists of three (learner 1 has an empty last slot).
IDS = np.array([[1, 2, 3], [1, 4, 0]])
HIST = np.array([[0, 5], [2, 3]])
GROUPS = np.array([0, 1, 1, 2, 2, 0])  # item 5 of unknown group
TOPICS = np.array(
    [[0, 0], [1, 0], [1, 0], [0, 1], [0.5, 0.5], [0, 1]], np.float32
)  # row 0 = padding
POP = np.array([0, 6, 2, 1, 1, 0], np.float32)
PREREQ = np.array([[0], [0], [1], [0], [2], [0]])  # 2 needs 1; 4 needs 2


def lists(**over) -> FinalLists:
    base = dict(
        ids_nk=IDS,
        target_n=np.array([2, 9]),
        history_nh=HIST,
        num_items=5,
        item_emb_vd=np.eye(6, 3, dtype=np.float32),
        item_group_v=GROUPS,
        item_topics_vt=TOPICS,
        item_pop_v=POP,
        prereq_vp=PREREQ,
    )
    return FinalLists(**{**base, **over})


def test_coverage_counts_distinct_recommended_items():
    assert lm.coverage(lists(), 3) == pytest.approx(4 / 5)
    assert lm.coverage(lists(), 1) == pytest.approx(1 / 5)


def test_gini_of_equal_and_concentrated_exposure():
    equal = lists(ids_nk=np.array([[1, 2, 3, 4, 5]]))
    assert lm.gini(equal, 5) == pytest.approx(0.0)
    # counts over 5 items: item 1 twice, items 2, 3, 4 once, item 5 never -> sorted 0,1,1,1,2
    x = np.array([0, 1, 1, 1, 2], float)
    want = 2 * (np.arange(1, 6) * x).sum() / (5 * x.sum()) - 6 / 5
    assert lm.gini(lists(), 3) == pytest.approx(want)


def test_intra_list_distance_by_embeddings_and_topics():
    # embeddings: unit vectors e0, e1, e2 for items 0..2, zeros beyond: items 1, 2 orthogonal
    emb = np.zeros((6, 2), np.float32)
    emb[1] = [1, 0]
    emb[2] = [1, 0]
    emb[3] = [0, 1]
    emb[4] = [1, 1]
    got = lm.ild(lists(item_emb_vd=emb), 3)
    # list 0: items 1, 2, 3: distances 0, 1, 1 -> mean 2/3; list 1: items 1, 4 -> 1 - 1/sqrt 2
    assert got == pytest.approx((2 / 3 + (1 - 1 / math.sqrt(2))) / 2, rel=1e-6)
    assert lm.ild_topics(lists(), 3) == pytest.approx((2 / 3 + (1 - 1 / math.sqrt(2))) / 2)
    assert lm.ild(lists(item_emb_vd=None), 3) is None


def test_novelty_is_mean_self_information_of_smoothed_shares():
    pop = POP[1:]
    p = (pop + 1) / (pop.sum() + 5)
    recommended = [1, 2, 3, 1, 4]
    want = np.mean([-np.log2(p[i - 1]) for i in recommended])
    assert lm.novelty(lists(), 3) == pytest.approx(want)


def test_long_tail_share_outside_the_short_head():
    # 20% of 10 interactions = 2: item 1 (6 of them) is the whole short head
    assert lm.short_head(POP).tolist() == [False, True, False, False, False, False]
    assert lm.long_tail(lists(), 3) == pytest.approx(3 / 5)


def test_miscalibration_is_steck_kl_with_smoothing():
    # learner 0: history item 5 -> p = (0, 1); list 1, 2, 3 -> q = (2/3, 1/3)
    # learner 1: history 2, 3 -> p = (.5, .5); list 1, 4 -> q = (.75, .25)
    def kl(p, q):
        q = 0.99 * np.asarray(q) + 0.01 * np.asarray(p)
        return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True) if a > 0)

    want = (kl([0, 1], [2 / 3, 1 / 3]) + kl([0.5, 0.5], [0.75, 0.25])) / 2
    assert lm.miscalibration(lists(), 3) == pytest.approx(want, rel=1e-6)


def test_exposure_disparity_against_group_sizes():
    w = 1 / np.log2(np.arange(2, 5))
    # group 1 = items 1, 2; group 2 = items 3, 4 (two items each); item 5 unknown
    e1 = w[0] + w[1] + w[0]  # learner 0: items 1, 2; learner 1: item 1
    e2 = w[2] + w[1]  # learner 0: item 3; learner 1: item 4
    total = e1 + e2
    want = 0.5 * (abs(e1 / total - 0.5) + abs(e2 / total - 0.5))
    assert lm.exposure_disparity(lists(), 3) == pytest.approx(want)
    assert lm.exposure_disparity(lists(item_group_v=None), 3) is None


def test_prerequisite_violations_per_recommended_item():
    # learner 0 (history 5): item 2 needs 1 (missing) -> 1 of 3; learner 1 (history 2, 3):
    # item 4 needs 2 (taken) -> 0 of 2
    assert lm.prerequisite_violations(lists(), 3) == pytest.approx(1 / 5)


def test_every_list_metric_is_registered_and_handles_empty_lists():
    empty = lists(ids_nk=np.zeros((2, 3), np.int64))
    for name in registry.list_metrics.names():
        value = registry.list_metrics.get(name)(empty, 3)
        assert value is None or np.isfinite(value), name
