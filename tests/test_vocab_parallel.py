"""Vocabulary-parallel item tables: the table sharded by rows over the ``model`` mesh axis
trains and evaluates as on one device. Each test starts a process with 8 CPU devices."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT, TINY

MESHES = [(8, 1), (4, 2), (2, 4), (1, 8)]

# In a process with 8 CPU devices: the tiny quickstart run on one device, then on each mesh.
_RUNS = """
import json, sys
from rectk import recipe as recipe_lib
from rectk.train import train_and_evaluate
overrides, meshes, run_dir = json.loads(sys.argv[1])
out = {}
for data, model in [(1, 1), *meshes]:
    sets = [*overrides, f"mesh.data={data}", f"mesh.model={model}",
            f"run_dir={run_dir}/{data}x{model}"]
    recipe = recipe_lib.load("recipes/quickstart.toml", sets)
    results = train_and_evaluate(recipe, progress=False, echo=lambda *_: None)
    log = f"{run_dir}/{data}x{model}/quickstart/metrics.jsonl"
    rows = [json.loads(line) for line in open(log)]
    out[f"{data}x{model}"] = {
        "loss": [r["train/loss"] for r in rows if "train/loss" in r],
        "valid": results["valid"],
        "test": results["test"]["model"],
    }
print("RESULT" + json.dumps(out))
"""

# The full-softmax CE (whole and chunked over rows) with the table sharded over ``model``:
# its value and gradients against one device, and the logits' shape on each device.
_CE = """
import json, re
import jax, jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
from rectk.sharding import make_mesh
from rectk_plugins.losses.softmax import SoftmaxCE
v, d, n = 1024, 16, 256
table = jax.random.normal(jax.random.key(0), (v, d))
user = jax.random.normal(jax.random.key(1), (n, d))
target = jax.random.randint(jax.random.key(2), (n,), 1, v)
weight = (jnp.arange(n) % 5 != 0).astype(jnp.float32)
head = lambda u, t: u @ t.T
out = {}
for chunk in (0, 64):
    loss = SoftmaxCE(chunk_rows=chunk)
    def f(t, u, y, w):
        return loss(head=head, user_nd=u, table_vd=t, target_n=y, weight_n=w, key=None)
    grad = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))
    one = grad(table, user, target, weight)
    for data, model in [(2, 4), (1, 8)]:
        mesh = make_mesh(data, model)
        args = (
            jax.device_put(table, NamedSharding(mesh, P("model", None))),
            jax.device_put(user, NamedSharding(mesh, P("data", None))),
            jax.device_put(target, NamedSharding(mesh, P("data"))),
            jax.device_put(weight, NamedSharding(mesh, P("data"))),
        )
        hlo = grad.lower(*args).compile().as_text()
        widest = max(int(c) for _, c in re.findall(r"f32\\[(\\d+),(\\d+)\\]", hlo))
        got = grad(*args)
        out[f"{chunk}/{data}x{model}"] = {
            "loss": [float(one[0]), float(got[0])],
            "grad_err": max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(one[1], got[1])),
            "widest": widest,
            "all_reduce": hlo.count("all-reduce("),
        }
print("RESULT" + json.dumps(out))
"""


def _run(script: str, *args: str) -> dict:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


def test_sharded_softmax_ce_matches_one_device_without_full_logits():
    """Loss and gradients equal one device's; no device holds a row of all V logits (the
    widest float matrix in the compiled step is at most V / model wide), and the
    normaliser is combined across shards by all-reduce."""
    out = _run(_CE)
    for name, r in out.items():
        model = int(name.split("x")[-1])
        assert r["loss"][1] == pytest.approx(r["loss"][0], rel=1e-5), name
        assert r["grad_err"] < 1e-5, name
        assert r["widest"] <= 1024 // model, name
        assert r["all_reduce"] > 0, name


@pytest.mark.slow
def test_meshes_train_and_evaluate_as_one_device(tmp_path):
    """The tiny quickstart run on data x model meshes 8x1, 4x2, 2x4 and 1x8 (655 items, so
    the table gains padding rows on 2, 4 and 8 shards): per-step losses, validation and test
    metrics as on one device, within float tolerance."""
    overrides = [*TINY, "train.log_every=1", "train.steps=6", "train.eval_every=3"]
    out = _run(_RUNS, json.dumps([overrides, MESHES, str(tmp_path)]))
    one = out["1x1"]
    assert len(one["loss"]) == 6
    for data, model in MESHES:
        got = out[f"{data}x{model}"]
        np.testing.assert_allclose(got["loss"], one["loss"], rtol=2e-4, err_msg=f"{data}x{model}")
        for split in ("valid", "test"):
            for k, v in one[split].items():
                assert got[split][k] == pytest.approx(v, abs=2e-3), (data, model, split, k)


@pytest.mark.parametrize("shards", [2, 4, 8])
def test_chunks_laid_out_by_shard_rank_as_contiguous_chunks(shards):
    """Target ranks and top-k over shard-strided chunks (``ranking.chunk_ids``) equal the
    contiguous chunks', seen items masked, ids past the catalogue never ranked."""
    import jax.numpy as jnp

    from rectk import ranking

    num_items, chunk, b = 37, 8, 6
    rng = np.random.default_rng(shards)
    scores_bv = jnp.asarray(rng.normal(size=(b, 64)).round(1), jnp.float32)  # ties too
    target_b = jnp.asarray(rng.integers(1, num_items + 1, b))
    seen_bh = jnp.asarray(rng.integers(0, num_items + 1, (b, 5)))

    def score_chunk(_, ids_c):
        return jnp.take(scores_bv, ids_c, axis=1)

    t_b = jnp.take_along_axis(scores_bv, target_b[:, None], axis=1)[:, 0]
    args = dict(num_items=num_items, chunk=chunk)
    want = ranking.target_ranks(None, score_chunk, target_b, t_b, seen_bh, **args)
    got = ranking.target_ranks(None, score_chunk, target_b, t_b, seen_bh, **args, shards=shards)
    np.testing.assert_array_equal(got, want)
    want_s, _ = ranking.top_k(None, score_chunk, seen_bh, k=5, **args)
    got_s, got_i = ranking.top_k(None, score_chunk, seen_bh, k=5, **args, shards=shards)
    np.testing.assert_array_equal(got_s, want_s)
    assert set(np.asarray(got_i).ravel()) <= set(range(1, num_items + 1))
