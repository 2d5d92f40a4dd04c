"""Distillation: a teacher run beside smaller student runs, quality kept and serving speed.

    python benchmarks/distill.py --teacher runs/ml100k_sasrec \\
        --students runs/ml100k_sasrec_distill runs/ml100k_sasrec_small --json distill.json

For each finished run directory: the test split's NDCG@10 and Recall@10 (``results.json``,
the model's row) and their share of the teacher's; the trained parameters; and the serving
latency of a batch of learners through the run's jitted top-k (``load_run(dir).top_k``, k =
``--k``, the learners' own histories, seen items masked) at each ``--batches`` size: the median
of ``--repeats`` calls, each waited for, compilation excluded (two calls first), the runs
measured in turn within each repeat so that a busy machine slows them alike. ``speed`` is the
teacher's latency over the run's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import numpy as np

from rectk.predict import Loaded, _seen_len, load_run
from rectk.predict import _batch as _rows_batch


def _batch(run: Loaded, size: int) -> dict:
    """The histories of learners 1..size (cycling through the run's learners), as
    ``recommend_many`` batches them."""
    users = np.arange(size) % len(run.vocab["user_ids"]) + 1
    rows = [run.history.row(int(u)) for u in users]
    return {**_rows_batch(run, rows, _seen_len(rows)), "user": users.astype(np.int32)}


def _call(run: Loaded, k: int, batch: dict) -> float:
    t = time.perf_counter()
    jax.block_until_ready(run.top_k(k, run.weights, batch))
    return time.perf_counter() - t


def measure(paths: list[Path], batches: list[int], k: int, repeats: int) -> list[dict]:
    """One row per run (the first is the teacher)."""
    runs = [load_run(p) for p in paths]
    inputs = [{b: _batch(run, b) for b in batches} for run in runs]
    for run, by_size in zip(runs, inputs, strict=True):
        for batch in by_size.values():
            _call(run, k, batch), _call(run, k, batch)  # compile, then once warm
    times: list[dict[int, list[float]]] = [{b: [] for b in batches} for _ in runs]
    for _ in range(repeats):
        for i, run in enumerate(runs):
            for b in batches:
                times[i][b].append(_call(run, k, inputs[i][b]))
    rows = []
    for path, run, t in zip(paths, runs, times, strict=True):
        results = json.loads((path / "results.json").read_text())
        enc = run.cfg.model.encoder
        rows.append(
            {
                "run": str(path),
                "task": type(run.cfg.task).plugin_name,
                "dim": run.cfg.model.dim,
                "layers": getattr(enc, "layers", None),
                "params": int(sum(a.size for a in jax.tree.leaves(run.weights["params"]))),
                "ndcg@10": results["test"]["model"]["ndcg@10"],
                "recall@10": results["test"]["model"]["recall@10"],
                "best_step": results["best_step"],
                "latency_ms": {b: 1e3 * statistics.median(t[b]) for b in batches},
                "latency_ms_min": {b: 1e3 * min(t[b]) for b in batches},
            }
        )
    teacher = rows[0]
    for row in rows:
        for m in ("ndcg@10", "recall@10"):
            row[f"{m}_of_teacher"] = row[m] / teacher[m]
        row["speed"] = {b: teacher["latency_ms"][b] / row["latency_ms"][b] for b in batches}
    return rows


def table(rows: list[dict], batches: list[int]) -> str:
    head = [
        "run",
        "task",
        "dim x layers",
        "params",
        "NDCG@10",
        "% teacher",
        "Recall@10",
        "% teacher",
    ]
    for b in batches:
        head += [f"top-k ms, batch {b}", "speed"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            Path(r["run"]).name,
            r["task"],
            f"{r['dim']} x {r['layers']}",
            f"{r['params']:,}",
            f"{r['ndcg@10']:.4f}",
            f"{100 * r['ndcg@10_of_teacher']:.1f}",
            f"{r['recall@10']:.4f}",
            f"{100 * r['recall@10_of_teacher']:.1f}",
        ]
        for b in batches:
            cells += [f"{r['latency_ms'][b]:.3f}", f"{r['speed'][b]:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", type=Path, required=True, help="the teacher's run directory")
    p.add_argument("--students", type=Path, nargs="+", required=True, help="run directories")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 256], help="learners a call")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--json", type=Path, help="write the rows here")
    args = p.parse_args(argv)
    rows = measure([args.teacher, *args.students], args.batches, args.k, args.repeats)
    print(table(rows, args.batches))
    conditions = {
        "device": str(jax.devices()[0]),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "platform": platform.platform(),
        "repeats": args.repeats,
        "k": args.k,
    }
    print(f"\n{conditions}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "conditions": conditions}, indent=1))


if __name__ == "__main__":
    main()
