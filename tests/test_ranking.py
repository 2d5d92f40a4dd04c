import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rectk import ranking
from rectk.data.split import EvalSet, Sequences
from rectk.evaluate import Evaluator


def brute_ranks(scores_bv, target_b, seen):
    out = []
    for s, t, hist in zip(scores_bv, target_b, seen, strict=False):
        mask = np.zeros(len(s), bool)
        mask[0] = True
        mask[list(hist)] = True
        mask[t] = True
        out.append(int(((s >= s[t]) & ~mask).sum()))
    return np.array(out)


@pytest.mark.parametrize("chunk", [4, 7, 64])
def test_ranks_match_brute_force(chunk):
    rng = np.random.default_rng(0)
    b, v = 5, 30  # items 1..29
    scores = rng.normal(size=(b, v)).astype(np.float32)
    scores[:, 5] = scores[:, 6]  # a tie
    target = np.array([3, 5, 6, 29, 1])
    seen = [[1, 2], [], [4, 5, 7], [28], [2, 3]]
    seen_bh = np.zeros((b, 4), np.int32)
    for i, h in enumerate(seen):
        seen_bh[i, 4 - len(h) :] = h
    table = jnp.asarray(scores)

    def score_chunk(_, ids_c):
        return jnp.take(table, jnp.minimum(ids_c, v - 1), axis=1)

    got = ranking.target_ranks(
        None,
        score_chunk,
        jnp.asarray(target),
        table[jnp.arange(b), target],
        jnp.asarray(seen_bh),
        num_items=v - 1,
        chunk=chunk,
    )
    np.testing.assert_array_equal(np.asarray(got), brute_ranks(scores, target, seen))

    top_s, top_i = ranking.top_k(
        None, score_chunk, jnp.asarray(seen_bh), k=3, num_items=v - 1, chunk=chunk
    )
    for row in range(b):
        s = scores[row].copy()
        s[0] = -np.inf
        s[seen[row]] = -np.inf
        np.testing.assert_allclose(np.asarray(top_s[row]), np.sort(s)[::-1][:3])
        assert not set(np.asarray(top_i[row]).tolist()) & set(seen[row] + [0])


def test_constant_scorer_ranks_targets_last():
    v = 11
    got = ranking.target_ranks(
        None,
        lambda _, ids: jnp.zeros((2, ids.shape[0])),
        jnp.array([1, 2]),
        jnp.zeros(2),
        jnp.zeros((2, 1), jnp.int32),
        num_items=v - 1,
        chunk=4,
    )
    assert np.asarray(got).tolist() == [9, 9]


def test_metrics_from_ranks():
    m = ranking.metrics_from_ranks(np.array([0, 1, 10]), [1, 5])
    assert m["recall@1"] == pytest.approx(1 / 3)
    assert m["recall@5"] == pytest.approx(2 / 3)
    assert m["ndcg@5"] == pytest.approx((1 + 1 / np.log2(3)) / 3)
    assert m["mrr@5"] == pytest.approx((1 + 0.5) / 3)


def test_evaluator_is_batch_size_invariant():
    rng = np.random.default_rng(1)
    n, v, d = 37, 300, 8
    lengths = rng.integers(1, 20, n)
    ptr = np.concatenate([[0], np.cumsum(lengths)])
    examples = EvalSet(
        user=np.arange(1, n + 1, dtype=np.int32),
        target=rng.integers(1, v, n).astype(np.int32),
        hist=Sequences(ptr=ptr, items=rng.integers(1, v, ptr[-1]).astype(np.int32)),
    )
    table = jnp.asarray(rng.normal(size=(v, d)).astype(np.float32))

    @jax.jit
    def rank_fn(batch):
        u = jnp.take(table, batch["input"], axis=0).mean(axis=1)
        t = jnp.einsum("bd,bd->b", u, table[batch["target"]])

        def score_chunk(u_bd, ids):
            return u_bd @ jnp.take(table, jnp.minimum(ids, v - 1), axis=0).T

        return ranking.target_ranks(
            u, score_chunk, batch["target"], t, batch["seen"], num_items=v - 1, chunk=64
        )

    results = [
        Evaluator(examples, max_len=5, batch_size=bs, mask_seen=True, ks=(5, 10)).metrics(rank_fn)
        for bs in (1, 8, 64)
    ]
    assert results[0] == results[1] == results[2]


def test_evaluator_orders_by_length_trims_windows_and_returns_ranks_in_example_order():
    rng = np.random.default_rng(2)
    n, v, d, max_len = 29, 200, 8, 16
    lengths = np.concatenate([rng.integers(1, 6, n - 3), [40, 17, 9]])  # a few long histories
    ptr = np.concatenate([[0], np.cumsum(lengths)])
    hist = Sequences(ptr=ptr, items=rng.integers(1, v, ptr[-1]).astype(np.int32))
    examples = EvalSet(
        user=np.arange(1, n + 1, dtype=np.int32),
        target=rng.integers(1, v, n).astype(np.int32),
        hist=hist,
    )
    table_np = rng.normal(size=(v, d)).astype(np.float32)
    table = jnp.asarray(table_np)

    @jax.jit
    def rank_fn(batch):  # padding-blind: the sum over real items of the window
        u = (jnp.take(table, batch["input"], axis=0) * (batch["input"] > 0)[..., None]).sum(1)
        t = jnp.einsum("bd,bd->b", u, table[batch["target"]])

        def score_chunk(u_bd, ids):
            return u_bd @ jnp.take(table, jnp.minimum(ids, v - 1), axis=0).T

        return ranking.target_ranks(
            u, score_chunk, batch["target"], t, batch["seen"], num_items=v - 1, chunk=64
        )

    def evaluator(trim):
        return Evaluator(
            examples, max_len=max_len, batch_size=8, mask_seen=True, ks=(5,), trim=trim
        )

    trimmed, full = evaluator(True), evaluator(False)
    assert [b["input"].shape[1] for b in full.batches] == [max_len] * 4
    assert [b["input"].shape[1] for b in trimmed.batches] == [16, 8, 8, 8]  # longest first
    assert [b["seen"].shape[1] for b in trimmed.batches] == [64, 64, 64, 64]
    ranks = trimmed.ranks(rank_fn)
    np.testing.assert_array_equal(ranks, full.ranks(rank_fn))

    expected = []  # brute force, example by example
    for i in range(n):
        h = hist.row(i)
        s_v = table_np @ table_np[h[-max_len:]].sum(0)
        t = s_v[examples.target[i]]
        cand = np.ones(v, bool)
        cand[[0, examples.target[i], *h]] = False
        expected.append(int((s_v[cand] >= t).sum()))
    np.testing.assert_array_equal(ranks, expected)
