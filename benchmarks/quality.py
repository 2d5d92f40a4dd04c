"""Train and test a set of recipes; print one table and write it as JSON.

    python benchmarks/quality.py recipes/ml100k_sasrec.toml recipes/ml100k_gru4rec.toml \
        --set train.epochs=50 --json results/quality.json

Each recipe runs in its own process (a fresh JAX; on CPU one XLA device on every core), into a run
directory under --runs; columns: data set, model, loss, Recall@10, NDCG@10, MRR@10 on the test
split (full ranking, seen items masked), and the wall time of training.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_one(recipe: Path, sets: list[str], runs: Path) -> dict:
    name = recipe.stem
    args = [
        sys.executable,
        "-m",
        "rectk.cli",
        "train",
        str(recipe),
        "--no-progress",
        "--set",
        f"run_dir={runs}",
        "--set",
        f"name={name}",
    ]
    for s in sets:
        args += ["--set", s]
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"recipe": str(recipe), "error": proc.stderr.strip().splitlines()[-1:]}
    results = json.loads((runs / name / "results.json").read_text())
    resolved = (runs / name / "recipe.toml").read_text()
    import tomllib

    cfg = tomllib.loads(resolved)
    model = results["test"]["model"]
    return {
        "recipe": str(recipe.relative_to(ROOT) if recipe.is_relative_to(ROOT) else recipe),
        "data": cfg["data"]["type"]
        + (":" + Path(cfg["data"].get("path", "")).name if cfg["data"].get("path") else ""),
        "model": cfg["model"]["encoder"]["type"],
        "loss": cfg["loss"]["type"],
        "recall@10": model.get("recall@10"),
        "ndcg@10": model.get("ndcg@10"),
        "mrr@10": model.get("mrr@10"),
        "popularity_ndcg@10": results["test"].get("popularity", {}).get("ndcg@10"),
        "train_seconds": results["seconds"]["train"],
        "epoch_median_seconds": results["seconds"]["epoch_median"],
        "best_step": results["best_step"],
        "stopped": results["stopped"],
        "process_seconds": round(wall, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipes", nargs="+", type=Path)
    p.add_argument("--set", action="append", default=[], help="override for every recipe")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "quality")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    rows = []
    header = f"{'data':<28}{'model':<12}{'loss':<18}{'R@10':>8}{'N@10':>8}{'MRR@10':>8}{'pop N@10':>10}{'train s':>9}"
    print(header)
    for recipe in args.recipes:
        row = run_one(recipe.resolve(), args.set, args.runs)
        rows.append(row)
        if args.json:  # after every recipe, so an interrupted sweep keeps what it measured
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(rows, indent=2))
        if "error" in row:
            print(f"{row['recipe']}: failed: {row['error']}")
            continue
        print(
            f"{row['data']:<28}{row['model']:<12}{row['loss']:<18}{row['recall@10']:8.4f}"
            f"{row['ndcg@10']:8.4f}{row['mrr@10']:8.4f}{row['popularity_ndcg@10'] or 0:10.4f}"
            f"{row['train_seconds']:9.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
