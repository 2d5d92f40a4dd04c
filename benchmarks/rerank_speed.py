"""Reranking speed: rectk's jitted, batched MMR and DPP against per-learner NumPy loops.

    python benchmarks/rerank_speed.py --json rerank_speed.json

Seeded data: an item table of ``--items`` random vectors (D = ``--dim``); for each of
``--learners`` learners, ``--candidates`` distinct candidate items with random scores sorted
best first (as retrieval hands them over). Each algorithm reranks every list to ``--k``
twice: with rectk (``rectk_plugins.rerankers.rerank``, jit-compiled once, fed ``--batch``
learners per call, all of them by default, which it reranks in chunks of
``ROWS_PER_CHUNK``) and with a straightforward NumPy implementation of the same algorithm, a
loop over learners as a user would write it (MMR: the similarity matrix, then k vectorised
steps; DPP: Chen et al.'s fast greedy MAP inference, their published loop over the kernel
matrix), its BLAS on one thread (see below). Both get the same relevance (each list's scores
min-max scaled to [0, 1]). It prints a table and writes JSON: per algorithm the seconds of
each (the best of ``--repeats`` timed runs of each; rectk's compilation is timed apart),
their ratio, and whether the selections are identical (and, if not, how many lists differ).
"""

from __future__ import annotations

import os

# NumPy's BLAS on one thread: on products as small as one learner's (200 x 64 by 64 x 200) its
# threads cost more than they give (several times slower on a busy 2-core machine), so one
# thread is NumPy's best here. Set before NumPy loads; JAX does not use this BLAS.
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from rectk.contracts import RerankContext  # noqa: E402
from rectk.rerank.chain import ROWS_PER_CHUNK  # noqa: E402
from rectk_plugins.rerankers import DPP, MMR, rerank  # noqa: E402
from rectk_plugins.rerankers.diversity import DPP_EPS  # noqa: E402


def make_data(learners: int, candidates: int, items: int, dim: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(items, dim)).astype(np.float32)
    emb[0] = 0.0  # the padding item
    ids = np.empty((learners, candidates), np.int32)
    for start in range(0, learners, 1000):  # distinct candidates per learner, in blocks
        keys = rng.random((min(1000, learners - start), items - 1))
        ids[start : start + len(keys)] = (
            np.argpartition(keys, candidates, axis=1)[:, :candidates] + 1
        )
    scores = -np.sort(-rng.normal(size=(learners, candidates)), axis=1).astype(np.float32)
    return {"emb": emb, "ids": ids, "scores": scores}


# ---------------------------------------------------------------------------------------------
# NumPy: one learner at a time.
# ---------------------------------------------------------------------------------------------


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)


def _relevance(scores: np.ndarray) -> np.ndarray:
    span = scores.max() - scores.min()
    return (scores - scores.min()) / (span if span > 0 else 1.0)


def mmr_numpy(ids: np.ndarray, scores: np.ndarray, emb: np.ndarray, lam: float, k: int):
    feats = _unit(emb[ids].astype(np.float64))
    rel = _relevance(scores.astype(np.float64))
    sim = feats @ feats.T
    available = np.ones(len(ids), bool)
    maxsim = np.zeros(len(ids))
    chosen = []
    for step in range(k):
        gain = lam * rel - (1.0 - lam) * maxsim
        gain[~available] = -np.inf
        j = int(np.argmax(gain))
        chosen.append(j)
        available[j] = False
        maxsim = sim[j] if step == 0 else np.maximum(maxsim, sim[j])
    return ids[chosen]


def dpp_numpy(ids: np.ndarray, scores: np.ndarray, emb: np.ndarray, theta: float, k: int):
    """Chen, Zhang & Zhou's fast greedy MAP inference (their Algorithm 1, as their code
    writes it), on the kernel ``L = diag(r) S diag(r)``, ``S = (1 + F F^T) / 2``."""
    feats = _unit(emb[ids].astype(np.float64))
    rel = _relevance(scores.astype(np.float64))
    r = np.exp(theta / (2.0 * (1.0 - theta)) * rel)
    kernel = r[:, None] * (0.5 * (1.0 + feats @ feats.T)) * r[None, :]
    cis = np.zeros((k, len(ids)))
    di2s = np.copy(np.diag(kernel))
    chosen = [int(np.argmax(di2s))]
    while len(chosen) < k:
        j, n = chosen[-1], len(chosen) - 1
        eis = (kernel[j, :] - cis[:n, j] @ cis[:n, :]) / math.sqrt(di2s[j])
        cis[n, :] = eis
        di2s -= np.square(eis)
        di2s[chosen] = -np.inf
        live = di2s > DPP_EPS * r**2  # numerically singular otherwise
        if not live.any():  # where their loop stops: the rest by relevance
            rest = [i for i in np.argsort(-rel, kind="stable") if i not in chosen]
            chosen += rest[: k - len(chosen)]
            break
        chosen.append(int(np.argmax(np.where(live, di2s, -np.inf))))
    return ids[chosen]


