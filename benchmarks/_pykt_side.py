"""The pyKT half of ``benchmarks/vs_pykt.py``: DKT and AKT on ASSIST2015, pyKT's own way, with timings.

Runs inside pyKT's virtual environment (``benchmarks/_pykt_env.py`` creates it):

    .bench-venvs/pykt/bin/python benchmarks/_pykt_side.py --models dkt,akt --threads 1 --json OUT.json
    .bench-venvs/pykt/bin/python benchmarks/_pykt_side.py --models akt --max-epochs 2 --threads 1

Each model trains in a child process of its own (same interpreter), so its peak RSS, seed and
thread settings are its own; the parent gathers the children's JSON into one report.

Data. ``../shared/data/assist2015-pykt`` holds pyKT's processed ASSIST2015: ``train_valid.csv``
(one row per learner, ``fold`` 0-4) and ``test.csv`` (``fold`` -1, with ``cidxs``, the global
interaction index pyKT adds to test rows), and ``keyid2idx.json`` (100 concepts, no question ids).
pyKT trains and tests on files it derives from those in its ``split_datasets.main``; this script
builds them in a temporary folder with pyKT's own functions from ``pykt.preprocess.split_datasets``
(the shared folder is only read):

- ``train_valid_sequences.csv`` = ``generate_sequences(train_valid, {fold, uid, concepts,
  responses}, min_seq_len=3, maxlen=200)``: every learner cut into windows of 200 that do not
  overlap; a remainder shorter than 3 is dropped; each window is padded with -1 and its
  ``selectmasks`` mark the real positions;
- ``test_sequences.csv`` = ``generate_sequences(test, keys + ['cidxs'], 3, 200)``: the same cut;
- ``test_window_sequences.csv`` = ``generate_window_sequences(test, keys + ['cidxs'], 200)``: one
  row per interaction past the 200th (its 199 predecessors as context, only it scored), so every
  answer is predicted from up to 199 previous ones.

and the ``data_config`` entry pyKT's ``configs/data_config.json`` has for ``assist2015``
(``num_q`` 0, ``num_c`` 100, ``input_type ["concepts"]``, ``max_concepts`` 1, ``maxlen`` 200,
folds 0-4). ASSIST2015 has no question ids and one concept per answer, so pyKT's question-level
evaluation (``test_question_*``, which expands multi-concept questions and fuses their
predictions) does not apply: pyKT writes no question-level files for it, and AKT runs without
its Rasch (question-difficulty) embeddings (``n_pid`` = ``num_q`` = 0).

Protocol, pyKT's (``examples/wandb_train.py`` + ``wandb_predict.py``; pykt-toolkit 0.0.38 code):

- validation fold 0 (``init_dataset4train(..., fold=0, ...)``), training folds 1-4; the
  ``DataLoader`` does not shuffle (pyKT's choice);
- ``pykt.utils.set_seed(seed)``; Adam at the model's learning rate, no weight decay;
  binary cross-entropy on the selected positions (AKT adds its Rasch L2 term, 0 here);
- ``pykt.models.train_model`` with ``save_model=True``: after each epoch it evaluates the
  validation fold (AUC); an epoch is the new best only if its AUC exceeds the best so far by more
  than 1e-3, the best weights are saved then, and training stops once 10 epochs have passed since
  the best one (``i - best_epoch >= 10``) or after ``num_epochs`` (200 in pyKT's
  ``configs/kt_config.json``; ``--max-epochs``);
- batch size 256 for DKT, 64 for AKT (``wandb_train.py`` sets 64 for AKT "because of OOM");
- test: the best weights reloaded, ``pykt.models.evaluate`` on ``test_sequences.csv`` (``testauc``,
  ``testacc``) and on ``test_window_sequences.csv`` (``window_testauc``, ``window_testacc``), batch
  256 (``wandb_predict.py --bz``). Accuracy thresholds the predicted probability at 0.5. For a
  data set with concepts only, pyKT's current ``wandb_predict.py`` names the *window* figures as
  the ones to report; both are kept here.

Hyper-parameters: pyKT's tuned best for ASSIST2015, fold 0 (``HYPER``). Sources:

- DKT: ``emb_size`` 200, ``dropout`` 0.5, ``learning_rate`` 1e-3, seed 3407; the pyKT maintainers
  quoting the fold-0 best of their sweep ``dkt_tiaocan_assist2015`` in
  https://github.com/pykt-team/pykt-toolkit/issues/23 (each value in pyKT's sweep grid
  ``examples/seedwandb/dkt.yaml``).
- AKT: ``d_model`` 256, ``d_ff`` 512, ``num_attn_heads`` 8, ``n_blocks`` 3, ``dropout`` 0.05,
  ``learning_rate`` 5e-6, seed 3407; the defaults of a stored version of pyKT's
  ``examples/wandb_akt_train.py`` set from the fold-0 best run it names,
  ``assist2015_akt_qid_akt_tiaocan_assist2015_3407_0_0.05_256_512_8_3_5e-06``. Each value lies in
  pyKT's sweep grid ``examples/seedwandb/akt.yaml``. (pyKT's full table of tuned values per fold
  is on Google Drive, linked from its README; not reachable from here.) Other AKT arguments are
  ``pykt.models.akt.AKT``'s defaults: ``kq_same`` 1, ``final_fc_dim`` 512, ``separate_qa`` False,
  ``l2`` 1e-5 (unused without question ids).
- Not tuned: the pyKT defaults above (batch size, 200 epochs, patience 10, ``maxlen`` 200).

One change to pyKT, reported in the JSON: pykt-toolkit 0.0.38's data loaders do
``from torch.cuda import FloatTensor, LongTensor``, which a CPU-only PyTorch refuses
("type torch.cuda.LongTensor not available"), so ``pykt.datasets.data_loader`` gets
``torch.FloatTensor``/``torch.LongTensor`` instead (the same values, on the CPU, where pyKT's
``device`` puts everything anyway when there is no GPU). Timing hooks wrap ``evaluate`` as
``train_model`` sees it (the validation after each epoch) and an optimiser step post-hook
(``Optimizer.register_step_post_hook``) that stamps every step; they only read the clock.

Files in the work folder (kept with ``--workdir``; otherwise a temporary folder, removed at the
end): ``data/`` (the derived files and pyKT's ``.pkl`` caches of them), ``MODEL_events.jsonl``
(one line per epoch, flushed as it ends: training and validation seconds, validation
AUC/accuracy, wall-clock time), ``MODEL_steps.jsonl`` (the time of every 10th optimiser step:
progress inside an epoch, which takes over an hour for AKT on one core),
``MODEL_ckpt/qid_model.ckpt`` (pyKT's best weights) and ``MODEL_result.json``.

Per model the JSON has: test AUC/accuracy (both protocols), best validation AUC and epoch,
epochs run, seconds per epoch (training only: from the end of one validation to the start of the
next; the first epoch includes building the ``DataLoader`` iterator, an epoch after a new best
the saving of those weights) and per validation, their medians, the median seconds per optimiser
step, wall time from the child's start to the end of the best epoch's validation, peak RSS
(``ru_maxrss`` of the child), torch threads, versions, hyper-parameters, data counts.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "assist2015-pykt"
DATASET = "assist2015"
MAXLEN, MIN_SEQ_LEN = 200, 3
VALID_FOLD = 0
PATIENCE_EPOCHS, MIN_DELTA = 10, 1e-3  # pyKT's train_model: hard-coded, stated here for the report
DEFAULT_EPOCHS = 200  # pyKT configs/kt_config.json train_config.num_epochs
TEST_BATCH = 256  # pyKT examples/wandb_predict.py --bz

# pyKT's tuned best for ASSIST2015, fold 0 (sources in the module docstring).
HYPER = {
    "dkt": {
        "model": {"emb_size": 200, "dropout": 0.5},
        "learning_rate": 1e-3,
        "batch_size": 256,
        "seed": 3407,
    },
    "akt": {
        "model": {"d_model": 256, "d_ff": 512, "num_attn_heads": 8, "n_blocks": 3, "dropout": 0.05},
        "learning_rate": 5e-6,
        "batch_size": 64,
        "seed": 3407,
    },
}


def data_config(dpath: Path) -> dict:
    """pyKT's configs/data_config.json entry for assist2015, pointed at ``dpath``."""
    return {
        "dpath": str(dpath),
        "num_q": 0,
        "num_c": 100,
        "input_type": ["concepts"],
        "max_concepts": 1,
        "min_seq_len": MIN_SEQ_LEN,
        "maxlen": MAXLEN,
        "emb_path": "",
        "train_valid_original_file": "train_valid.csv",
        "train_valid_file": "train_valid_sequences.csv",
        "folds": [0, 1, 2, 3, 4],
        "test_original_file": "test.csv",
        "test_file": "test_sequences.csv",
        "test_window_file": "test_window_sequences.csv",
    }


