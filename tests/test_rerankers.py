"""Rerankers: each against a straightforward NumPy reference on small cases (DPP against an
exhaustive greedy log-det, FA*IR's table against the paper's), the contract's properties on
random inputs (hypothesis), the conformance check on every registered reranker, and one clear
message for each kind of bad input."""

from __future__ import annotations

import doctest
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rectk import registry
from rectk.contracts import RerankContext
from rectk.errors import PluginError, RecipeError
from rectk.recipe import from_dict
from rectk.testing.conformance import (
    CHECKS,
    check_reranked,
    check_reranker,
    tiny_rerank_context,
)
from rectk_plugins.rerankers import (
    DPP,
    FAIR,
    MMR,
    Calibration,
    Dedupe,
    Exposure,
    FilterSeen,
    Prerequisites,
    TargetDifficulty,
    XQuAD,
    adjusted_mtable,
    chain,
    fail_probability,
    head_items,
    mtable,
    rerank,
)
from rectk_plugins.rerankers import fair as fair_module
from rectk_plugins.rerankers import greedy as greedy_module

V, D, T, B, C, K, H = 40, 6, 4, 4, 10, 5, 5


@pytest.fixture(autouse=True)
def _greedy_loops_not_unrolled(monkeypatch):
    """Short greedy loops are unrolled for speed; here they stay loops, which compile in
    about half the time and select the same (``test_unrolled_loops_select_the_same``)."""
    monkeypatch.setattr(greedy_module, "UNROLL_UP_TO", 0)


def _context(seed: int = 0, *, batch: int = B, prereq_density: float = 0.3) -> RerankContext:
    rng = np.random.default_rng(seed)
    topics = rng.dirichlet(np.full(T, 0.5), V).astype(np.float32)
    topics[0] = 0.0
    prereq = rng.integers(1, V, (V, 2)) * (rng.random((V, 2)) < prereq_density)
    prereq[0] = 0
    history = rng.integers(1, V, (batch, H)) * (np.arange(H) >= rng.integers(0, H, (batch, 1)))
    return RerankContext(
        history_bh=jnp.asarray(history, jnp.int32),
        item_emb_vd=jnp.asarray(rng.normal(size=(V, D)), jnp.float32),
        item_group_v=jnp.asarray(rng.integers(0, 4, V), jnp.int32),
        item_topics_vt=jnp.asarray(topics),
        item_pop_v=jnp.asarray(rng.integers(0, 100, V), jnp.float32),
        prereq_vp=jnp.asarray(prereq, jnp.int32),
    )


def _candidates(seed: int = 0, *, batch: int = B, num: int = C):
    rng = np.random.default_rng(seed + 100)
    ids = np.stack([rng.choice(np.arange(1, V), num, replace=False) for _ in range(batch)])
    scores = -np.sort(-rng.normal(size=(batch, num)), axis=1)
    return ids.astype(np.int32), scores.astype(np.float32)


def _np(ctx: RerankContext, name: str) -> np.ndarray:
    return np.asarray(getattr(ctx, name), np.float64)


def _rel(scores: np.ndarray) -> np.ndarray:
    s = scores.astype(np.float64)
    return (s - s.min()) / (s.max() - s.min())


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def _run(reranker, ids, scores, ctx, k=K):
    out_ids, out_scores = jax.jit(lambda i, s, c: reranker(i, s, c, k=k))(ids, scores, ctx)
    return np.asarray(out_ids), np.asarray(out_scores)


def _greedy(objective, num: int, k: int) -> list[int]:
    """Brute-force greedy: each step adds the candidate whose list scores highest."""
    chosen: list[int] = []
    for _ in range(k):
        rest = [i for i in range(num) if i not in chosen]
        chosen.append(max(rest, key=lambda i: (objective([*chosen, i]), -i)))
    return chosen


