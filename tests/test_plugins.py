"""Registry-driven: every registered plugin of every kind passes its kind's conformance check
(``rectk.testing``) at tiny shapes (B=2, L=6, D=8, V=32): shapes, finite values, jit equals
eager, gradients flow, causality and padding for encoders, the metric and baseline properties.
Then a few exact values of the built-in losses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rectk import registry
from rectk.testing import CHECKS, check_registered, tiny_context
from tests.conftest import ROOT

D, V = 8, 32

KINDS = [(kind, name) for kind in CHECKS for name in registry.ALL[kind].names()]


@pytest.mark.parametrize(("kind", "name"), KINDS, ids=[f"{k}:{n}" for k, n in KINDS])
def test_registered_plugin_keeps_its_contract(kind, name):
    check_registered(kind, name)


def test_every_registry_has_a_check():
    assert set(CHECKS) == set(registry.ALL)


def _dot():
    return registry.heads.get("dot")().build(tiny_context())


def test_softmax_ce_matches_numpy():
    loss = registry.losses.get("softmax_ce")()
    head = _dot()
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


def test_softmax_ce_chunked_equals_unchunked():
    head = _dot()
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
    head = _dot()
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


# ---------------------------------------------------------------------------------------------
# The example outside plugin (docs/examples/rectk-decay-encoder) keeps the contract.
# ---------------------------------------------------------------------------------------------

EXAMPLE = ROOT / "docs" / "examples" / "rectk-decay-encoder"


@pytest.fixture
def example_module(monkeypatch):
    """The example's encoder module, imported from its folder and forgotten afterwards (the
    registry entry too: tests/test_outside_plugin.py checks rectk's environment lacks it)."""
    import importlib
    import sys

    monkeypatch.syspath_prepend(str(EXAMPLE))
    try:
        yield importlib.import_module("rectk_decay_encoder.encoder")
    finally:
        for name in [m for m in sys.modules if m.startswith("rectk_decay_encoder")]:
            del sys.modules[name]
        registry.encoders._entries.pop("decay", None)
        registry.encoders._origins.pop("decay", None)


def test_example_outside_encoder_passes_the_conformance_checks(example_module):
    from rectk.testing import check_encoder

    check_encoder(example_module.DecayConfig(initial_decay=0.3))


def test_example_outside_encoder_type_checks_against_the_contracts():
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "mypy", str(EXAMPLE / "rectk_decay_encoder")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
