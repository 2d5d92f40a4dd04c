"""Beyond-accuracy metrics of final lists: ``metric(lists, k) -> float | None`` over the
first ``k`` places of every learner's list (functions, ``rectk.contracts.ListMetric``).

Each returns None where the lists lack the side information it reads (a data set without
providers has no exposure disparity). Empty slots (id 0) are not recommendations. The
definitions, with their sources, are in ``docs/rerankers.md``.
"""

from __future__ import annotations

import numpy as np

from rectk import registry
from rectk.contracts import FinalLists
from rectk_plugins.rerankers.popularity import head_items

ALPHA = 0.01  # Steck's smoothing of the list's topic distribution
HEAD_SHARE = 0.2  # the short head: the most popular items holding 20% of the interactions


def _top(lists: FinalLists, k: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(lists.ids_nk)[:, :k]
    return ids, ids > 0


@registry.list_metrics.register("coverage")
def coverage(lists: FinalLists, k: int) -> float:
    """Catalogue coverage (aggregate diversity, Adomavicius & Kwon, IEEE TKDE 2012): the
    share of the catalogue recommended to at least one learner."""
    ids, ok = _top(lists, k)
    return len(np.unique(ids[ok])) / max(lists.num_items, 1)


@registry.list_metrics.register("gini")
def gini(lists: FinalLists, k: int) -> float:
    """Gini index of exposure over the catalogue (Fleder & Hosanagar, Management Science
    2009): 0 when every item is recommended equally often, near 1 when a few items take
    every slot."""
    ids, ok = _top(lists, k)
    counts = np.sort(np.bincount(ids[ok], minlength=lists.num_items + 1)[1:]).astype(np.float64)
    n, total = counts.size, counts.sum()
    if total == 0 or n == 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float((2.0 * (ranks * counts).sum()) / (n * total) - (n + 1.0) / n)


def _intra_list_distance(ids: np.ndarray, ok: np.ndarray, feats_vf: np.ndarray) -> float | None:
    """Mean over lists of two or more items of the mean pairwise cosine distance."""
    f = np.asarray(feats_vf, np.float64)
    f = f / np.maximum(np.linalg.norm(f, axis=-1, keepdims=True), 1e-12)
    x_nkf = f[ids] * ok[..., None]
    sim_nkk = np.einsum("nkf,njf->nkj", x_nkf, x_nkf)
    m = ok.sum(-1)
    pairs = m * (m - 1)
    keep = pairs > 0
    if not keep.any():
        return None
    off = sim_nkk.sum((1, 2)) - np.einsum("nkk->n", sim_nkk)
    return float(np.mean(1.0 - off[keep] / pairs[keep]))


@registry.list_metrics.register("ild")
def ild(lists: FinalLists, k: int) -> float | None:
    """Intra-list diversity (Ziegler, McNee, Konstan & Lausen, WWW 2005): the mean pairwise
    cosine distance of a list's item vectors (the model's item table), averaged over lists."""
    if lists.item_emb_vd is None:
        return None
    return _intra_list_distance(*_top(lists, k), lists.item_emb_vd)


@registry.list_metrics.register("ild_topics")
def ild_topics(lists: FinalLists, k: int) -> float | None:
    """Intra-list diversity over the items' topic distributions (cosine distance)."""
    if lists.item_topics_vt is None:
        return None
    return _intra_list_distance(*_top(lists, k), lists.item_topics_vt)


@registry.list_metrics.register("novelty")
def novelty(lists: FinalLists, k: int) -> float | None:
    """Mean self-information ``-log2 p(i)`` of the recommended items (Zhou et al., PNAS
    2010), ``p(i)`` the item's add-one smoothed share of the training interactions."""
    if lists.item_pop_v is None:
        return None
    ids, ok = _top(lists, k)
    if not ok.any():
        return None
    pop = np.asarray(lists.item_pop_v, np.float64)[1:]
    p_v = np.concatenate([[1.0], (pop + 1.0) / (pop.sum() + pop.size)])
    return float(np.mean(-np.log2(p_v[ids[ok]])))


def short_head(pop_v: np.ndarray, head_share: float = HEAD_SHARE) -> np.ndarray:
    """``[V]`` True for the most popular items that together hold the first ``head_share``
    of the training interactions: ``xquad``'s split (``head_items``), as NumPy.

    >>> short_head(np.array([0, 10, 1, 1])).tolist()
    [False, True, False, False]
    """
    return np.asarray(head_items(np.asarray(pop_v, np.float32), head_share))


@registry.list_metrics.register("long_tail")
def long_tail(lists: FinalLists, k: int) -> float | None:
    """Share of the recommended items in the long tail: outside the short head, the most
    popular items holding 20% of the training interactions (Abdollahpouri, Burke & Mobasher,
    FLAIRS 2019)."""
    if lists.item_pop_v is None:
        return None
    ids, ok = _top(lists, k)
    if not ok.any():
        return None
    return float(np.mean(~short_head(lists.item_pop_v)[ids[ok]]))


@registry.list_metrics.register("miscalibration")
def miscalibration(lists: FinalLists, k: int) -> float | None:
    """Steck's miscalibration (RecSys 2018): the mean over learners of ``KL(p || q~)``, ``p``
    the mean topic distribution of the history, ``q`` the list's, ``q~ = 0.99 q + 0.01 p``.
    Learners whose history has no topics are left out."""
    if lists.item_topics_vt is None:
        return None
    topics = np.asarray(lists.item_topics_vt, np.float64)
    hist = np.asarray(lists.history_nh)
    h_ok = hist > 0
    p_nt = (topics[hist] * h_ok[..., None]).sum(1) / np.maximum(h_ok.sum(-1), 1)[:, None]
    ids, ok = _top(lists, k)
    q_nt = (topics[ids] * ok[..., None]).sum(1) / np.maximum(ok.sum(-1), 1)[:, None]
    q_nt = (1.0 - ALPHA) * q_nt + ALPHA * p_nt
    keep = p_nt.sum(-1) > 0
    if not keep.any():
        return None
    pos = p_nt > 0
    kl = np.where(pos, p_nt * np.log(np.where(pos, p_nt, 1.0) / np.where(pos, q_nt, 1.0)), 0.0)
    return float(kl.sum(-1)[keep].mean())


@registry.list_metrics.register("exposure_disparity")
def exposure_disparity(lists: FinalLists, k: int) -> float | None:
    """How far the provider groups' shares of exposure are from their shares of the
    catalogue: the total variation distance ``1/2 sum_g |E_g / E - N_g / N|``, exposure of
    rank ``r`` being ``1 / log2(1 + r)``. 0 is demographic parity of exposure (Singh &
    Joachims, KDD 2018: exposure proportional to group size); items of unknown group are
    left out."""
    if lists.item_group_v is None:
        return None
    groups = np.asarray(lists.item_group_v)
    ids, ok = _top(lists, k)
    weight_nk = ok / np.log2(np.arange(2, ids.shape[1] + 2))[None, :]
    g_nk = groups[ids]
    known = ok & (g_nk > 0)
    num_groups = int(groups.max(initial=0)) + 1
    exposure = np.bincount(g_nk[known], weights=weight_nk[known], minlength=num_groups)[1:]
    size = np.bincount(groups[1:], minlength=num_groups)[1:].astype(np.float64)
    if exposure.sum() == 0 or size.sum() == 0:
        return None
    return float(0.5 * np.abs(exposure / exposure.sum() - size / size.sum()).sum())


@registry.list_metrics.register("prerequisite_violations")
def prerequisite_violations(lists: FinalLists, k: int) -> float | None:
    """Share of the recommended items with a prerequisite the learner has not taken."""
    if lists.prereq_vp is None:
        return None
    ids, ok = _top(lists, k)
    if not ok.any():
        return None
    pre_nkp = np.asarray(lists.prereq_vp)[ids]
    hist = np.asarray(lists.history_nh)
    taken_nkp = (pre_nkp[..., None] == hist[:, None, None, :]).any(-1)
    missing = ((pre_nkp > 0) & ~taken_nkp).any(-1)
    return float(missing[ok].mean())
