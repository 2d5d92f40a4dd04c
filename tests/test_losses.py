"""Sampled losses against NumPy on fixed negatives, the samplers, and the logQ correction."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rectk import registry
from rectk.testing import tiny_context
from rectk_plugins.losses import BCE, BPR, GBCE, SampledSoftmax, gbce_beta, sample_negatives

D, V = 8, 32


def _case(n=4, seed=0):
    rng = np.random.default_rng(seed)
    user = rng.normal(size=(n, D)).astype(np.float32)
    table = rng.normal(size=(V, D)).astype(np.float32)
    target = np.array([2, 7, 30, 0][:n])
    return user, table, target, (target > 0).astype(np.float32)


def _dot():
    return registry.heads.get("dot")().build(tiny_context())


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def _call(loss, user, table, target, weight, **kw):
    return float(
        loss.with_negatives(
            head=_dot(),
            user_nd=jnp.asarray(user),
            table_vd=jnp.asarray(table),
            target_n=jnp.asarray(target),
            weight_n=jnp.asarray(weight),
            **kw,
        )
    )


def test_sampled_softmax_matches_numpy():
    user, table, target, weight = _case()
    negatives = np.array([5, 7, 11, 30, 7])  # 7 and 30 are targets of rows 1 and 2: hits
    log_count = np.log(np.array([0.5, 2.0, 1.0, 0.25, 2.0]))
    fixed = dict(negatives=jnp.asarray(negatives), log_count=jnp.asarray(log_count, jnp.float32))
    got = _call(SampledSoftmax(), user, table, target, weight, **fixed)
    raw = _call(SampledSoftmax(logq_correction=False), user, table, target, weight, **fixed)
    for corrected, value in ((True, got), (False, raw)):
        losses = []
        for n in range(3):  # row 3 is padding
            pos = user[n] @ table[target[n]]
            neg = table[negatives] @ user[n] - (log_count if corrected else 0.0)
            neg = neg[negatives != target[n]]
            losses.append(np.log(np.exp(pos) + np.exp(neg).sum()) - pos)
        np.testing.assert_allclose(value, np.mean(losses), rtol=1e-5)


@pytest.mark.parametrize("shared", [False, True])
def test_bpr_bce_gbce_match_numpy(shared):
    user, table, target, weight = _case()
    rng = np.random.default_rng(1)
    negatives = rng.integers(1, V, size=(3,) if shared else (4, 3))
    negatives[..., 0] = 7  # a hit for row 1
    neg_nk = np.broadcast_to(negatives, (4, 3))
    t, k = 0.75, 3
    beta = gbce_beta(k, V - 1, t)
    alpha = k / (V - 2)
    assert np.isclose(beta, alpha * (t * (1 - 1 / alpha) + 1 / alpha))
    ref = {"bpr": [], "bce": [], "gbce": []}
    for n in range(3):
        pos = user[n] @ table[target[n]]
        valid = neg_nk[n] != target[n]
        neg = np.einsum("kd,d->k", table[neg_nk[n]], user[n])[valid]
        ref["bpr"].append(np.mean(-_log_sigmoid(pos - neg)))
        ref["bce"].append(-_log_sigmoid(pos) - np.sum(_log_sigmoid(-neg)))
        ref["gbce"].append(-beta * _log_sigmoid(pos) - np.sum(_log_sigmoid(-neg)))
    losses = {
        "bpr": BPR(num_negatives=k),
        "bce": BCE(num_negatives=k),
        "gbce": GBCE(num_negatives=k, t=t),
    }
    for name, loss in losses.items():
        got = _call(loss, user, table, target, weight, negatives=jnp.asarray(negatives))
        np.testing.assert_allclose(got, np.mean(ref[name]), rtol=1e-5, err_msg=name)
    bce = _call(BCE(num_negatives=k), user, table, target, weight, negatives=jnp.asarray(negatives))
    gbce0 = _call(
        GBCE(num_negatives=k, t=0.0), user, table, target, weight, negatives=jnp.asarray(negatives)
    )
    np.testing.assert_allclose(gbce0, bce, rtol=1e-6)  # t = 0 is BCE


def test_call_draws_uniform_negatives_with_the_key():
    user, table, target, weight = _case()
    key = jax.random.key(5)
    args = dict(
        head=_dot(),
        user_nd=jnp.asarray(user),
        table_vd=jnp.asarray(table),
        target_n=jnp.asarray(target),
        weight_n=jnp.asarray(weight),
    )
    loss = BCE(num_negatives=3)
    negatives = jax.random.randint(key, (4, 3), 1, V)
    assert float(loss(key=key, **args)) == float(loss.with_negatives(negatives=negatives, **args))
    assert float(loss(key=key, **args)) != float(loss(key=jax.random.key(6), **args))


def test_samplers_exclude_padding_and_report_expected_counts():
    key = jax.random.key(0)
    target = jnp.array([3, 3, 5, 0, 9, 0])
    weight = (target > 0).astype(jnp.float32)
    counts = np.arange(V, dtype=np.float32)
    kw = dict(num=4000, vocab_size=V, target_n=target, weight_n=weight, item_counts=counts)
    neg, logc = sample_negatives("uniform", key, **kw)
    assert int(neg.min()) >= 1 and int(neg.max()) < V
    np.testing.assert_allclose(np.exp(logc), 4000 / (V - 1), rtol=1e-5)

    neg, logc = sample_negatives("popularity", key, **kw)
    q = (counts + 1) / (counts[1:] + 1).sum()
    np.testing.assert_allclose(np.exp(logc), 4000 * q[np.asarray(neg)], rtol=1e-4)
    assert int(neg.min()) >= 1
    freq = np.bincount(np.asarray(neg), minlength=V) / 4000
    np.testing.assert_allclose(freq[1:], q[1:], atol=0.01)

    neg, logc = sample_negatives("in_batch", key, **kw)
    assert set(np.asarray(neg).tolist()) <= {3, 5, 9}
    batch_q = {3: 0.5, 5: 0.25, 9: 0.25}
    np.testing.assert_allclose(np.exp(logc), [4000 * batch_q[int(i)] for i in neg], rtol=1e-4)

    neg, logc = sample_negatives("mixed", key, **{**kw, "num": 10}, mix=0.3)
    neg = np.asarray(neg)
    assert set(neg[:3].tolist()) <= {3, 5, 9} and neg.min() >= 1
    expected = [3 * batch_q.get(int(i), 0.0) + 7 / (V - 1) for i in neg]
    np.testing.assert_allclose(np.exp(logc), expected, rtol=1e-4)

    with pytest.raises(ValueError, match="prepare"):
        sample_negatives("popularity", key, **{**kw, "item_counts": None})


def test_prepare_binds_item_counts_for_the_popularity_sampler():
    assert SampledSoftmax().prepare(item_counts=np.ones(V)) == SampledSoftmax()
    user, table, target, weight = _case()
    loss = SampledSoftmax(sampler="popularity", num_negatives=8)
    prepared = loss.prepare(item_counts=np.arange(V))
    value = jax.jit(
        lambda u: prepared(
            head=_dot(),
            user_nd=u,
            table_vd=jnp.asarray(table),
            target_n=jnp.asarray(target),
            weight_n=jnp.asarray(weight),
            key=jax.random.key(0),
        )
    )(jnp.asarray(user))
    assert np.isfinite(float(value))


def _mc_gradient_error(sampler, num, corrected, keys=2000):
    """Relative distance of the Monte Carlo mean of the sampled-softmax gradient (over
    ``keys`` draws) from the full-softmax gradient, for one learner with fixed logits."""
    v = 30
    rng = np.random.default_rng(0)
    counts = np.round(2000.0 / np.arange(1, v + 1) ** 1.2)  # Zipf-like popularity
    counts[0] = 0
    # Logits rising towards the rare items: popularity and the model disagree.
    logits = np.linspace(-1.0, 2.0, v) + rng.normal(scale=0.3, size=v)
    target = jnp.array([4])
    table = jnp.eye(v)  # scores = the learner's vector: gradients w.r.t. the logits
    head = _dot()
    loss = SampledSoftmax(sampler=sampler, num_negatives=num, logq_correction=corrected)
    loss = loss.prepare(item_counts=counts)

    def grad(key):
        return jax.grad(
            lambda u: loss(
                head=head,
                user_nd=u,
                table_vd=table,
                target_n=target,
                weight_n=jnp.ones(1),
                key=key,
            )
        )(jnp.asarray(logits[None], jnp.float32))[0]

    mean = jax.jit(jax.vmap(grad))(jax.random.split(jax.random.key(1), keys)).mean(0)
    p = np.exp(logits[1:] - logits[1:].max())
    full = np.concatenate([[0.0], p / p.sum()])
    full[4] -= 1.0
    return float(np.linalg.norm(np.asarray(mean) - full) / np.linalg.norm(full))


@pytest.mark.parametrize("sampler", ["popularity", "uniform"])
def test_logq_corrected_gradient_approaches_full_softmax(sampler):
    errors = [_mc_gradient_error(sampler, k, True) for k in (4, 32, 256)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.02, errors


def test_sampled_softmax_without_logq_correction_is_biased():
    corrected = _mc_gradient_error("popularity", 256, True)
    biased = _mc_gradient_error("popularity", 256, False)
    assert biased > 0.1 and biased > 10 * corrected, (biased, corrected)
