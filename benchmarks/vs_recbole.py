"""SASRec (full-softmax cross-entropy) on MovieLens-100K in rectk and in RecBole 1.2.1, one protocol.

    python benchmarks/vs_recbole.py --json results/vs_recbole.json
    python benchmarks/vs_recbole.py --max-epochs 2          # a quick check that everything runs
    python benchmarks/vs_recbole.py --only rectk

Both libraries read the RecBole atomic files in ``../shared/data/ml-100k`` and run, one after the
other, each in its own process: rectk through ``python -m rectk.cli train`` (into
``runs/vs_recbole/rectk_sasrec``), RecBole through ``benchmarks/_recbole_side.py`` in its own
virtual environment (``.bench-venvs/recbole``, created on first use: ``python -m venv``, then
``pip install torch==2.13.0`` (the CPU build) first, then ``pip install recbole==1.2.1 "numpy<2"
"pandas<3"``).

Pins, and why:

- ``torch==2.13.0``: the CPU wheel; installed before RecBole so that pip never resolves a CUDA build.
- ``numpy<2``: RecBole's ``Config.compatibility_settings`` assigns ``np.float = np.float_`` and
  other aliases that numpy 2 removed, so ``Config(...)`` fails on numpy 2 (1.26.4 installed).
- ``pandas<3``: under pandas 3's copy-on-write, RecBole's ``feat[field].fillna(..., inplace=True)``
  (``Dataset._fill_nan``) silently does nothing and warns; 2.3.3 installed.
- not a pin: since torch 2.6, ``torch.load`` defaults to ``weights_only=True`` and refuses RecBole's
  checkpoints (they pickle the config), so the RecBole side loads the best checkpoint itself with
  ``weights_only=False`` and calls ``Trainer.evaluate(load_best_model=False)``.
- ``recbole==1.2.1`` pulls ``ray<=2.6.3`` (2.6.3 installed); only ``recbole.quick_start`` imports
  it, and this benchmark does not.

The protocol, the same in both:

- data: every interaction (RecBole: ``filter_inter_by_user_or_item: False``, user/item interaction
  intervals ``[0,inf)``, no ``val_interval``, no duplicate removal); leave-last-out by time: each
  learner's last item is the test target, the one before it the validation target (RecBole
  ``eval_args: {split: {LS: valid_and_test}, order: TO, group_by: user, mode: full}``). RecBole
  sorts by float32 timestamps, which puts some near-simultaneous interactions in file order; the
  RecBole side sorts them by their exact times first (see ``_recbole_side.py``). The split is
  checked: the same (learner, target, history length) validation and test examples in both.
- model: SASRec, max. sequence length 50, 2 layers, 2 heads, hidden 64, inner 256, dropout 0.2
  (hidden) and 0.2 (attention), GELU, layer-norm eps 1e-12, init std 0.02.
- training: full-softmax cross-entropy over all items (RecBole ``loss_type: CE``,
  ``train_neg_sample_args: None``), batch 256, Adam lr 1e-3, no weight decay, no warm-up, constant
  rate, no gradient clipping. One epoch trains every (history prefix -> next item) target once in
  both. RecBole makes one sample per prefix (its last 50 items) and runs the encoder over all 50
  positions to train that one target. rectk runs the causal encoder once per 50-item window and
  trains the window's last ``--stride`` targets (``train.stride``; default 10), each of which
  thus sees at least 40 items of its history (all of it when shorter), while the window's
  earlier positions serve as context only; ``--stride 1`` is RecBole's one sample per prefix,
  ``--stride 50`` windows that do not overlap (the cheapest; a target early in a window then
  sees only the items before it in that window).
- early stopping on validation NDCG@10 (evaluated after every epoch), stopping after
  ``--patience`` validations in a row without improvement; the best model is tested. RecBole
  stops when its counter *exceeds* ``stopping_step``, so it gets ``stopping_step = patience - 1``
  (the default patience 10 -> ``stopping_step: 9``); it also counts a tie as an improvement, and
  it compares metrics rounded to ``metric_decimal_place`` (set to 8 here).
- evaluation: full ranking over all items; already-seen items are *not* masked, since RecBole's
  sequential models don't mask them (rectk: ``eval.mask_seen=false``); Recall, NDCG, MRR @10;
  evaluation batches of 256 learners in both.
- RecBole's autograd anomaly detection (switched on for the whole process when its
  ``sequential_recommender`` package is imported) is switched off before training.
- threads: rectk one XLA CPU device on every core (its default; ``--rectk-cpu-devices N`` splits it),
  PyTorch its default thread count.

Columns: test Recall/NDCG/MRR@10; the best validation NDCG@10; optimiser steps per epoch; epochs
run and the best epoch; median seconds per training epoch as each library measures it (both
include their input pipelines: rectk's training loop, the first epoch with its XLA compilation;
RecBole's ``Trainer._train_epoch``); median seconds from one validation to the next (training plus
validation, measured the same way for both); wall time from the start of the process to the end
of the best epoch's validation (imports, data loading and compilation included); seconds of the
test evaluation (full ranking; rectk's as its ``results.json`` has it, and how much of that was
an XLA compilation, read from the ``JAX_LOG_COMPILES`` log); the median of ``--eval-repeats``
further test evaluations, since one pass of a few hundredths of a second moves by a fifth
between runs (RecBole: ``Trainer.evaluate`` again on the best model, in its process; rectk:
``benchmarks/eval_speed.py --only-rectk`` in a process of its own, with the same recipe
overrides and device count, after a pass that compiles; its weights are the initial ones, which
cost the same arithmetic); peak resident memory of the process tree (psutil, sampled every
50 ms); the process's wall time; and the rectk / RecBole ratios.

Same targets, and about as many per update: ``batch 256`` is 256 single-target prefixes in
RecBole (380 optimiser steps per epoch on ml-100k), and in rectk as many windows as carry 256
targets, ``ceil(256 / stride)``: 26 windows of up to 10 targets at the default stride (390
steps per epoch). ``--rectk-batch N`` sets the windows per update instead; the runs before this
option trained 256 windows (2,560 targets) per update, 40 steps per epoch, and validated
lower (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".bench-venvs" / "recbole"
DATA = ROOT.parent / "shared" / "data"
DATASET = "ml-100k"
RECIPE = ROOT / "recipes" / "ml100k_sasrec.toml"
TORCH_REQUIREMENT = "torch==2.13.0"
RECBOLE_REQUIREMENTS = ["recbole==1.2.1", "numpy<2", "pandas<3"]
WORKER = Path(__file__).resolve().parent / "_recbole_side.py"
METRICS = ("recall@10", "ndcg@10", "mrr@10")
RANKS_COMPILED = r"Finished XLA compilation of jit\(model_ranks\) in ([0-9.]+) sec"

STRIDE = 10  # rectk's train.stride here; see the module docstring

PROTOCOL = {
    "max_len": 50,
    "layers": 2,
    "heads": 2,
    "dim": 64,
    "inner": 256,
    "dropout": 0.2,
    "attn_dropout": 0.2,
    "batch_size": 256,
    "lr": 1e-3,
    "eval_batch_size": 256,
}


# ---------------------------------------------------------------------------------------------
# Measuring a process from outside: peak RSS of its tree, and when lines appear in a log file.
# ---------------------------------------------------------------------------------------------


class Watch(threading.Thread):
    """Samples the RSS of ``pid`` and its children; stamps new lines of ``jsonl`` on arrival."""

    def __init__(self, pid: int, jsonl: Path | None = None, every: float = 0.05):
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.jsonl, self.every = jsonl, every
        self.peak_rss = 0
        self.lines: list[tuple[float, dict]] = []
        self._offset = 0
        self._halt = threading.Event()

    def _rss(self) -> int:
        total = 0
        try:
            procs = [self.proc, *self.proc.children(recursive=True)]
        except psutil.Error:
            return 0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total

    def _read_lines(self) -> None:
        if self.jsonl is None or not self.jsonl.exists():
            return
        with self.jsonl.open() as f:
            f.seek(self._offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind("\n") + 1]
        self._offset += len(complete.encode())
        now = time.time()
        self.lines += [(now, json.loads(ln)) for ln in complete.splitlines() if ln.strip()]

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak_rss = max(self.peak_rss, self._rss())
            self._read_lines()
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self._read_lines()


def _launch(cmd: list[str], log: Path, *, cwd: Path, env=None, jsonl: Path | None = None):
    """Runs ``cmd`` to its end under a ``Watch``; returns (return code, start time, watch)."""
    with log.open("w") as out:
        t0 = time.time()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        watch = Watch(proc.pid, jsonl)
        watch.start()
        rc = proc.wait()
        watch.stop()
    return rc, t0, watch


def _fail(name: str, log: Path) -> SystemExit:
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    return SystemExit(f"{name} failed (log: {log}):\n{tail}")


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


# ---------------------------------------------------------------------------------------------
# rectk
# ---------------------------------------------------------------------------------------------


def rectk_batch(stride: int) -> int:
    """rectk's windows per update that carry ``batch_size`` targets, as RecBole's batch of
    single-target prefixes does: a window trains its last ``stride`` targets (all ``max_len``
    positions where ``stride`` is 0 or at least ``max_len``)."""
    per_window = stride if 0 < stride < PROTOCOL["max_len"] else PROTOCOL["max_len"]
    return -(-PROTOCOL["batch_size"] // per_window)


def rectk_overrides(
    runs: Path, max_epochs: int, patience: int, seed: int, stride: int = 0, batch: int = 0
) -> list[str]:
    """``batch``: windows per update (0 = ``rectk_batch(stride)``)."""
    p = PROTOCOL
    sets = {
        "run_dir": f'"{runs}"',
        "name": '"rectk_sasrec"',
        "seed": seed,
        "data.path": f'"{DATA / DATASET / (DATASET + ".inter")}"',
        "split.type": '"leave_last_out"',
        "model.dim": p["dim"],
        "model.max_len": p["max_len"],
        "model.encoder.type": '"sasrec"',
        "model.encoder.layers": p["layers"],
        "model.encoder.heads": p["heads"],
        "model.encoder.inner": p["inner"],
        "model.encoder.dropout": p["dropout"],
        "model.encoder.attn_dropout": p["attn_dropout"],
        "loss.type": '"softmax_ce"',
        "train.batch_size": batch or rectk_batch(stride),
        "train.stride": stride,
        "train.epochs": max_epochs,
        "train.steps": 0,
        "train.lr": p["lr"],
        "train.weight_decay": 0,
        "train.warmup_steps": 0,
        "train.schedule": '"constant"',
        "train.clip_norm": 0,
        "train.accumulate": 1,
        "train.dtype": '"float32"',
        "train.patience": patience,
        "train.monitor": '"ndcg@10"',
        "train.eval_every": 0,
        "eval.mask_seen": "false",
        "eval.ks": "[10]",
        "eval.metrics": '["recall", "ndcg", "mrr"]',
        "eval.batch_size": p["eval_batch_size"],
        "eval.baselines": "[]",
    }
    return [f"{k}={v}" for k, v in sets.items()]


def rectk_split(sets: list[str]) -> tuple[dict, dict]:
    """rectk's validation and test examples (raw ids) and the data counts, without training."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from rectk import recipe as recipe_lib
    from rectk.run import prepare

    cfg = recipe_lib.load(RECIPE, sets).config
    data, sp = prepare(cfg)
    inter = data.interactions

    def examples(es) -> dict:
        return {
            "user": [inter.user_ids[u - 1] for u in es.user],
            "target": [inter.item_ids[i - 1] for i in es.target],
            "hist_len": es.hist.lengths.tolist(),
        }

    counts = {
        "users": int(inter.num_users),
        "items": int(inter.num_items),
        "interactions": len(inter),
        "train_targets": int(np.maximum(sp.train.lengths - 1, 0).sum()),
        "valid_targets": len(sp.valid),
        "test_targets": len(sp.test),
        "valid_users": len(set(sp.valid.user.tolist())),
        "test_users": len(set(sp.test.user.tolist())),
    }
    return {"valid": examples(sp.valid), "test": examples(sp.test)}, counts


