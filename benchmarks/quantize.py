"""Int8 item rows against float32: quality, table memory and ranking speed of finished runs.

    python benchmarks/quantize.py RUN_DIR [RUN_DIR ...] [--repeats 7] [--json FILE]

For each run (its best checkpoint; a run still training serves its best so far, said in the
output), the run's recipe names its data, whose test split is ranked in full (every item,
seen items masked, as ``rectk.train`` tests) three ways: float32 (``steps.model_ranks``), int8
rows dequantised chunk by chunk (``quantize.quantized_ranks(dot=False)``) and, for the dot
head, int8 x int8 -> int32 products (``dot=True``). It prints per way NDCG@10 and Recall@10,
their relative change from float32, the share of targets ranked exactly as float32 ranks them,
the scoring rows' bytes, the bytes XLA reports for one compiled batch (arguments and
temporaries), and two times, the median of ``--repeats`` runs timed round-robin after a warm
pass that compiles: ``rank s`` ranks every test learner (encoder and scan), ``scan s`` only
the scan over item chunks, with the learner states computed beforehand.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rectk import quantize, ranking, steps
from rectk import recipe as recipe_lib
from rectk.compiler import jit_inference
from rectk.evaluate import Evaluator, item_chunk
from rectk.predict import load_run
from rectk.setup import prepare

KS = (10,)
NAMES = ("ndcg", "recall")


def _float_scan(bound, num_items, chunk, weights, user_bd, batch):
    model = bound.model(weights["params"], weights["rest"])
    head, rows_vk = model.scoring(model.item_table())
    v = rows_vk.shape[0]

    def score_chunk(u_bd, ids_c):
        return head(u_bd, jnp.take(rows_vk, jnp.minimum(ids_c, v - 1), axis=0))

    t_b = jnp.diagonal(head(user_bd, jnp.take(rows_vk, batch["target"], axis=0)))
    return ranking.target_ranks(
        user_bd, score_chunk, batch["target"], t_b, batch["seen"], num_items=num_items, chunk=chunk
    )


def _int8_scan(bound, num_items, chunk, dot, weights_q, user_bd, batch):
    model = bound.model(weights_q["params"], weights_q["rest"])
    user, score_chunk, score_targets = quantize.chunk_scorers(
        model, weights_q["items"], user_bd, dot
    )
    t_b = score_targets(user, batch["target"])
    return ranking.target_ranks(
        user, score_chunk, batch["target"], t_b, batch["seen"], num_items=num_items, chunk=chunk
    )


def _float_users(bound, weights, batch):
    model = bound.model(weights["params"], weights["rest"])
    return model.user_states(batch["input"], model.item_table(), batch["user"])


def _int8_users(bound, weights_q, batch):
    model = bound.model(weights_q["params"], weights_q["rest"])
    return quantize._user_states(model, weights_q["items"], batch["input"], batch["user"])


def _arrays(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k not in ("valid", "index")}


def _memory(fn, weights, batch) -> dict:
    """XLA's bytes for one compiled batch: arguments (weights and batch) and temporaries."""
    stats = fn.lower(weights, batch).compile().memory_analysis()
    if stats is None:
        return {}
    return {"args_bytes": stats.argument_size_in_bytes, "temp_bytes": stats.temp_size_in_bytes}