# ---------------------------------------------------------------------------------------------
# Diversity: MMR and DPP.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("similarity", ["embeddings", "topics"])
@pytest.mark.parametrize("lam", [0.0, 0.3, 0.7, 1.0])
def test_mmr_matches_brute_force_greedy(similarity, lam):
    ctx = _context(1)
    ids, scores = _candidates(1)
    got, got_scores = _run(MMR(lambda_=lam, similarity=similarity), ids, scores, ctx)
    table = _np(ctx, "item_emb_vd" if similarity == "embeddings" else "item_topics_vt")
    for b in range(B):
        f, rel = _unit(table[ids[b]]), _rel(scores[b])

        def mmr(lst, f=f, rel=rel):
            i, before = lst[-1], lst[:-1]
            return lam * rel[i] - (1 - lam) * max((f[i] @ f[j] for j in before), default=0.0)

        want = _greedy(mmr, C, K)
        np.testing.assert_array_equal(got[b], ids[b][want])
        np.testing.assert_array_equal(got_scores[b], scores[b][want])


@pytest.mark.parametrize("theta", [0.2, 0.5, 0.8, 0.95])
def test_dpp_matches_exhaustive_greedy_log_det(theta):
    """Each step of Chen et al.'s fast greedy algorithm takes the item maximising log det of
    the kernel restricted to the list: here computed outright, by ``slogdet``, for every
    candidate at every step."""
    ctx = _context(2)
    ids, scores = _candidates(2)
    got, _ = _run(DPP(theta=theta), ids, scores, ctx)
    emb = _np(ctx, "item_emb_vd")
    alpha = theta / (2 * (1 - theta))
    for b in range(B):
        f = _unit(emb[ids[b]])
        r = np.exp(alpha * _rel(scores[b]))
        kernel = r[:, None] * (1 + f @ f.T) / 2 * r[None, :]

        def log_det(lst, kernel=kernel):
            sign, value = np.linalg.slogdet(kernel[np.ix_(lst, lst)])
            return value if sign > 0 else -np.inf

        np.testing.assert_array_equal(got[b], ids[b][_greedy(log_det, C, K)])


def test_dpp_fills_the_list_by_relevance_once_the_kernel_is_singular():
    """With 2-dimensional vectors S has rank 3: after 3 items every candidate is in their
    span, where the fast greedy algorithm stops; the list goes on by relevance."""
    rng = np.random.default_rng(3)
    ctx = RerankContext(
        history_bh=jnp.zeros((1, 1), jnp.int32),
        item_emb_vd=jnp.asarray(rng.normal(size=(V, 2)), jnp.float32),
    )
    ids, scores = _candidates(3, batch=1)
    got, _ = _run(DPP(theta=0.5), ids, scores, ctx, k=8)
    rest = [i for i in ids[0] if i not in got[0, :3]]
    np.testing.assert_array_equal(got[0, 3:], rest[:5])


# ---------------------------------------------------------------------------------------------
# Calibration.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lam", [0.0, 0.4, 0.9, 1.0])
def test_calibration_matches_brute_force_greedy(lam):
    ctx = _context(4)
    ids, scores = _candidates(4)
    got, _ = _run(Calibration(lambda_=lam), ids, scores, ctx)
    topics, hist = _np(ctx, "item_topics_vt"), np.asarray(ctx.history_bh)
    for b in range(B):
        real = hist[b][hist[b] > 0]
        p = topics[real].mean(0) if len(real) else np.zeros(T)
        rel = _rel(scores[b])

        def objective(lst, p=p, rel=rel, cand=topics[ids[b]]):
            q = (1 - 0.01) * cand[lst].mean(0) + 0.01 * p
            kl = sum(pg * math.log(pg / qg) for pg, qg in zip(p, q, strict=True) if pg > 0)
            return (1 - lam) * rel[lst].sum() - lam * kl

        np.testing.assert_array_equal(got[b], ids[b][_greedy(objective, C, K)])


def test_calibration_moves_the_list_towards_the_history_topics():
    ctx = _context(5, batch=8)
    ids, scores = _candidates(5, batch=8)
    topics, hist = np.asarray(ctx.item_topics_vt), np.asarray(ctx.history_bh)

    def miscalibration(lists):
        total = 0.0
        for b in range(8):
            p = topics[hist[b][hist[b] > 0]].mean(0)
            q = 0.99 * topics[lists[b]].mean(0) + 0.01 * p
            total += float(np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1) / q), 0)))
        return total

    base = miscalibration(ids[:, :K])
    calibrated = miscalibration(_run(Calibration(lambda_=0.9), ids, scores, ctx)[0])
    assert calibrated < base


# ---------------------------------------------------------------------------------------------
# FA*IR.
# ---------------------------------------------------------------------------------------------