def build_data(src: Path, dst: Path) -> dict:
    """pyKT's derived files in ``dst`` from the processed files in ``src``; returns counts."""
    import contextlib
    import io

    import pandas as pd
    from pykt.preprocess.split_datasets import generate_sequences, generate_window_sequences

    dst.mkdir(parents=True, exist_ok=True)
    for name in ("train_valid.csv", "test.csv", "keyid2idx.json"):
        shutil.copyfile(src / name, dst / name)
    keyid = json.loads((src / "keyid2idx.json").read_text())
    assert len(keyid["concepts"]) == 100 and keyid["max_concepts"] == 1, "not pyKT's assist2015"
    train_valid = pd.read_csv(dst / "train_valid.csv")
    test = pd.read_csv(dst / "test.csv")
    keys = {"fold", "uid", "concepts", "responses"}
    assert keys <= set(train_valid.columns) and "cidxs" in test.columns
    with contextlib.redirect_stdout(io.StringIO()):  # pyKT prints its drop counts
        seqs = generate_sequences(train_valid, keys, MIN_SEQ_LEN, MAXLEN)
        test_seqs = generate_sequences(test, [*keys, "cidxs"], MIN_SEQ_LEN, MAXLEN)
        window = generate_window_sequences(test, [*keys, "cidxs"], MAXLEN)
    seqs.to_csv(dst / "train_valid_sequences.csv", index=None)
    test_seqs.to_csv(dst / "test_sequences.csv", index=None)
    window.to_csv(dst / "test_window_sequences.csv", index=None)

    def answers(df) -> int:
        return int(df["responses"].str.count(",").sum() + len(df))

    return {
        "learners_train_valid": len(train_valid),
        "learners_valid_fold0": int((train_valid["fold"] == VALID_FOLD).sum()),
        "learners_test": len(test),
        "answers_train_valid": answers(train_valid),
        "answers_test": answers(test),
        "rows_train_valid_sequences": len(seqs),
        "rows_test_sequences": len(test_seqs),
        "rows_test_window_sequences": len(window),
    }


