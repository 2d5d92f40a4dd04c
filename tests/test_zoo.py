"""Behaviour of the sequence encoders and scoring heads beyond the registry-driven
conformance checks (``rectk.testing``, run by tests/test_plugins.py on every plugin): exact
values at tiny shapes, the transformers' fast paths, compiler options."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rectk import registry
from rectk.contracts import BuildContext

B, L, D = 2, 7, 8


def _ctx(*, dim=D, max_len=L, num_users=5):
    return BuildContext(
        dim=dim,
        max_len=max_len,
        vocab_size=32,
        num_users=num_users,
        catalogue=None,
        rngs=nnx.Rngs(0),
    )


def _encoder(name, *, dim=D, max_len=L, num_users=5, **fields):
    cfg = registry.encoders.get(name)(**fields)
    with nnx.use_eager_sharding(False):
        return cfg.build(_ctx(dim=dim, max_len=max_len, num_users=num_users))


def _inputs(seed=0):
    hist = jnp.array([[0, 0, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 9]])
    emb = jax.random.normal(jax.random.key(seed), (B, L, D)) * (hist > 0)[..., None]
    return emb, hist > 0


USERS = jnp.array([1, 2])
SMALL = {"gru4rec": {}, "caser": {"window": 3}, "mean_pool": {}, "sasrec": {"layers": 1}}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_causal_encoders_read_later_items_at_later_positions(name):
    """The conformance check shows earlier states ignore later items; these encoders also use
    them where they may (bpr_mf, which ignores the history, is left out)."""
    enc = _encoder(name, **SMALL[name])
    emb, mask = _inputs()
    t = 4
    later = emb.at[:, t + 1 :].set(jax.random.normal(jax.random.key(9), (B, L - t - 1, D)))
    a = enc(emb, mask, users_b=USERS)
    b = enc(later, mask, users_b=USERS)
    assert not np.allclose(np.asarray(a[:, t + 1 :]), np.asarray(b[:, t + 1 :]))


def test_bert4rec_sees_both_directions():
    enc = _encoder("bert4rec", layers=1)
    emb, mask = _inputs()
    later = emb.at[:, -1].set(jax.random.normal(jax.random.key(9), (B, D)))
    a, b = enc(emb, mask), enc(later, mask)
    assert not np.allclose(np.asarray(a[:, 3]), np.asarray(b[:, 3]))


def test_bert4rec_output_transform_is_optional():
    from rectk_plugins.encoders.layers import gelu

    full = _encoder("bert4rec", layers=1)
    plain = _encoder("bert4rec", layers=1, output_transform=False)
    emb, mask = _inputs()

    def count(enc):
        return sum(x.size for x in jax.tree.leaves(nnx.state(enc, nnx.Param)))

    assert count(full) - count(plain) == D * D + D + 2 * D  # the dense layer and its layer norm
    # Built from the same seed, the two share the stack; the transform is all that differs.
    np.testing.assert_allclose(
        np.asarray(full(emb, mask)),
        np.asarray(full.out_norm(gelu(full.out(plain(emb, mask))))),
        rtol=1e-5,
        atol=1e-5,
    )


def test_gru4rec_state_is_unchanged_by_left_padding():
    enc = _encoder("gru4rec", layers=2)
    emb, mask = _inputs()
    # Row 0 with two more padding steps in front gives the same final state.
    longer = jnp.concatenate([jnp.zeros((B, 2, D)), emb], axis=1)
    longer_mask = jnp.concatenate([jnp.zeros((B, 2), bool), mask], axis=1)
    np.testing.assert_allclose(
        np.asarray(enc(emb, mask)[:, -1]), np.asarray(enc(longer, longer_mask)[:, -1]), atol=1e-6
    )


def test_mean_pool_is_the_normalised_running_mean():
    enc = _encoder("mean_pool", linear=False)
    emb, mask = _inputs()
    out = np.asarray(enc(emb, mask))
    e = np.asarray(emb)

    def norm(x):  # the layer norm at initialisation (scale 1, bias 0)
        return (x - x.mean()) / np.sqrt(x.var() + 1e-6)

    np.testing.assert_allclose(out[0, 4], norm(e[0, 2:5].mean(0)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out[1, 6], norm(e[1].mean(0)), rtol=1e-4, atol=1e-5)


def test_bpr_mf_returns_the_user_vector_everywhere():
    enc = _encoder("bpr_mf")
    emb, mask = _inputs()
    out = np.asarray(enc(emb, mask, users_b=USERS))
    table = np.asarray(enc.embedding[...])
    np.testing.assert_allclose(out, np.broadcast_to(table[[1, 2]][:, None], out.shape))
    np.testing.assert_allclose(out, np.asarray(enc(emb * 3.0, mask, users_b=USERS)))
    with pytest.raises(ValueError, match="users_b"):
        enc(emb, mask)


def _head(name, **fields):
    with nnx.use_eager_sharding(False):
        return registry.heads.get(name)(**fields).build(_ctx())


def test_cosine_head():
    u = jax.random.normal(jax.random.key(0), (3, D))
    items = jax.random.normal(jax.random.key(1), (5, D)).at[0].set(0.0)
    un = np.asarray(u) / np.linalg.norm(np.asarray(u), axis=1, keepdims=True)
    it = np.asarray(items[1:]) / np.linalg.norm(np.asarray(items[1:]), axis=1, keepdims=True)
    for learn in (False, True):
        s = np.asarray(_head("cosine", temperature=0.5, learn_temperature=learn)(u, items))
        np.testing.assert_allclose(s[:, 1:], un @ it.T / 0.5, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(s[:, 0], 0.0)  # the zero padding row
    head = _head("cosine", learn_temperature=True)
    g = nnx.grad(lambda h: h(u, items).sum())(head)
    assert float(jnp.abs(g["log_temperature"][...])) > 0


def test_bilinear_head_starts_as_dot():
    u, items = (
        jax.random.normal(jax.random.key(0), (3, D)),
        jax.random.normal(jax.random.key(1), (5, D)),
    )
    np.testing.assert_allclose(
        np.asarray(_head("bilinear")(u, items)), np.asarray(u @ items.T), rtol=1e-5
    )


def test_mlp_head_chunked_equals_direct():
    u, items = (
        jax.random.normal(jax.random.key(0), (3, D)),
        jax.random.normal(jax.random.key(1), (37, D)),
    )
    whole = _head("mlp", layers=2)
    chunked = _head("mlp", layers=2, chunk_elements=3 * D * 4)  # 4 items at a time
    s = np.asarray(whole(u, items))
    np.testing.assert_allclose(np.asarray(chunked(u, items)), s, rtol=1e-5, atol=1e-6)
    # The same as the MLP over concat(user, item).
    w_in = np.concatenate(
        [np.asarray(whole.user_in.kernel[...]), np.asarray(whole.item_in.kernel[...])]
    )
    h = np.maximum(
        np.concatenate(
            [np.repeat(np.asarray(u)[:, None], 37, 1), np.repeat(np.asarray(items)[None], 3, 0)], -1
        )
        @ w_in
        + np.asarray(whole.user_in.bias[...]),
        0,
    )
    h = np.maximum(
        h @ np.asarray(whole.hidden[0].kernel[...]) + np.asarray(whole.hidden[0].bias[...]), 0
    )
    ref = (h @ np.asarray(whole.out.kernel[...]))[..., 0] + np.asarray(whole.out.bias[...])[0]
    np.testing.assert_allclose(s, ref, rtol=1e-4, atol=1e-5)
    g_whole = jax.grad(lambda a: whole(a, items).sum())(u)
    g_chunk = jax.grad(lambda a: chunked(a, items).sum())(u)
    np.testing.assert_allclose(np.asarray(g_chunk), np.asarray(g_whole), rtol=1e-4, atol=1e-6)


def _noisy(enc):
    """``enc`` with random noise on every weight: initialisation zeroes biases and keeps the
    attention's outputs small, which would hide a wrong term."""
    graphdef, params = nnx.split(enc)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(3), len(leaves))
    noisy = [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    return nnx.merge(graphdef, jax.tree.unflatten(tree, noisy))


@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_last_only_equals_the_last_state(name):
    """The ranking fast path is exact: the last layer computes the last position only, and its
    attention folds the key and value projections into the query and the weighted inputs (so
    the weights here are all random, biases included, where initialisation zeroes biases)."""
    enc = _noisy(_encoder(name, layers=2))
    emb, mask = _inputs()
    full = enc(emb, mask, users_b=USERS)
    last = enc(emb, mask, users_b=USERS, last_only=True)
    assert last.shape == (B, 1, D)
    np.testing.assert_allclose(np.asarray(last[:, 0]), np.asarray(full[:, -1]), atol=1e-5)
    # With attention dropout drawn (training), the weights do not sum to one: the direct path.
    drawn = enc(emb, mask, users_b=USERS, rngs=nnx.Rngs(dropout=1), last_only=True)
    assert drawn.shape == (B, 1, D) and np.isfinite(np.asarray(drawn)).all()


@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_inference_attention_equals_the_training_path(name):
    """Without dropout drawn (evaluation), attention runs heads-major with the softmax's
    division deferred to the context; with dropout 0 and ``rngs`` given it takes the training
    path. Both give the same states, padding rows (nothing to attend to) included."""
    enc = _noisy(_encoder(name, layers=2, dropout=0.0, attn_dropout=0.0))
    emb, mask = _inputs()
    evaluation = enc(emb, mask, users_b=USERS)
    training = enc(emb, mask, users_b=USERS, rngs=nnx.Rngs(dropout=1))
    np.testing.assert_allclose(np.asarray(evaluation), np.asarray(training), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", registry.encoders.names())
def test_library_dots_do_not_change_the_states(name):
    """Ranking compiles with XLA:CPU's library (YNNPACK) fusions or without, as the encoder
    declares (``rectk.compiler``); both compilations give the same states, at a shape large
    enough for the library to take the matrix products (a guard against miscompilation)."""
    from rectk.compiler import inference_options

    graphdef, state = nnx.split(_encoder(name, dim=64, max_len=20, num_users=40))
    lengths = np.arange(32) % 20 + 1
    mask = jnp.asarray(np.arange(20)[None] >= 20 - lengths[:, None])
    emb = jax.random.normal(jax.random.key(2), (32, 20, 64)) * mask[..., None]
    users = jnp.arange(32) + 1

    def states(state, emb, mask):
        return nnx.merge(graphdef, state)(emb, mask, users_b=users)

    with_lib, without = (
        jax.jit(states, compiler_options=inference_options(flag))(state, emb, mask)
        for flag in (True, False)
    )
    np.testing.assert_allclose(np.asarray(with_lib), np.asarray(without), rtol=1e-4, atol=1e-5)