def rectk_eval_median(runs: Path, sets: list[str], cpu_devices: int, repeats: int) -> float:
    """Median seconds of ``repeats`` test evaluations with the run's recipe, by eval_speed.py."""
    out = runs / "rectk_eval_speed.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "eval_speed.py"), str(RECIPE)]
    cmd += ["--only-rectk", "--repeats", str(repeats), "--cpu-devices", str(cpu_devices)]
    cmd += ["--json", str(out)]
    for s in sets:
        cmd += ["--set", s]
    log = runs / "rectk_eval_speed.log"
    with open(log, "w") as f:
        if subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode:
            raise _fail("rectk eval_speed", log)
    return float(json.loads(out.read_text())["rows"][0]["median_s"])


def run_rectk(runs: Path, sets: list[str], cpu_devices: int = 0, eval_repeats: int = 0) -> dict:
    rd = runs / "rectk_sasrec"
    shutil.rmtree(rd, ignore_errors=True)  # rectk resumes an existing run directory
    cmd = [sys.executable, "-m", "rectk.cli", "--cpu-devices", str(cpu_devices), "train"]
    cmd += [str(RECIPE), "--no-progress"]
    for s in sets:
        cmd += ["--set", s]
    log = runs / "rectk.log"
    load0 = _load()
    # JAX logs each compilation, so the table can say how much of the test evaluation was one.
    env = dict(os.environ, JAX_LOG_COMPILES="1")
    rc, t0, watch = _launch(cmd, log, cwd=ROOT, env=env, jsonl=rd / "metrics.jsonl")
    if rc != 0:
        raise _fail("rectk", log)
    ranks_compiles = [float(m) for m in re.findall(RANKS_COMPILED, log.read_text(errors="replace"))]
    res = json.loads((rd / "results.json").read_text())
    n_test_compiles = int(res["seconds"].get("test_eval_compilations", 0))
    valids = [(t, row) for t, row in watch.lines if any(k.startswith("valid/") for k in row)]
    steps = [row["step"] for _, row in valids]
    best = res["best_step"]
    best_epoch = steps.index(best) + 1 if best in steps else None
    stamps = [t for t, _ in valids]
    return {
        "test": {m: res["test"]["model"][m] for m in METRICS},
        "valid_best": {m: res["valid"].get(m) for m in METRICS},
        "epochs_run": len(valids),
        "steps_per_epoch": steps[0] if steps else None,
        "best_epoch": best_epoch,
        "stopped": res["stopped"],
        "epoch_median_s": res["seconds"]["epoch_median"],
        "epoch_cycle_median_s": _median_gap(stamps),
        "to_best_s": stamps[best_epoch - 1] - t0 if best_epoch else None,
        "valid_curve": [[t - t0, row["valid/ndcg@10"]] for t, row in valids],
        "test_eval_s": res["seconds"]["test_eval"],
        # the test evaluation compiles only batch shapes validation did not (the last ones)
        "test_eval_compile_s": sum(ranks_compiles[len(ranks_compiles) - n_test_compiles :]),
        "test_eval_median_s": (
            rectk_eval_median(runs, sets, cpu_devices, eval_repeats) if eval_repeats else None
        ),
        "peak_rss_mib": watch.peak_rss / 2**20,
        "process_s": time.time() - t0,
        "load_average": [load0, _load()],
        "log": str(log),
    }