# ---------------------------------------------------------------------------------------------
# One model, in a child process
# ---------------------------------------------------------------------------------------------


class StepCap(Exception):
    """Raised after ``--max-steps`` optimiser steps: a timing run that trains no further."""


def run_one(
    name: str, max_epochs: int, threads: int, workdir: Path, out: Path, max_steps: int = 0
) -> None:
    t_start = time.time()
    import numpy as np
    import pandas as pd
    import sklearn
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
        torch.set_num_interop_threads(threads)

    import pykt
    import pykt.datasets.data_loader as pykt_loader

    # CPU-only torch refuses torch.cuda tensor types; pyKT 0.0.38 builds its data with them.
    pykt_loader.FloatTensor, pykt_loader.LongTensor = torch.FloatTensor, torch.LongTensor

    from pykt.datasets import init_dataset4train, init_test_datasets
    from pykt.models import evaluate, init_model
    from pykt.utils import set_seed

    # the module (``pykt.models.train_model`` is also the name of the function it exports)
    pykt_train = sys.modules["pykt.models.train_model"]

    hp = HYPER[name]
    dconf = data_config(workdir / "data")
    set_seed(hp["seed"])
    train_loader, valid_loader, *_ = init_dataset4train(
        DATASET, name, {DATASET: dconf}, VALID_FOLD, hp["batch_size"]
    )
    model = init_model(name, dict(hp["model"]), dconf, "qid")
    opt = torch.optim.Adam(model.parameters(), hp["learning_rate"])

    events = (workdir / f"{name}_events.jsonl").open("w")
    log: list[dict] = []
    mark = {"t": time.time()}  # end of the previous validation (or of the set-up)

    def timed_evaluate(model_, loader, model_name, *a, **kw):
        t0 = time.time()
        auc, acc = evaluate(model_, loader, model_name, *a, **kw)
        t1 = time.time()
        row = {
            "epoch": len(log) + 1,
            "train_s": t0 - mark["t"],
            "valid_s": t1 - t0,
            "valid_auc": float(auc),
            "valid_acc": float(acc),
            "time": t1,
        }
        log.append(row)
        events.write(json.dumps(row) + "\n")
        events.flush()
        mark["t"] = time.time()
        return auc, acc

    pykt_train.evaluate = timed_evaluate  # train_model's validation; read-only hook

    steps = (workdir / f"{name}_steps.jsonl").open("w")
    step_times: list[float] = []

    def after_step(*_):  # optimiser step timestamps: progress inside a long epoch; read-only
        step_times.append(time.time())
        if len(step_times) % 10 == 0:
            steps.write(json.dumps({"step": len(step_times), "time": step_times[-1]}) + "\n")
            steps.flush()
        if max_steps and len(step_times) >= max_steps:
            raise StepCap

    opt.register_step_post_hook(after_step)
    ckpt = workdir / f"{name}_ckpt"
    ckpt.mkdir(exist_ok=True)
    t_fit = time.time()
    mark["t"] = t_fit
    try:
        _, _, _, _, valid_auc, valid_acc, best_epoch = pykt_train.train_model(
            model, train_loader, valid_loader, max_epochs, opt, str(ckpt), None, None, True
        )
    except StepCap:  # --max-steps: time the steps, report no quality
        events.close()
        steps.close()
        gaps = [b - a for a, b in itertools.pairwise(step_times)]
        median = statistics.median(gaps[1:] or gaps)  # the first gap holds warm-up
        out.write_text(
            json.dumps(
                {
                    "model": name,
                    "hyper": hp,
                    "stopped_after_steps": len(step_times),
                    "steps_per_epoch": len(train_loader),
                    "step_median_s": median,
                    "epoch_projected_s": median * len(train_loader),
                    "torch_threads": torch.get_num_threads(),
                    "versions": {"torch": torch.__version__},
                    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                },
                indent=2,
            )
        )
        return
    fit_s = time.time() - t_fit
    events.close()
    steps.close()
    gaps = [b - a for a, b in itertools.pairwise(step_times)]

    best = init_model(name, dict(hp["model"]), dconf, "qid")
    best.load_state_dict(torch.load(ckpt / "qid_model.ckpt", map_location="cpu"))
    test_loader, window_loader, _, _ = init_test_datasets(dconf, name, TEST_BATCH)
    t0 = time.time()
    test_auc, test_acc = evaluate(best, test_loader, name)
    test_s = time.time() - t0
    t0 = time.time()
    w_auc, w_acc = evaluate(best, window_loader, name)
    window_s = time.time() - t0

    train_s = [r["train_s"] for r in log]
    best_row = next((r for r in log if r["epoch"] == best_epoch), None)
    result = {
        "model": name,
        "hyper": hp,
        "protocol": {
            "valid_fold": VALID_FOLD,
            "max_epochs": max_epochs,
            "early_stopping": f"new best only if valid AUC > best + {MIN_DELTA}; stop when "
            f"epoch - best_epoch >= {PATIENCE_EPOCHS} (pykt.models.train_model)",
            "maxlen": MAXLEN,
            "test_batch": TEST_BATCH,
            "shuffle": False,
        },
        "versions": {
            "pykt-toolkit": __import__("importlib.metadata").metadata.version("pykt-toolkit"),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "scikit-learn": sklearn.__version__,
            "python": sys.version.split()[0],
        },
        "pykt_path": str(Path(pykt.__file__).parent),
        "patched": ["pykt.datasets.data_loader FloatTensor/LongTensor -> torch CPU types"],
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "steps_per_epoch": len(train_loader),
        "valid_batches": len(valid_loader),
        "test": {
            "auc": float(test_auc),
            "acc": float(test_acc),
            "window_auc": float(w_auc),
            "window_acc": float(w_acc),
        },
        "valid_best": {"auc": float(valid_auc), "acc": float(valid_acc)},
        "best_epoch": best_epoch,
        "epochs_run": len(log),
        "epoch_seconds": train_s,
        "valid_seconds": [r["valid_s"] for r in log],
        "epoch_median_s": statistics.median(train_s) if train_s else None,
        "epoch_median_s_after_first": statistics.median(train_s[1:]) if len(train_s) > 1 else None,
        "step_median_s": statistics.median(gaps) if gaps else None,
        "valid_median_s": statistics.median(r["valid_s"] for r in log) if log else None,
        "valid_curve": [[r["time"] - t_start, r["valid_auc"]] for r in log],
        "start_time": t_start,
        "to_best_s": best_row["time"] - t_start if best_row else None,
        "fit_s": fit_s,
        "test_eval_s": test_s,
        "test_window_eval_s": window_s,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "process_s": time.time() - t_start,
        "load_average_end": os.getloadavg()[0],
    }
    out.write_text(json.dumps(result, indent=2))