def measure(run_dir: str, repeats: int) -> dict:
    run = load_run(run_dir)
    cfg = run.cfg
    _, sp = prepare(cfg)
    e = cfg.eval
    ev = Evaluator(
        sp.test,
        max_len=cfg.model.max_len,
        batch_size=e.batch_size,
        mask_seen=e.mask_seen,
        ks=KS,
        metrics=NAMES,
        trim=cfg.model.encoder.traits.variable_length,
    )
    n, chunk, bound = run.num_items, item_chunk(e.item_chunk, run.num_items), run.bound
    weights_q = quantize.quantize_weights(bound, run.weights)
    rows_vk = jax.jit(lambda w: bound.model(w["params"], w["rest"]).scoring(run.item_table_vd)[1])(
        run.weights
    )
    jit = functools.partial(jit_inference, library_dots=bound.library_dots)
    ways: list[tuple[Any, ...]] = [
        ("float32", run.weights, steps.model_ranks, _float_scan, _float_users, None)
    ]
    for name, dot in (("int8 dequant", False), ("int8 dot", True)):
        ways.append((
            name, weights_q,
            functools.partial(quantize.quantized_ranks, dot=dot),
            functools.partial(_int8_scan, bound, n, chunk, dot),
            _int8_users, dot,
        ))  # fmt: skip
    prepared = []
    for name, weights, ranks_fn, scan_fn, users_fn, dot in ways:
        rank = jit(functools.partial(ranks_fn, bound, n, chunk))
        scan = jit(functools.partial(scan_fn, bound, n, chunk) if dot is None else scan_fn)
        users = jax.jit(functools.partial(users_fn, bound))
        batches = [_arrays(b) for b in ev.batches]
        states = [users(weights, b) for b in batches]
        t = time.perf_counter()
        r = ev.ranks(functools.partial(rank, weights))  # compiles each batch shape
        for s, b in zip(states, batches, strict=True):
            scan(weights, s, b).block_until_ready()
        warm = time.perf_counter() - t
        prepared.append((name, weights, rank, scan, batches, states, r, warm, dot))

    times: dict[str, list[float]] = {p[0]: [] for p in prepared}
    scans: dict[str, list[float]] = {p[0]: [] for p in prepared}
    for _ in range(repeats):  # round-robin: the machine's drift falls on every way alike
        for name, weights, rank, scan, batches, states, *_ in prepared:
            t = time.perf_counter()
            ev.ranks(functools.partial(rank, weights))
            times[name].append(time.perf_counter() - t)
            t = time.perf_counter()
            jax.block_until_ready(
                [scan(weights, s, b) for s, b in zip(states, batches, strict=True)]
            )
            scans[name].append(time.perf_counter() - t)

    first_ranks = prepared[0][6]
    base = ranking.metrics_from_ranks(first_ranks, KS, NAMES)
    float_bytes = int(rows_vk.size) * 4
    rows = []
    for name, weights, rank, _, batches, _, r, warm, _ in prepared:
        m = ranking.metrics_from_ranks(r, KS, NAMES)
        table = float_bytes if name == "float32" else weights["items"].nbytes
        rows.append({
            "way": name,
            **m,
            **{f"{k}_change": m[k] / base[k] - 1.0 for k in m},
            "same_rank": float(np.mean(r == first_ranks)),
            "mean_abs_rank_change": float(np.mean(np.abs(r - first_ranks))),
            "table_bytes": table,
            "table_ratio": float_bytes / table,
            **_memory(rank, weights, batches[0]),
            "rank_s": statistics.median(times[name]),
            "scan_s": statistics.median(scans[name]),
            "warm_s": warm,
        })  # fmt: skip
    return {
        "run": run_dir,
        "data": recipe_lib.plugin_name(cfg.data),
        "data_path": getattr(cfg.data, "path", ""),
        "step": run.step,
        "finished": run.finished,
        "notice": run.notice,
        "test_learners": len(sp.test),
        "items": n,
        "rows_shape": list(rows_vk.shape),
        "chunk": chunk,
        "batch_size": e.batch_size,
        "repeats": repeats,
        "rows": rows,
    }


def show(result: dict) -> None:
    note = f" [{result['notice']}]" if result["notice"] else ""
    v, k = result["rows_shape"]
    print(
        f"\n{result['run']} ({result['data']} {result['data_path']}, step {result['step']}"
        f"{note}): {result['test_learners']} test learners, {result['items']} items, "
        f"rows {v} x {k}, chunk {result['chunk']}, median of {result['repeats']}"
    )
    head = (
        f"{'way':<14}{'NDCG@10':>9}{'change':>9}{'Rec@10':>9}{'change':>9}{'same':>7}{'|dr|':>6}"
        f"{'table KB':>10}{'ratio':>7}{'args KB':>9}{'temp KB':>9}{'rank s':>8}{'scan s':>8}"
    )
    print(head)
    for r in result["rows"]:
        print(
            f"{r['way']:<14}{r['ndcg@10']:>9.4f}{r['ndcg@10_change']:>+9.2%}"
            f"{r['recall@10']:>9.4f}{r['recall@10_change']:>+9.2%}{r['same_rank']:>7.1%}"
            f"{r['mean_abs_rank_change']:>6.2f}"
            f"{r['table_bytes'] / 1024:>10.1f}{r['table_ratio']:>6.2f}x"
            f"{r.get('args_bytes', 0) / 1024:>9.0f}{r.get('temp_bytes', 0) / 1024:>9.0f}"
            f"{r['rank_s']:>8.3f}{r['scan_s']:>8.3f}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--json", default="")
    a = p.parse_args()
    results = []
    for run_dir in a.runs:
        results.append(measure(run_dir, a.repeats))
        show(results[-1])
    env = {
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
    }
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"environment": env, "runs": results}, f, indent=2)


if __name__ == "__main__":
    main()