# Zehlike et al. (CIKM 2017), Table 2: m_{alpha,p}(k) for alpha = 0.1, k = 1..12.
PAPER_TABLE = {
    0.1: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    0.2: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1],
    0.3: [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2],
    0.4: [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 3],
    0.5: [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 4],
    0.6: [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5],
    0.7: [0, 1, 1, 2, 2, 3, 3, 4, 5, 5, 6, 6],
}


@pytest.mark.parametrize("p", sorted(PAPER_TABLE))
def test_fair_table_matches_the_paper(p):
    assert list(mtable(12, p, 0.1)) == PAPER_TABLE[p]


# The authors' implementation (fairsearchcore): unadjusted and adjusted tables, and the
# probability that a fair ranking fails the adjusted one.
ADJUSTED = [
    (10, 0.2, 0.15, [0] * 8 + [1] * 2, [0] * 8 + [1] * 2, 0.134218),
    (20, 0.25, 0.1, [0] * 8 + [1] * 6 + [2] * 5 + [3], [0] * 8 + [1] * 7 + [2] * 5, 0.105152),
    (
        30,
        0.3,
        0.05,
        [0] * 8 + [1] * 5 + [2] * 5 + [3] * 5 + [4] * 4 + [5] * 3,
        [0] * 10 + [1] * 6 + [2] * 5 + [3] * 4 + [4] * 5,
        0.048777,
    ),
]


def test_fair_docstring_examples():
    result = doctest.testmod(fair_module)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(("k", "p", "alpha", "plain", "adjusted", "fail"), ADJUSTED)
def test_fair_multiple_testing_adjustment(k, p, alpha, plain, adjusted, fail):
    assert list(mtable(k, p, alpha)) == plain
    assert list(adjusted_mtable(k, p, alpha)) == adjusted
    assert fail_probability(adjusted_mtable(k, p, alpha), p) == pytest.approx(fail, abs=1e-5)
    if plain != adjusted:  # unadjusted, the k tests fail a fair ranking more often than alpha
        assert fail_probability(mtable(k, p, alpha), p) > alpha


def _fair_reference(ids, scores, protected, table, k):
    """FA*IR's Algorithm 1 on one list: two queues by score, the protected one forced while
    the list holds fewer than m(i) protected items."""
    order = np.argsort(-scores, kind="stable")
    prot = [i for i in order if protected[i]]
    rest = [i for i in order if not protected[i]]
    out, count = [], 0
    for i in range(k):
        if prot and (count < table[i] or not rest or scores[prot[0]] > scores[rest[0]]):
            out.append(prot.pop(0))
            count += 1
        else:
            out.append(rest.pop(0))
    return ids[out]


@pytest.mark.parametrize(("p", "alpha", "adjust"), [(0.5, 0.1, True), (0.7, 0.1, False)])
def test_fair_matches_its_algorithm_and_meets_the_table(p, alpha, adjust):
    ctx = _context(6, batch=6)
    ids, scores = _candidates(6, batch=6)
    reranker = FAIR(protected_groups=(1, 2), p=p, alpha=alpha, adjust=adjust)
    got, _ = _run(reranker, ids, scores, ctx, k=8)
    table = reranker.table(8)
    protected = np.isin(np.asarray(ctx.item_group_v)[ids], [1, 2])
    for b in range(6):
        np.testing.assert_array_equal(
            got[b], _fair_reference(ids[b], scores[b], protected[b], table, 8)
        )
        if protected[b].sum() >= table[-1]:
            held = np.cumsum(np.isin(np.asarray(ctx.item_group_v)[got[b]], [1, 2]))
            assert (held >= np.asarray(table)).all()


# ---------------------------------------------------------------------------------------------
# Exposure.
# ---------------------------------------------------------------------------------------------


