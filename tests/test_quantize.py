"""Int8 item rows: the per-row round trip, and ranking with them against float32."""

import doctest
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rectk import quantize, steps
from rectk import recipe as recipe_lib
from rectk.config import ModelConfig
from rectk.model import build_model, trainable_filter

V, D, B, L = 200, 32, 6, 8  # items 1..199


def _tiny(head="dot", encoder="sasrec", item_bias=False, mask_token=False, table=None):
    """``(bound, weights)`` of a tiny model; ``table`` [V, D] replaces its item vectors."""
    cfg = recipe_lib.from_dict(
        ModelConfig,
        {
            "dim": D,
            "max_len": L,
            "item_bias": item_bias,
            "encoder": {"type": encoder, "layers": 1},
            "head": {"type": head},
        },
    )
    model = build_model(
        cfg,
        vocab_size=V,
        num_users=B + 1,
        catalogue=None,
        rngs=nnx.Rngs(params=jax.random.key(0)),
        mask_token=mask_token,
    )
    if table is not None:
        model.item_tower.embedding[...] = jnp.asarray(table)
    graphdef, params, rest = nnx.split(model, trainable_filter(model), ...)  # type: ignore[misc]
    return steps.Bound(graphdef=graphdef), {"params": params, "rest": rest}


def _exact_table(seed=0):
    """Rows that int8 holds exactly: integers in [-127, 127] (one of them +-127) times a power
    of two per row."""
    rng = np.random.default_rng(seed)
    ints = rng.integers(-127, 128, size=(V, D))
    ints[np.arange(V), rng.integers(0, D, V)] = 127 * rng.choice([-1, 1], V)
    return (ints * 2.0 ** rng.integers(-8, -2, size=(V, 1))).astype(np.float32)


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    hist = rng.integers(1, V, size=(B, L)).astype(np.int32)
    hist[0, :5] = 0  # a short, left-padded history
    return {
        "user": np.arange(1, B + 1, dtype=np.int32),
        "input": hist,
        "seen": hist,
        "target": rng.integers(1, V, size=B).astype(np.int32),
    }


def _rankers(bound, weights, k=10, chunk=128):
    """Float and int8 (dequantised, int8 dot) top-k and ranks, jitted."""
    n = V - 1
    wq = quantize.quantize_weights(bound, weights)
    ways = {
        "float": (
            jax.jit(functools.partial(steps.model_top_k, bound, n, chunk, k)),
            jax.jit(functools.partial(steps.model_ranks, bound, n, chunk)),
            weights,
        )
    }
    for name, dot in (("dequant", False), ("dot", True)):
        ways[name] = (
            jax.jit(functools.partial(quantize.quantized_top_k, bound, n, chunk, k, dot=dot)),
            jax.jit(functools.partial(quantize.quantized_ranks, bound, n, chunk, dot=dot)),
            wq,
        )
    return ways


def _run(ways, batch):
    return {
        name: (np.asarray(top(w, batch)[1]), np.asarray(ranks(w, batch)))
        for name, (top, ranks, w) in ways.items()
    }


def test_round_trip_is_within_half_a_step_per_row_and_zero_rows_are_exact():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(50, 24)) * rng.uniform(1e-3, 10.0, size=(50, 1))
    table[3] = 0.0
    q = quantize.quantize_rows(jnp.asarray(table, jnp.float32))
    assert q.values_vk.dtype == jnp.int8 and q.values_vk.shape == (50, 24)
    assert q.scale_v.dtype == jnp.float32 and q.scale_v.shape == (50,)
    assert int(jnp.max(jnp.abs(q.values_vk.astype(jnp.int32)))) == 127
    err = np.abs(table - np.asarray(quantize.dequantize(q)))
    scale = np.asarray(q.scale_v)[:, None]
    assert (err <= scale / 2 * (1 + 1e-5)).all()
    assert float(q.scale_v[3]) == 1.0 and (np.asarray(quantize.dequantize(q))[3] == 0.0).all()
    ids = jnp.array([[3, 7], [1, 3]])
    got = quantize.dequantize(q, ids)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(quantize.dequantize(q))[ids])


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros(8, np.float32), "2-D"),
        (np.zeros((2, 3, 4), np.float32), "2-D"),
        (np.zeros((4, 8), np.int32), "floating-point"),
    ],
)
def test_bad_tables_are_a_clear_value_error(bad, match):
    with pytest.raises(ValueError, match=match):
        quantize.quantize_rows(bad)


def test_table_memory_is_about_a_quarter_and_the_float_table_is_dropped():
    bound, weights = _tiny()
    wq = quantize.quantize_weights(bound, weights)
    float_bytes = V * D * 4
    assert wq["items"].nbytes == V * D + 4 * V
    assert float_bytes / wq["items"].nbytes > 3.5  # D = 32: 128 / 36
    for d in (64, 128):
        assert 4 * d / (d + 4) > 3.7
    leaves = jax.tree.leaves({"params": wq["params"], "rest": wq["rest"]})
    assert not any(x.size >= V * D for x in leaves)  # no float table stays resident


@pytest.mark.parametrize(
    "head, encoder, item_bias, mask_token",
    [
        ("dot", "sasrec", False, False),
        ("cosine", "gru4rec", True, False),
        ("dot", "bert4rec", False, True),
    ],
)
def test_int8_ranking_equals_float_where_quantisation_is_exact(
    head, encoder, item_bias, mask_token
):
    bound, weights = _tiny(head, encoder, item_bias, mask_token, table=_exact_table())
    out = _run(_rankers(bound, weights), _batch())
    np.testing.assert_array_equal(out["dequant"][0], out["float"][0])
    np.testing.assert_array_equal(out["dequant"][1], out["float"][1])


def test_int8_ranking_agrees_with_float_on_random_tables():
    bound, weights = _tiny(table=np.random.default_rng(1).normal(size=(V, D)).astype(np.float32))
    out = _run(_rankers(bound, weights, k=10), _batch(2))
    for way in ("dequant", "dot"):
        overlap = np.mean(
            [
                len(set(a) & set(b)) / 10
                for a, b in zip(*(o[0] for o in (out[way], out["float"])), strict=True)
            ]
        )
        assert overlap >= 0.8, (way, overlap)
        assert np.abs(out[way][1] - out["float"][1]).max() <= 3, way
    # the dot path ranks as the dequantised path does, up to the learner vector's rounding
    assert np.abs(out["dot"][1] - out["dequant"][1]).max() <= 3
    dot_overlap = np.mean(
        [len(set(a) & set(b)) / 10 for a, b in zip(out["dot"][0], out["dequant"][0], strict=True)]
    )
    assert dot_overlap >= 0.8


def test_the_dot_path_is_for_the_plain_dot_head_only():
    table = _exact_table()
    bound, weights = _tiny("cosine", table=table)
    out = _run(_rankers(bound, weights), _batch())
    np.testing.assert_array_equal(out["dot"][1], out["dequant"][1])  # cosine: dequantised


def test_a_quantised_run_recommends_as_the_float_run(tiny_run):
    from rectk.predict import load_run, recommend

    run = load_run(tiny_run.path)
    q = quantize.quantize_run(run)
    assert q.item_table_vd is None and isinstance(q.weights["items"], quantize.QuantizedTable)
    user = run.vocab["user_ids"][0]
    want = [r["item"] for r in recommend(run, user=user, k=10, chain="none")]
    got = [r["item"] for r in recommend(q, user=user, k=10, chain="none")]
    assert len(got) == 10 and len(set(got) & set(want)) >= 8


def test_docstring_examples():
    result = doctest.testmod(quantize, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