# ---------------------------------------------------------------------------------------------
# Timing.
# ---------------------------------------------------------------------------------------------


def time_numpy(fn, data: dict, param: float, k: int, repeats: int) -> tuple[float, np.ndarray]:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        pairs = zip(data["ids"], data["scores"], strict=True)
        out = np.stack([fn(ids, scores, data["emb"], param, k) for ids, scores in pairs])
        best = min(best, time.perf_counter() - start)
    return best, out


def time_rectk(stage, data: dict, k: int, batch: int, repeats: int) -> dict:
    emb = jnp.asarray(data["emb"])
    learners = len(data["ids"])
    batch = batch or learners
    hist = jnp.zeros((batch, 1), jnp.int32)
    ctx = RerankContext(history_bh=hist, item_emb_vd=emb)
    chunks = [
        (jnp.asarray(data["ids"][s : s + batch]), jnp.asarray(data["scores"][s : s + batch]))
        for s in range(0, learners, batch)
    ]
    assert all(len(c[0]) == batch for c in chunks), "--learners must be a multiple of --batch"
    start = time.perf_counter()
    jax.block_until_ready(rerank([stage], *chunks[0], ctx, k))
    compile_s = time.perf_counter() - start
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        outs = [rerank([stage], ids, scores, ctx, k)[0] for ids, scores in chunks]
        jax.block_until_ready(outs)
        best = min(best, time.perf_counter() - start)
    return {"seconds": best, "compile_seconds": compile_s, "ids": np.concatenate(outs)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--learners", type=int, default=10_000)
    p.add_argument("--candidates", type=int, default=200)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--items", type=int, default=5_000)
    p.add_argument(
        "--batch", type=int, default=0, help="learners per jitted call (0 = all in one call)"
    )
    p.add_argument("--lambda", dest="lam", type=float, default=0.5, help="MMR trade-off")
    p.add_argument("--theta", type=float, default=0.5, help="DPP trade-off")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path)
    a = p.parse_args()

    data = make_data(a.learners, a.candidates, a.items, a.dim, a.seed)
    algorithms = {
        "mmr": (MMR(lambda_=a.lam), mmr_numpy, a.lam),
        "dpp": (DPP(theta=a.theta), dpp_numpy, a.theta),
    }
    results = {}
    for name, (stage, numpy_fn, param) in algorithms.items():
        ours = time_rectk(stage, data, a.k, a.batch, a.repeats)
        numpy_s, numpy_ids = time_numpy(numpy_fn, data, param, a.k, a.repeats)
        differ = int((ours["ids"] != numpy_ids).any(axis=1).sum())
        results[name] = {
            "config": repr(stage),
            "rectk_seconds": round(ours["seconds"], 4),
            "rectk_compile_seconds": round(ours["compile_seconds"], 3),
            "numpy_seconds": round(numpy_s, 4),
            "speedup": round(numpy_s / ours["seconds"], 1),
            "identical": differ == 0,
            "lists_differing": differ,
        }
    info = {
        "learners": a.learners,
        "candidates": a.candidates,
        "k": a.k,
        "dim": a.dim,
        "items": a.items,
        "batch": a.batch,
        "seed": a.seed,
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "jax": jax.__version__,
        "numpy": np.__version__,
        "device": str(jax.devices()[0]),
        "numpy_blas_threads": os.environ["OPENBLAS_NUM_THREADS"],
        "rows_per_chunk": ROWS_PER_CHUNK,
    }
    print(
        f"{a.learners} learners x {a.candidates} candidates -> top {a.k}, D = {a.dim}, "
        f"{info['cpus']} CPUs, load {info['load_average']}"
    )
    print(f"{'algorithm':<10}{'rectk s':>10}{'numpy s':>10}{'speed-up':>10}  identical")
    for name, r in results.items():
        same = "yes" if r["identical"] else f"no ({r['lists_differing']} lists differ)"
        print(
            f"{name:<10}{r['rectk_seconds']:>10.3f}{r['numpy_seconds']:>10.3f}"
            f"{r['speedup']:>9.1f}x  {same}"
        )
    if a.json:
        a.json.write_text(json.dumps({"setup": info, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