def time_to_reach(curve: list[list[float]], level: float) -> float | None:
    """Seconds from the process start to the first validation NDCG@10 of at least ``level``
    (``curve``: ``[seconds, ndcg]`` per validation, in order), or None if none reaches it.

    >>> time_to_reach([[10.0, 0.05], [20.0, 0.07], [30.0, 0.06]], 0.06)
    20.0
    """
    return next((t for t, v in curve if v >= level), None)


def add_time_to_common_level(results: dict) -> None:
    """Each library's time to the lower of the two best validation NDCG@10: when one library
    peaks early at a lower level, time to its own best compares unequal targets."""
    if len(results) != 2:
        return
    level = min(r["valid_best"]["ndcg@10"] for r in results.values())
    for r in results.values():
        r["to_common_level_s"] = time_to_reach(r["valid_curve"], level - 1e-12)


def _median_gap(stamps: list[float]) -> float | None:
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    return statistics.median(gaps) if gaps else None


# ---------------------------------------------------------------------------------------------
# RecBole
# ---------------------------------------------------------------------------------------------


def recbole_python() -> Path:
    """The RecBole venv's interpreter, creating the venv on first use."""
    python = VENV / "bin" / "python"
    check = [
        str(python),
        "-c",
        "import recbole, torch, numpy, pandas; assert numpy.__version__ < '2'",
    ]
    if python.is_file() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(
        f"creating {VENV.relative_to(ROOT)}: {TORCH_REQUIREMENT}, then "
        f"{' '.join(RECBOLE_REQUIREMENTS)} ...",
        flush=True,
    )
    VENV.parent.mkdir(parents=True, exist_ok=True)
    (VENV.parent / ".gitignore").write_text("*\n")  # keep the venvs out of git
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, TORCH_REQUIREMENT], check=True)  # the CPU build, before anything else
    subprocess.run([*pip, TORCH_REQUIREMENT, *RECBOLE_REQUIREMENTS], check=True)
    return python


