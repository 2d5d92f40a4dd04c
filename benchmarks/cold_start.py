"""New-item (cold-start) quality of text item towers, and the cost of each fine-tuning mode.

    python benchmarks/cold_start.py --json results/cold_start.json [--quick]

Every run holds out 10% of the items entirely (split.cold_items = 0.1): the warm test ranks
all items for each learner's last interaction; the new-item test ranks the held-out items for
each learner who took one (first such item, earlier warm items as history). Each run is a fresh
process; peak memory is the largest resident set of that process tree, sampled every 0.2 s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

TOWERS = {
    "id": 'model.item_tower={type="id"}',
    "text (frozen)": 'model.item_tower={type="text"}',
    "text+id gated (frozen)": 'model.item_tower={type="text_id", fusion="gated"}',
}
FINETUNE = {
    "frozen": 'model.item_tower={type="text_id", text={finetune="frozen", max_length=32}}',
    "lora r8": 'model.item_tower={type="text_id", text={finetune="lora", lora_rank=8, max_length=32}}',
    "top-1 layer": 'model.item_tower={type="text_id", text={finetune="top_n", top_n=1, max_length=32}}',
    "full": 'model.item_tower={type="text_id", text={finetune="full", max_length=32}}',
}


def peak_rss(proc: subprocess.Popen, out: list[float]) -> None:
    p = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            rss = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.2)
    out.append(peak / 2**20)


def run(recipe: str, label: str, name: str, sets: list[str], runs: Path) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "rectk.cli",
        "train",
        recipe,
        "--no-progress",
        "--set",
        f"run_dir={runs}",
        "--set",
        f"name={name}",
        "--set",
        "split.cold_items=0.1",
    ]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    mem: list[float] = []
    watcher = threading.Thread(target=peak_rss, args=(proc, mem))
    watcher.start()
    _, err = proc.communicate()
    watcher.join()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"name": label, "error": err.strip().splitlines()[-1:]}
    r = json.loads((runs / name / "results.json").read_text())
    new = r["new_items"]
    return {
        "name": label,
        "warm_ndcg@10": r["test"]["model"]["ndcg@10"],
        "warm_recall@10": r["test"]["model"]["recall@10"],
        "warm_pop_ndcg@10": r["test"]["popularity"]["ndcg@10"],
        "new_recall@10": new["model"]["recall@10"],
        "new_ndcg@10": new["model"]["ndcg@10"],
        "new_pop_recall@10": new["popularity"]["recall@10"],
        "new_random_recall@10": new["random"]["recall@10"],
        "held_out_items": r["held_out_items"],
        "new_item_learners": r["new_item_targets"],
        "train_seconds": r["seconds"]["train"],
        "wall_seconds": round(wall, 1),
        "peak_mib": round(mem[0]) if mem else None,
    }


def table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(
        f"{'tower':<26}{'warm N@10':>10}{'warm R@10':>10}{'new R@10':>10}{'new N@10':>10}"
        f"{'pop R@10':>10}{'rand R@10':>10}{'train s':>9}{'peak MiB':>10}"
    )
    for r in rows:
        if "error" in r:
            print(f"{r['name']:<26} failed: {r['error']}")
            continue
        print(
            f"{r['name']:<26}{r['warm_ndcg@10']:10.4f}{r['warm_recall@10']:10.4f}"
            f"{r['new_recall@10']:10.4f}{r['new_ndcg@10']:10.4f}{r['new_pop_recall@10']:10.4f}"
            f"{r['new_random_recall@10']:10.4f}{r['train_seconds']:9.1f}{r['peak_mib']:10d}",
            flush=True,
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "cold_start")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--quick", action="store_true", help="fewer epochs (a smoke run)")
    p.add_argument("--parts", default="courses,ml100k,finetune")
    args = p.parse_args()
    parts = args.parts.split(",")
    out: dict[str, list[dict]] = {}
    epochs = ["train.epochs=5"] if args.quick else []
    if "courses" in parts:
        out["courses"] = [
            run("recipes/quickstart.toml", label, f"courses_{i}", [s, *epochs], args.runs)
            for i, (label, s) in enumerate(TOWERS.items())
        ]
        table("bundled courses (quickstart recipe)", out["courses"])
    if "ml100k" in parts and (SHARED / "ml-100k").is_dir():
        data = [f"data.path={SHARED / 'ml-100k' / 'ml-100k.inter'}", "train.lr=3e-3"]
        out["ml100k"] = [
            run("recipes/ml100k_sasrec.toml", label, f"ml100k_{i}", [s, *data, *epochs], args.runs)
            for i, (label, s) in enumerate(TOWERS.items())
        ]
        table("ml-100k (titles, year and genres as text)", out["ml100k"])
    if "finetune" in parts:
        ft = [
            "train.steps=10" if args.quick else "train.steps=40",
            "train.batch_size=64",
            "train.eval_every=20",
        ]
        out["finetune"] = [
            run("recipes/quickstart.toml", label, f"ft_{i}", [s, *ft], args.runs)
            for i, (label, s) in enumerate(FINETUNE.items())
        ]
        table(
            "fine-tuning modes on the bundled courses (text+id gated, 32 tokens)", out["finetune"]
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