def _exposure_reference(ids, scores, groups_v, lam, target, k):
    batch, num = ids.shape
    valid = (ids > 0) & np.isfinite(scores)
    rel = np.zeros((batch, num))
    for b in range(batch):
        if valid[b].any():
            s = scores[b][valid[b]].astype(np.float64)
            span = s.max() - s.min()
            rel[b][valid[b]] = (s - s.min()) / (span if span > 0 else 1.0)
    group = groups_v[ids]
    known = valid & (group > 0)
    merit = np.zeros(len(groups_v))
    for b in range(batch):
        for c in range(num):
            if known[b, c]:
                merit[group[b, c]] += rel[b, c] if target == "relevance" else 1.0
    if target != "relevance":
        merit = (merit > 0).astype(float)
    if target == "catalogue":
        merit = merit * np.bincount(groups_v[1:], minlength=len(groups_v))[: len(groups_v)]
        merit[0] = 0.0
    tau = merit / merit.sum()
    exposure, total = np.zeros(len(groups_v)), 0.0
    taken = np.zeros((batch, num), bool)
    out = np.zeros((batch, k), int)
    for t in range(k):
        weight = 1 / math.log2(2 + t)
        for b in range(batch):
            best, best_gain = None, -np.inf
            for c in range(num):
                if taken[b, c] or not valid[b, c]:
                    continue
                g = group[b, c]
                deficit = tau[g] - (exposure[g] / total if total > 0 else 0.0) if g > 0 else 0.0
                gain = (1 - lam) * rel[b, c] + lam * deficit
                if gain > best_gain:
                    best, best_gain = c, gain
            if best is None:
                best = int(np.argmin(taken[b]))
            taken[b, best] = True
            out[b, t] = best
            if known[b, best]:
                exposure[group[b, best]] += weight
                total += weight
    return np.take_along_axis(ids, out, 1)


@pytest.mark.parametrize("target", ["relevance", "equal", "catalogue"])
@pytest.mark.parametrize("lam", [0.0, 0.5, 0.9])
def test_exposure_matches_numpy_greedy(target, lam):
    ctx = _context(7, batch=6)
    ids, scores = _candidates(7, batch=6)
    scores[2, 3] = -np.inf
    ids[4, 0] = 0
    got, _ = _run(Exposure(lambda_=lam, target=target), ids, scores, ctx)
    want = _exposure_reference(ids, scores, np.asarray(ctx.item_group_v), lam, target, K)
    np.testing.assert_array_equal(got, want)


def test_exposure_evens_out_the_groups():
    ctx = _context(8, batch=32)
    ids, scores = _candidates(8, batch=32)
    groups_v = np.asarray(ctx.item_group_v)

    def spread(lists):
        weights = 1 / np.log2(2 + np.arange(K))
        per_group = [(weights * (groups_v[lists] == g)).sum() for g in (1, 2, 3)]
        return max(per_group) - min(per_group)

    fair = _run(Exposure(lambda_=0.9, target="equal"), ids, scores, ctx)[0]
    assert spread(fair) < spread(ids[:, :K])


# ---------------------------------------------------------------------------------------------
# Popularity: xQuAD.
# ---------------------------------------------------------------------------------------------


