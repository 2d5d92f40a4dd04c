"""SASRec (full-softmax cross-entropy) on MovieLens-100K in rectk and in RecBole 1.2.1, one protocol.

    python benchmarks/vs_recbole.py --json results/vs_recbole.json
    python benchmarks/vs_recbole.py --max-epochs 2          # a quick check that everything runs
    python benchmarks/vs_recbole.py --only rectk
    python benchmarks/vs_recbole.py --only rectk --max-epochs 1 --eval-repeats 0 --runs /tmp/vsr
                                                            # a smoke test without RecBole

Both libraries read the RecBole atomic files in ``../shared/data/ml-100k`` and run, one after the
other, each in its own process: rectk through ``python -m rectk.cli train`` (into
``runs/vs_recbole/rectk_sasrec``), RecBole through ``benchmarks/_recbole_side.py`` in its own
virtual environment (``.bench-venvs/recbole``, created on first use; see ``_recbole_side.py``
for what it installs and why).

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
further test evaluations, since a single pass of a few hundredths of a second varies from run
to run (RecBole: ``Trainer.evaluate`` again on the best model, in its process; rectk:
``benchmarks/eval_speed.py --only-rectk`` in a process of its own, with the same recipe
overrides and device count, after a pass that compiles; its weights are the initial ones, which
cost the same arithmetic); peak resident memory of the process tree (psutil, sampled every
50 ms); the process's wall time; and the rectk / RecBole ratios.

Same targets, and about as many per update: ``batch 256`` is 256 single-target prefixes in
RecBole (380 optimiser steps per epoch on ml-100k), and in rectk as many windows as carry 256
targets, ``ceil(256 / stride)``: 26 windows of up to 10 targets at the default stride (390
steps per epoch). ``--rectk-batch N`` sets the windows per update instead (256 windows, 2,560
targets per update, validated lower: docs/notes/2026-11-30-vs-recbole-seeds.md).

Files: this driver (the protocol, the command line, the table and the JSON);
``_rectk_side.py`` and ``_recbole_side.py`` (each library's run, results under the same keys;
RecBole's virtual environment and its pins are in the latter); ``_measure.py`` (timers, peak
memory, load average, medians, time to a level, the ratio table, JSON), shared with any other
comparison script.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import _measure
from _recbole_side import run_recbole
from _rectk_side import rectk_split, run_rectk

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DATASET = "ml-100k"
RECIPE = ROOT / "recipes" / "ml100k_sasrec.toml"
RUN_NAME = "rectk_sasrec"
METRICS = ("recall@10", "ndcg@10", "mrr@10")

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
# rectk's settings under the protocol
# ---------------------------------------------------------------------------------------------


def rectk_batch(stride: int) -> int:
    """rectk's windows per update that carry ``batch_size`` targets, as RecBole's batch of
    single-target prefixes does: a window trains its last ``stride`` targets (all ``max_len``
    positions where ``stride`` is 0 or at least ``max_len``).

    >>> rectk_batch(10), rectk_batch(1), rectk_batch(50)
    (26, 256, 6)
    """
    per_window = stride if 0 < stride < PROTOCOL["max_len"] else PROTOCOL["max_len"]
    return -(-PROTOCOL["batch_size"] // per_window)


def rectk_overrides(
    runs: Path, max_epochs: int, patience: int, seed: int, stride: int = 0, batch: int = 0
) -> list[str]:
    """``batch``: windows per update (0 = ``rectk_batch(stride)``)."""
    p = PROTOCOL
    sets = {
        "run_dir": f'"{runs}"',
        "name": f'"{RUN_NAME}"',
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


# ---------------------------------------------------------------------------------------------
# The comparison: the split check and the table
# ---------------------------------------------------------------------------------------------


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
        **_measure.machine(),  # cpu_count, machine
        "rectk_overrides": sets,
    }
    rectk_examples = None
    if args.only != "recbole":
        rectk_examples, counts = rectk_split(RECIPE, sets)
        report["rectk_data"] = counts
        print(f"rectk data: {counts}", flush=True)
        print(f"running rectk (log {args.runs / 'rectk.log'}) ...", flush=True)
        results["rectk"] = run_rectk(
            RECIPE, args.runs, RUN_NAME, sets, METRICS, args.rectk_cpu_devices, args.eval_repeats
        )
    if args.only != "rectk":
        print(f"running RecBole (log {args.runs / 'recbole.log'}) ...", flush=True)
        protocol = {**PROTOCOL, "max_epochs": args.max_epochs, "stopping_step": args.patience - 1}
        rb = run_recbole(args.runs, DATA, DATASET, protocol, args.seed, METRICS, args.eval_repeats)
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

    _measure.add_time_to_common_level(results, "ndcg@10")
    text, ratios = _measure.comparison_table(results, ROWS)
    print(
        f"\n{report['cpu_count']} CPUs; 1-min load average {_measure.load_range(results)} during "
        f"the runs (at the start and end of each).\n"
    )
    print(text)
    report.update(results=results, ratios_rectk_over_recbole=ratios)
    _measure.write_json(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
