"""DKT and AKT on ASSISTments 2015 in rectk and in pyKT 0.0.38, one protocol, one run.

    python benchmarks/vs_pykt.py --json results/vs_pykt.json
    python benchmarks/vs_pykt.py --models dkt --cores 0           # both pinned to one core
    python benchmarks/vs_pykt.py --models akt --max-epochs 1      # a capped, per-epoch comparison

Both libraries read pyKT's processed ASSIST2015 files (``../shared/data/assist2015-pykt``:
``train_valid.csv`` with folds, ``test.csv``) and run one after the other, each in a process
of its own: pyKT through ``benchmarks/_pykt_side.py`` in its own virtual environment
(``.bench-venvs/pykt``: ``torch==2.13.0+cpu`` installed first, so no CUDA build is pulled, then
``pykt-toolkit --no-deps``; ``benchmarks/_pykt_env.py``), rectk through ``python -m rectk.cli
train recipes/assist2015_MODEL.toml`` with the overrides below.

The protocol, the same in both (pyKT's, ``_pykt_side.py`` has the sources):

- data: validation fold 0, training folds 1-4, the test learners of ``test.csv``; each
  learner's answers cut into 200-answer chunks (a last chunk shorter than 3 dropped); every
  answer but a chunk's first is predicted from the chunk's answers before it; test AUC and
  accuracy on those chunks and on pyKT's window view (every answer from up to 199 before it);
- hyper-parameters: pyKT's tuned best for ASSIST2015 (``_pykt_side.HYPER``): DKT hidden 200,
  dropout 0.5, Adam lr 1e-3, batch 256; AKT d_model 256, d_ff 512, 8 heads, 3 blocks, final
  layer 512, dropout 0.05, Adam lr 5e-6, batch 64; no weight decay, no clipping, constant rate;
- early stopping: after each epoch, validation AUC; a new best only if it beats the best by
  more than 0.001; stop 10 epochs after the best or at ``--max-epochs``; the best weights are
  tested;
- threads: ``--cores`` pins both processes to the same CPU cores (``taskset``); PyTorch gets
  as many threads as cores, XLA uses the cores it is given.

Differences kept (each library's own way): pyKT's loader does not shuffle, rectk's does
(seeded, every epoch); rectk batches chunks of one width together (``train.group_by_length``,
exact for these causal models: the cut columns are padding), pyKT pads every chunk to 200.

Columns: test AUC/accuracy (chunks and windows), best validation AUC, epochs run and the best
epoch, median seconds per training epoch as each library measures it, wall seconds from the
process start to the best epoch's validation, peak resident memory of the process tree; the
last column is rectk / pyKT.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _measure
from _pykt_side import HYPER

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "assist2015-pykt"


def rectk_overrides(name: str, runs: Path, max_epochs: int) -> list[str]:
    """rectk's recipe for ``name`` set to pyKT's hyper-parameters and stopping rule."""
    hp = HYPER[name]
    sets = [
        f"run_dir={runs}",
        f"name=vs_pykt_{name}",
        f"seed={hp['seed']}",
        f"train.lr={hp['learning_rate']}",
        f"train.batch_size={hp['batch_size']}",
        f"train.epochs={max_epochs}",
        "train.schedule=constant",
        "train.warmup_steps=0",
        "train.clip_norm=0.0",
        "train.weight_decay=0.0",
        "train.patience=10",
        "train.min_delta=0.001",
        "train.group_by_length=true",
        "eval.batch_size=256",
    ]
    m = hp["model"]
    if name == "dkt":
        sets += [f"model.dim={m['emb_size']}", f"model.tracer.dropout={m['dropout']}"]
    else:
        sets += [
            f"model.dim={m['d_model']}",
            f"model.tracer.inner={m['d_ff']}",
            f"model.tracer.heads={m['num_attn_heads']}",
            f"model.tracer.layers={m['n_blocks']}",
            f"model.tracer.dropout={m['dropout']}",
            "model.tracer.final_fc=512",
        ]
    return sets


def _pinned(cmd: list[str], cores: str) -> list[str]:
    return ["taskset", "-c", cores, *cmd] if cores else cmd


def run_rectk(name: str, runs: Path, max_epochs: int, cores: str) -> dict:
    rd = runs / f"vs_pykt_{name}"
    shutil.rmtree(rd, ignore_errors=True)  # rectk would resume an existing run
    cmd = [
        sys.executable,
        "-m",
        "rectk.cli",
        "train",
        str(ROOT / "recipes" / f"assist2015_{name}.toml"),
    ]
    cmd += ["--no-progress"]
    for s in rectk_overrides(name, runs, max_epochs):
        cmd += ["--set", s]
    log = runs / f"rectk_{name}.log"
    load0 = _measure.load_average()
    rc, t0, watch = _measure.launch(_pinned(cmd, cores), log, cwd=ROOT, jsonl=rd / "metrics.jsonl")
    if rc != 0:
        raise _measure.fail(f"rectk {name}", log)
    res = json.loads((rd / "results.json").read_text())
    valids = [(t, row) for t, row in watch.lines if "valid/auc" in row]
    steps = [row["step"] for _, row in valids]
    best_epoch = steps.index(res["best_step"]) + 1 if res["best_step"] in steps else None
    test = res["test"]["model"]
    return {
        "test": {
            "auc": test["auc"],
            "acc": test["accuracy"],
            "window_auc": test.get("window_auc"),
            "window_acc": test.get("window_accuracy"),
        },
        "valid_best": {"auc": res["valid"].get("auc")},
        "epochs_run": len(valids),
        "best_epoch": best_epoch,
        "steps_per_epoch": steps[0] if steps else None,
        "epoch_median_s": res["seconds"]["epoch_median"],
        "to_best_s": valids[best_epoch - 1][0] - t0 if best_epoch else None,
        "peak_rss_mib": watch.peak_rss / 2**20,
        "process_s": time.time() - t0,
        "load_average": [load0, _measure.load_average()],
        "overrides": rectk_overrides(name, runs, max_epochs),
        "log": str(log),
    }


def run_pykt(name: str, runs: Path, max_epochs: int, cores: str, max_steps: int = 0) -> dict:
    from _pykt_env import pykt_python

    out = runs / f"pykt_{name}.json"
    threads = len(cores.split(",")) if cores else 0
    cmd = [str(pykt_python()), str(ROOT / "benchmarks" / "_pykt_side.py"), "--models", name]
    cmd += ["--max-epochs", str(max_epochs), "--threads", str(threads), "--json", str(out)]
    cmd += ["--data", str(DATA), "--workdir", str(runs / "pykt_work")]
    cmd += ["--max-steps", str(max_steps)]
    log = runs / f"pykt_{name}.log"
    load0 = _measure.load_average()
    rc, t0, watch = _measure.launch(_pinned(cmd, cores), log, cwd=ROOT)
    if rc != 0:
        raise _measure.fail(f"pyKT {name}", log)
    res = json.loads(out.read_text())["results"][name]
    if "stopped_after_steps" in res:  # timed steps only: an epoch projected, no quality
        return {
            "test": {"auc": None, "acc": None, "window_auc": None, "window_acc": None},
            "valid_best": {"auc": None},
            "epochs_run": 0,
            "best_epoch": None,
            "steps_per_epoch": res["steps_per_epoch"],
            "epoch_median_s": res["epoch_projected_s"],
            "epoch_is_projected": f"median of {res['stopped_after_steps']} optimiser steps "
            f"({res['step_median_s']:.2f} s) x {res['steps_per_epoch']} steps",
            "to_best_s": None,
            "peak_rss_mib": watch.peak_rss / 2**20,
            "process_s": time.time() - t0,
            "load_average": [load0, _measure.load_average()],
            "torch_threads": res["torch_threads"],
            "log": str(log),
        }
    return {
        "test": res["test"],
        "valid_best": res["valid_best"],
        "epochs_run": res["epochs_run"],
        "best_epoch": res["best_epoch"],
        "steps_per_epoch": res["steps_per_epoch"],
        "epoch_median_s": res["epoch_median_s"],
        "to_best_s": res["to_best_s"],
        "peak_rss_mib": watch.peak_rss / 2**20,
        "process_s": time.time() - t0,
        "load_average": [load0, _measure.load_average()],
        "torch_threads": res["torch_threads"],
        "versions": res["versions"],
        "log": str(log),
    }


ROWS = [
    ("test AUC (chunks)", lambda r: r["test"]["auc"], "{:.4f}"),
    ("test accuracy (chunks)", lambda r: r["test"]["acc"], "{:.4f}"),
    ("test AUC (windows)", lambda r: r["test"]["window_auc"], "{:.4f}"),
    ("test accuracy (windows)", lambda r: r["test"]["window_acc"], "{:.4f}"),
    ("best valid AUC", lambda r: r["valid_best"]["auc"], "{:.4f}"),
    ("optimiser steps per epoch", lambda r: r["steps_per_epoch"], "{:d}"),
    ("epochs run", lambda r: r["epochs_run"], "{:d}"),
    ("best epoch", lambda r: r["best_epoch"], "{:d}"),
    ("median s / epoch (own timer; * projected)", lambda r: r["epoch_median_s"], "{:.1f}"),
    ("wall s to best validation", lambda r: r["to_best_s"], "{:.0f}"),
    ("peak RSS MiB (process tree)", lambda r: r["peak_rss_mib"], "{:.0f}"),
    ("process wall s", lambda r: r["process_s"], "{:.0f}"),
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="dkt,akt", help="comma-separated: dkt, akt")
    p.add_argument("--max-epochs", type=int, default=200, help="cap on epochs, both libraries")
    p.add_argument("--cores", default="", help="pin both to these cores (taskset -c), e.g. 0")
    p.add_argument("--only", choices=("rectk", "pykt"), help="run one library only")
    p.add_argument(
        "--pykt-max-steps",
        type=int,
        default=0,
        help="time only this many pyKT optimiser steps and project its epoch from their median "
        "(for AKT, whose epoch takes over an hour on a CPU core); 0 = train to the end",
    )
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "vs_pykt")
    p.add_argument("--json", type=Path, help="write the results to this JSON file")
    args = p.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if unknown := [m for m in models if m not in HYPER]:
        p.error(f"unknown model(s) {unknown}; choose from {sorted(HYPER)}")
    if not (DATA / "train_valid.csv").is_file():
        raise SystemExit(f"{DATA}: pyKT's processed ASSIST2015 is not there (../shared/data)")
    args.runs = args.runs.resolve()
    args.runs.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "protocol": {"max_epochs": args.max_epochs, "cores": args.cores or "all", "hyper": HYPER},
        **_measure.machine(),
        "models": {},
    }
    for name in models:
        results: dict[str, dict] = {}
        if args.only != "pykt":
            print(f"rectk {name} (log {args.runs / f'rectk_{name}.log'}) ...", flush=True)
            results["rectk"] = run_rectk(name, args.runs, args.max_epochs, args.cores)
        if args.only != "rectk":
            print(f"pyKT {name} (log {args.runs / f'pykt_{name}.log'}) ...", flush=True)
            results["pyKT"] = run_pykt(
                name, args.runs, args.max_epochs, args.cores, args.pykt_max_steps
            )
        text, ratios = _measure.comparison_table(results, ROWS)
        print(
            f"\n{name.upper()}: {report['cpu_count']} CPUs, cores {args.cores or 'all'}; "
            f"1-min load average {_measure.load_range(results)}\n\n{text}\n",
            flush=True,
        )
        report["models"][name] = {"results": results, "ratios_rectk_over_pykt": ratios}
        _measure.write_json(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