def run_recbole(
    runs: Path, max_epochs: int, patience: int, seed: int, eval_repeats: int = 0
) -> dict:
    python = recbole_python()
    out = runs / "recbole"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    args = {
        "out": str(out),
        "data_path": str(DATA),
        "dataset": DATASET,
        "seed": seed,
        "protocol": {**PROTOCOL, "max_epochs": max_epochs, "stopping_step": patience - 1},
        "eval_repeats": eval_repeats,
    }
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    log = runs / "recbole.log"
    load0 = _load()
    rc, t0, watch = _launch([str(python), str(WORKER), json.dumps(args)], log, cwd=out, env=env)
    if rc != 0:
        raise _fail("RecBole", log)
    res = json.loads((out / "results.json").read_text())
    events = [json.loads(ln) for ln in (out / "events.jsonl").read_text().splitlines() if ln]
    return {
        "test": {m: res["test"][m] for m in METRICS},
        "valid_best": {m: res["valid"].get(m) for m in METRICS},
        "epochs_run": res["epochs_run"],
        "steps_per_epoch": res["steps_per_epoch"],
        "best_epoch": res["best_epoch"],
        "stopped": "early_stopping" if res["epochs_run"] < max_epochs else "steps",
        "epoch_median_s": statistics.median(res["epoch_seconds"]),
        "epoch_cycle_median_s": _median_gap([e["time"] for e in events]),
        "to_best_s": res["best_time"] - t0 if res["best_time"] else None,
        "valid_curve": [[e["time"] - t0, e["valid"]["ndcg@10"]] for e in events],
        "test_eval_s": res["test_eval_seconds"],
        "test_eval_compile_s": 0.0,
        "test_eval_median_s": (
            statistics.median(res["test_eval_repeat_seconds"])
            if res.get("test_eval_repeat_seconds")
            else None
        ),
        "peak_rss_mib": watch.peak_rss / 2**20,
        "process_s": time.time() - t0,
        "load_average": [load0, _load()],
        "log": str(log),
        "versions": res["versions"],
        "torch_threads": res["torch_threads"],
        "anomaly_detection": res["anomaly_detection"],
        "time_order_fix": res["time_order_fix"],
        "data": res["data"],
        "split_file": str(out / "split.json"),
    }