def test_head_items_hold_the_first_share_of_interactions():
    pop = jnp.asarray([0, 50, 5, 30, 10, 5, 0], jnp.float32)  # 100 interactions
    np.testing.assert_array_equal(head_items(pop, 0.2), [0, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(head_items(pop, 0.6), [0, 1, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(head_items(pop, 0.0), [0] * 7)
    np.testing.assert_array_equal(head_items(pop, 1.0), [0, 1, 1, 1, 1, 1, 0])


@pytest.mark.parametrize("variant", ["binary", "smooth"])
@pytest.mark.parametrize("lam", [0.0, 0.5, 0.9])
def test_xquad_matches_numpy_greedy(variant, lam):
    ctx = _context(9)
    ids, scores = _candidates(9)
    got, _ = _run(XQuAD(lambda_=lam, head_share=0.3, variant=variant), ids, scores, ctx)
    head = np.asarray(head_items(ctx.item_pop_v, 0.3))
    hist = np.asarray(ctx.history_bh)
    for b in range(B):
        real = hist[b][hist[b] > 0]
        p_head = head[real].mean() if len(real) else 0.5
        rel, is_head = _rel(scores[b]), head[ids[b]]

        def objective(lst, p_head=p_head, rel=rel, is_head=is_head):
            i, before = lst[-1], lst[:-1]
            n_head = sum(is_head[j] for j in before)
            n_tail = len(before) - n_head
            if variant == "binary":
                cov_head, cov_tail = float(n_head == 0), float(n_tail == 0)
            else:
                n = max(len(before), 1)
                cov_head, cov_tail = 1 - n_head / n, 1 - n_tail / n
            div = p_head * cov_head if is_head[i] else (1 - p_head) * cov_tail
            return (1 - lam) * rel[i] + lam * div

        np.testing.assert_array_equal(got[b], ids[b][_greedy(objective, C, K)])


# ---------------------------------------------------------------------------------------------
# Filters.
# ---------------------------------------------------------------------------------------------


def _prereq_context(prereqs: dict[int, list[int]], history: list[int]) -> RerankContext:
    table = np.zeros((V, 2), np.int32)
    for item, needed in prereqs.items():
        table[item, : len(needed)] = needed
    return RerankContext(history_bh=jnp.asarray([history], jnp.int32), prereq_vp=jnp.asarray(table))


def test_prerequisites_remove_demote_and_earlier_in_list():
    # 5 needs 1 (taken); 6 needs 2 (not taken); 7 needs 3, which is a candidate after it.
    ctx = _prereq_context({5: [1], 6: [2], 7: [3], 8: [1, 3]}, [0, 1])
    ids = np.asarray([[6, 7, 5, 9, 3, 8]], np.int32)
    scores = np.asarray([[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]], np.float32)

    got, got_scores = _run(Prerequisites(mode="remove"), ids, scores, ctx, k=6)
    np.testing.assert_array_equal(got[0, :3], [5, 9, 3])
    assert set(got[0, 3:]) == {6, 7, 8} and np.isneginf(got_scores[0, 3:]).all()

    got, got_scores = _run(Prerequisites(mode="demote", penalty=2), ids, scores, ctx, k=6)
    # keys: 6 -> 2.5, 7 -> 3.5, 5 -> 2, 9 -> 3, 3 -> 4, 8 -> 7.5
    np.testing.assert_array_equal(got[0], [5, 6, 9, 7, 3, 8])
    assert np.isfinite(got_scores).all()

    got, _ = _run(Prerequisites(mode="remove", earlier_in_list=True), ids, scores, ctx, k=6)
    np.testing.assert_array_equal(got[0, :5], [5, 9, 3, 7, 8])  # 7 and 8 follow 3 in


def test_filter_seen_and_dedupe():
    ctx = RerankContext(history_bh=jnp.asarray([[0, 4, 9]], jnp.int32))
    ids = np.asarray([[3, 4, 5, 9, 6]], np.int32)
    scores = np.asarray([[5.0, 4.0, 3.0, 2.0, 1.0]], np.float32)
    got, got_scores = _run(FilterSeen(), ids, scores, ctx, k=5)
    np.testing.assert_array_equal(got[0, :3], [3, 5, 6])
    assert np.isneginf(got_scores[0, 3:]).all()

    ids = np.asarray([[3, 4, 3, 0, 4, 7]], np.int32)
    scores = np.asarray([[-np.inf, 4.0, 3.0, 2.0, 1.0, 0.5]], np.float32)
    got, got_scores = _run(Dedupe(), ids, scores, ctx, k=6)
    np.testing.assert_array_equal(got[0, :3], [4, 3, 7])  # the first *valid* 3 stays
    assert np.isneginf(got_scores[0, 3:]).all()


# ---------------------------------------------------------------------------------------------
# Chains.
# ---------------------------------------------------------------------------------------------


def test_chain_applies_its_stages_left_to_right_and_empties_invalid_slots():
    ctx = _context(10)
    ids, scores = _candidates(10)
    ids[0, :3] = np.asarray(ctx.history_bh)[0, -1]  # a seen item, three times
    stages = [Dedupe(), FilterSeen(), MMR(lambda_=0.6)]
    got_ids, got_scores = rerank(stages, ids, scores, ctx, K)
    i, s = jnp.asarray(ids), jnp.asarray(scores)
    for stage in stages[:-1]:
        i, s = stage(i, s, ctx, k=C)
    want_ids, want_scores = stages[-1](i, s, ctx, k=K)
    want_ids = np.where(np.isfinite(want_scores), want_ids, 0)
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_array_equal(got_scores, want_scores)
    np.testing.assert_array_equal(chain(stages, K)(ids, scores, ctx)[0], got_ids)
    # A chain of filters that leaves too few items: empty slots are id 0, score -inf.
    ctx_seen = ctx._replace(history_bh=jnp.asarray(ids[:, : C - 2]))
    out_ids, out_scores = rerank([FilterSeen()], ids, scores, ctx_seen, 4)
    assert (np.asarray(out_ids)[:, 2:] == 0).all()
    assert np.isneginf(np.asarray(out_scores)[:, 2:]).all()


@pytest.mark.parametrize("reranker", [MMR(lambda_=0.4), DPP(theta=0.6)], ids=repr)
def test_unrolled_loops_select_the_same(reranker, monkeypatch):
    ctx = _context(14)
    ids, scores = _candidates(14)
    looped = _run(reranker, ids, scores, ctx)
    monkeypatch.setattr(greedy_module, "UNROLL_UP_TO", 16)
    unrolled = _run(reranker, ids, scores, ctx)
    np.testing.assert_array_equal(unrolled[0], looped[0])
    np.testing.assert_array_equal(unrolled[1], looped[1])


def test_rerank_in_chunks_equals_the_whole_batch():
    ctx = _context(11, batch=7)
    ids, scores = _candidates(11, batch=7)
    stages = [DPP(theta=0.6)]
    whole = rerank(stages, ids, scores, ctx, K, rows_per_chunk=0)
    chunked = rerank(stages, ids, scores, ctx, K, rows_per_chunk=3)  # 7 = 3 + 3 + 1 (padded)
    np.testing.assert_array_equal(chunked[0], whole[0])
    np.testing.assert_array_equal(chunked[1], whole[1])


# ---------------------------------------------------------------------------------------------
# Properties (hypothesis): every reranker, random candidates and side information.
# ---------------------------------------------------------------------------------------------

PB, PC = 3, 8  # fixed shapes: each configuration compiles once
PROPERTY_CONFIGS = [
    MMR(lambda_=0.5),
    MMR(lambda_=0.2, similarity="topics"),
    DPP(theta=0.7),
    Calibration(lambda_=0.6),
    FAIR(protected_groups=(1,), p=0.6),
    Exposure(lambda_=0.8),
    XQuAD(lambda_=0.6, variant="binary"),
    Prerequisites(),
    Prerequisites(earlier_in_list=True),
    Prerequisites(mode="demote", penalty=2),
    FilterSeen(),
    Dedupe(),
]
_JITTED: dict = {}


def _jitted(reranker, k):
    if (reranker, k) not in _JITTED:
        _JITTED[reranker, k] = jax.jit(lambda i, s, c: reranker(i, s, c, k=k))
    return _JITTED[reranker, k]


@st.composite
def lists_and_context(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    ids = np.stack([rng.choice(np.arange(1, V), PC, replace=False) for _ in range(PB)])
    ids = np.where(rng.random((PB, PC)) < draw(st.sampled_from([0.0, 0.2])), 0, ids)
    scores = rng.normal(size=(PB, PC)) * draw(st.sampled_from([0.01, 1.0, 100.0]))
    scores = np.where(
        rng.random((PB, PC)) < draw(st.sampled_from([0.0, 0.3, 1.0])), -np.inf, scores
    )
    ctx = _context(
        int(rng.integers(1 << 30)), batch=PB, prereq_density=draw(st.sampled_from([0.2, 0.8]))
    )
    return ids.astype(np.int32), scores.astype(np.float32), ctx


@pytest.mark.slow  # random cases compile anew; the reference tests above cover the numerics
@pytest.mark.parametrize("reranker", PROPERTY_CONFIGS, ids=repr)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=lists_and_context(), k=st.sampled_from([1, PC]))
def test_every_output_keeps_the_contract(reranker, data, k):
    """Drawn from the candidates, no id twice, length k, valid items first, each with its
    model score; and the prerequisite filter in remove mode never lets a violation through."""
    ids, scores, ctx = data
    out_ids, out_scores = _jitted(reranker, k)(ids, scores, ctx)
    check_reranked(ids, scores, out_ids, out_scores, k, repr(reranker))
    if isinstance(reranker, Prerequisites) and reranker.mode == "remove":
        prereq, hist = np.asarray(ctx.prereq_vp), np.asarray(ctx.history_bh)
        for b in range(PB):
            placed = [int(i) for i, s in zip(out_ids[b], out_scores[b], strict=True) if s > -np.inf]
            for n, item in enumerate(placed):
                allowed = set(hist[b]) | (set(placed[:n]) if reranker.earlier_in_list else set())
                assert all(int(r) in allowed for r in prereq[item] if r > 0), (b, placed)


# ---------------------------------------------------------------------------------------------
# Conformance: every registered reranker, in configurations beyond its defaults (which
# tests/test_plugins.py checks, as it checks every registered plugin of every kind).
# ---------------------------------------------------------------------------------------------

CONFORMANCE_CONFIGS = [
    MMR(lambda_=0.2, similarity="topics"),
    DPP(theta=0.0, similarity="topics"),
    Calibration(lambda_=1.0, normalize=False),
    FAIR(protected_groups=(2, 3), adjust=False),
    Exposure(lambda_=1.0, target="equal"),
    XQuAD(head_share=0.5, variant="binary"),
    Prerequisites(mode="demote", earlier_in_list=True),
    FilterSeen(),
    Dedupe(),
    TargetDifficulty(low=0.3, high=0.5, coverage=1.0),
]


def test_every_registered_reranker_is_covered():
    covered = {type(r).plugin_name for r in CONFORMANCE_CONFIGS}  # type: ignore[attr-defined]
    assert covered == set(registry.rerankers.names())
    assert "rerankers" in CHECKS  # and so check_registered runs on each one's defaults


@pytest.mark.slow  # non-default settings; tests/test_plugins.py checks every default fast
@pytest.mark.parametrize("reranker", CONFORMANCE_CONFIGS, ids=repr)
def test_reranker_conformance(reranker):
    check_reranker(reranker, tiny_rerank_context())


# ---------------------------------------------------------------------------------------------
# Bad input: one clear message each.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "fields", "message"),
    [
        (MMR, {"lambda_": 1.5}, r"lambda_ must lie in \[0, 1\], got 1.5"),
        (Calibration, {"lambda_": -0.1}, r"lambda_ must lie in \[0, 1\]"),
        (DPP, {"theta": 1.0}, r"theta must lie in \[0, 1\), got 1.0"),
        (FAIR, {"protected_groups": ()}, "protected_groups must list at least one group"),
        (FAIR, {"protected_groups": (1,), "p": 1.2}, r"p must lie in \(0, 1\)"),
        (XQuAD, {"head_share": 2.0}, r"head_share must lie in \[0, 1\]"),
        (Prerequisites, {"penalty": -1}, "penalty must be a number of places >= 0"),
    ],
)
def test_a_field_out_of_range_is_one_clear_error(cls, fields, message):
    with pytest.raises(ValueError, match=message):
        cls(**fields)


def test_a_recipe_table_out_of_range_names_the_key():
    with pytest.raises(RecipeError, match=r"key 'lambda_': must lie in \[0, 1\]"):
        from_dict(MMR, {"lambda_": 3})


def test_k_beyond_the_candidates_is_one_clear_error():
    ctx = _context(12)
    ids, scores = _candidates(12)
    with pytest.raises(ValueError, match=r"mmr: k = 11 exceeds the 10 candidates .*\(K > C\)"):
        MMR()(ids, scores, ctx, k=C + 1)
    with pytest.raises(ValueError, match=r"reranker chain: k = 11 exceeds the 10 candidates"):
        rerank([FilterSeen(), MMR()], ids, scores, ctx, C + 1)


def test_an_empty_chain_is_one_clear_error():
    with pytest.raises(ValueError, match="a reranker chain needs at least one stage"):
        chain([], 5)
    with pytest.raises(ValueError, match="a reranker chain needs at least one stage"):
        rerank([], *_candidates(0), _context(0), K)


def test_an_unknown_reranker_is_a_registry_error():
    with pytest.raises(PluginError, match=r"unknown reranker 'mrr'; known rerankers: .*mmr"):
        registry.rerankers.get("mrr")


def test_a_missing_item_attribute_is_one_clear_error():
    ids, scores = _candidates(13)
    ctx = RerankContext(history_bh=jnp.zeros((B, 2), jnp.int32))
    with pytest.raises(ValueError, match=r"calibration needs item topics \(RerankContext"):
        Calibration()(ids, scores, ctx, k=K)
    assert MMR(similarity="topics").requires() == {"topics"}
    assert FAIR(protected_groups=(1,)).requires() == {"groups"}