# ---------------------------------------------------------------------------------------------
# The parent: data once, one child per model, one report
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="dkt,akt", help="comma-separated: dkt, akt")
    p.add_argument("--max-epochs", type=int, default=DEFAULT_EPOCHS)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument(
        "--max-steps",
        type=int,
        default=0,
        help="stop after this many optimiser steps and "
        "report their median time only (0 = train to the end)",
    )
    p.add_argument("--json", type=Path, help="write the report here")
    p.add_argument("--data", type=Path, default=DATA, help="pyKT's processed assist2015 folder")
    p.add_argument("--workdir", type=Path, help="keep the derived files and logs here")
    p.add_argument("--one", help=argparse.SUPPRESS)  # child: run this model in --workdir
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.one:
        run_one(args.one, args.max_epochs, args.threads, args.workdir, args.out, args.max_steps)
        return 0

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in HYPER]
    if unknown:
        p.error(f"unknown model(s) {unknown}; choose from {sorted(HYPER)}")
    if args.max_epochs < 1:
        p.error("--max-epochs must be at least 1")
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="pykt_assist2015_")
        args.workdir = Path(tmp.name)
    args.workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    counts = build_data(args.data, args.workdir / "data")
    print(f"pyKT data in {args.workdir / 'data'} ({time.time() - t0:.1f} s): {counts}", flush=True)

    report: dict = {
        "dataset": DATASET,
        "data": str(args.data),
        "data_counts": counts,
        "cpu_count": os.cpu_count(),
        "load_average_start": os.getloadavg()[0],
        "results": {},
    }
    for name in models:
        out = args.workdir / f"{name}_result.json"
        cmd = [sys.executable, __file__, "--one", name, "--max-epochs", str(args.max_epochs)]
        cmd += ["--threads", str(args.threads), "--workdir", str(args.workdir), "--out", str(out)]
        cmd += ["--max-steps", str(args.max_steps)]
        print(f"pyKT {name}: {HYPER[name]} ...", flush=True)
        done = subprocess.run(cmd)
        if done.returncode != 0:
            raise SystemExit(f"pyKT {name} failed (exit {done.returncode})")
        res = json.loads(out.read_text())
        report["results"][name] = res
        if "stopped_after_steps" in res:
            print(
                f"pyKT {name}: {res['stopped_after_steps']} steps timed, median "
                f"{res['step_median_s']:.2f} s/step -> {res['epoch_projected_s']:.0f} s/epoch "
                f"projected ({res['steps_per_epoch']} steps)",
                flush=True,
            )
            continue
        t = res["test"]
        print(
            f"pyKT {name}: test AUC {t['auc']:.4f} acc {t['acc']:.4f} | window AUC "
            f"{t['window_auc']:.4f} acc {t['window_acc']:.4f} | best valid AUC "
            f"{res['valid_best']['auc']:.4f} at epoch {res['best_epoch']} of {res['epochs_run']} | "
            f"median {res['epoch_median_s']:.1f} s/epoch ({res['steps_per_epoch']} steps), "
            f"{res['to_best_s']:.0f} s to best | peak RSS {res['peak_rss_mib']:.0f} MiB | "
            f"{res['torch_threads']} threads",
            flush=True,
        )
    report["load_average_end"] = os.getloadavg()[0]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