def compare_splits(a: dict, b: dict) -> dict:
    """Counts of (user, target, history length up to max_len) examples that differ."""

    def rows(examples: dict) -> set:
        cols = (examples["user"], examples["target"], examples["hist_len"])
        return {(u, t, min(n, PROTOCOL["max_len"])) for u, t, n in zip(*cols, strict=True)}

    out: dict = {}
    for part in ("valid", "test"):
        ra, rb = rows(a[part]), rows(b[part])
        out[part] = {"rectk": len(ra), "recbole": len(rb), "differing": len(ra ^ rb)}
    out["identical"] = all(out[p]["differing"] == 0 for p in ("valid", "test"))
    return out


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------

ROWS = [
    ("test Recall@10", lambda r: r["test"]["recall@10"], "{:.4f}"),
    ("test NDCG@10", lambda r: r["test"]["ndcg@10"], "{:.4f}"),
    ("test MRR@10", lambda r: r["test"]["mrr@10"], "{:.4f}"),
    ("best valid NDCG@10", lambda r: r["valid_best"]["ndcg@10"], "{:.4f}"),
    ("optimiser steps per epoch", lambda r: r["steps_per_epoch"], "{:d}"),
    ("epochs run", lambda r: r["epochs_run"], "{:d}"),
    ("best epoch", lambda r: r["best_epoch"], "{:d}"),
    ("median s / epoch (own timer)", lambda r: r["epoch_median_s"], "{:.2f}"),
    ("median s validation to validation", lambda r: r["epoch_cycle_median_s"], "{:.2f}"),
    ("wall s to best validation", lambda r: r["to_best_s"], "{:.1f}"),
    ("wall s to the lower best valid NDCG@10", lambda r: r.get("to_common_level_s"), "{:.1f}"),
    ("test evaluation s (full ranking)", lambda r: r["test_eval_s"], "{:.3f}"),
    ("  of which XLA compilation s", lambda r: r["test_eval_compile_s"], "{:.3f}"),
    ("test evaluation s, median of repeats", lambda r: r.get("test_eval_median_s"), "{:.3f}"),
    ("peak RSS MiB (process tree)", lambda r: r["peak_rss_mib"], "{:.0f}"),
    ("process wall s", lambda r: r["process_s"], "{:.1f}"),
]


def table(results: dict) -> tuple[str, dict]:
    names = list(results)
    width = max(len(r[0]) for r in ROWS) + 2
    lines = [
        "".ljust(width)
        + "".join(n.rjust(12) for n in names)
        + ("rectk/RecBole".rjust(15) if len(names) == 2 else "")
    ]
    ratios = {}
    for label, get, fmt in ROWS:
        vals = [get(results[n]) for n in names]
        line = label.ljust(width) + "".join(
            ("-" if v is None else fmt.format(v)).rjust(12) for v in vals
        )
        if len(names) == 2 and None not in vals and vals[1]:
            ratios[label] = vals[0] / vals[1]
            line += f"{ratios[label]:15.2f}"
        lines.append(line)
    return "\n".join(lines), ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-epochs", type=int, default=300, help="cap on epochs, both libraries")
    parser.add_argument("--patience", type=int, default=10, help="validations without improvement")
    parser.add_argument("--only", choices=("rectk", "recbole"), help="run one library only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--eval-repeats", type=int, default=5, help="further test evaluations timed (0 = none)"
    )
    parser.add_argument(
        "--rectk-cpu-devices", type=int, default=0, help="rectk --cpu-devices (0 = one device)"
    )
    parser.add_argument(
        "--stride",
        type=int,
        default=STRIDE,
        help="rectk train.stride: targets trained per 50-item window (1 = one window per "
        "prefix, as RecBole; 50 = windows that do not overlap)",
    )
    parser.add_argument(
        "--rectk-batch",
        type=int,
        default=0,
        help="rectk windows per update (0 = as many as carry 256 targets: ceil(256 / stride))",
    )
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "vs_recbole")
    parser.add_argument("--json", type=Path, help="write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.patience < 1:
        parser.error("--patience must be at least 1 (RecBole's stopping_step = patience - 1)")
    args.runs = args.runs.resolve()
    args.runs.mkdir(parents=True, exist_ok=True)

    if args.rectk_batch < 0:
        parser.error("--rectk-batch must be at least 0 (0 = ceil(256 / stride))")
    args.rectk_batch = args.rectk_batch or rectk_batch(args.stride)
    sets = rectk_overrides(
        args.runs, args.max_epochs, args.patience, args.seed, args.stride, args.rectk_batch
    )
    print(
        f"SASRec, full-softmax CE, {DATASET} ({DATA / DATASET}); leave-last-out by time; "
        f"max_len {PROTOCOL['max_len']}, {PROTOCOL['layers']} layers, {PROTOCOL['heads']} heads, "
        f"hidden {PROTOCOL['dim']}, inner {PROTOCOL['inner']}, dropout {PROTOCOL['dropout']}/"
        f"{PROTOCOL['attn_dropout']}; batch {PROTOCOL['batch_size']}, Adam lr {PROTOCOL['lr']}; "
        f"at most {args.max_epochs} epochs, early stopping on valid NDCG@10 after "
        f"{args.patience} validations without improvement (RecBole stopping_step "
        f"{args.patience - 1}); full ranking, seen items NOT masked in either "
        f"(rectk eval.mask_seen=false).",
        flush=True,
    )
    results: dict[str, dict] = {}
    report: dict = {
        "protocol": {
            **PROTOCOL,
            "max_epochs": args.max_epochs,
            "patience": args.patience,
            "recbole_stopping_step": args.patience - 1,
            "mask_seen": False,
            "seed": args.seed,
            "rectk_stride": args.stride,
            "rectk_batch": args.rectk_batch,
            "rectk_cpu_devices": args.rectk_cpu_devices,
            "eval_repeats": args.eval_repeats,
        },
        "cpu_count": os.cpu_count(),
        "machine": platform.platform(),
        "rectk_overrides": sets,
    }
    rectk_examples = None
    if args.only != "recbole":
        rectk_examples, counts = rectk_split(sets)
        report["rectk_data"] = counts
        print(f"rectk data: {counts}", flush=True)
        print(f"running rectk (log {args.runs / 'rectk.log'}) ...", flush=True)
        results["rectk"] = run_rectk(args.runs, sets, args.rectk_cpu_devices, args.eval_repeats)
    if args.only != "rectk":
        print(f"running RecBole (log {args.runs / 'recbole.log'}) ...", flush=True)
        rb = run_recbole(args.runs, args.max_epochs, args.patience, args.seed, args.eval_repeats)
        results["RecBole"] = rb
        print(
            f"RecBole {rb['versions']['recbole']}, torch {rb['versions']['torch']} "
            f"({rb['torch_threads']} threads), numpy {rb['versions']['numpy']}, pandas "
            f"{rb['versions']['pandas']}; data: {rb['data']}",
            flush=True,
        )
        ad = rb["anomaly_detection"]
        print(
            f"RecBole autograd anomaly detection: {'on' if ad['after_import'] else 'off'} after "
            f"importing RecBole, switched off: {'no (still on!)' if ad['during_training'] else 'yes'}"
            f"; interactions sorted by exact (float64) time first: RecBole's float32 sort alone "
            f"would have misplaced {rb['time_order_fix']['float32_sort_would_misplace']} of "
            f"{rb['time_order_fix']['interactions_loaded']}",
            flush=True,
        )
        if rectk_examples is not None:
            check = compare_splits(rectk_examples, json.loads(Path(rb["split_file"]).read_text()))
            report["split_check"] = check
            print(
                f"split check: valid {check['valid']['rectk']} rectk / "
                f"{check['valid']['recbole']} RecBole examples, test {check['test']['rectk']} / "
                f"{check['test']['recbole']}; (learner, target, history length) differing: "
                f"valid {check['valid']['differing']}, test {check['test']['differing']} -> "
                f"{'identical' if check['identical'] else 'NOT identical'}",
                flush=True,
            )

    add_time_to_common_level(results)
    text, ratios = table(results)
    loads = [x for r in results.values() for x in r["load_average"]]
    print(
        f"\n{os.cpu_count()} CPUs; 1-min load average {min(loads):.1f}-{max(loads):.1f} during "
        f"the runs (at the start and end of each).\n"
    )
    print(text)
    report.update(results=results, ratios_rectk_over_recbole=ratios)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
