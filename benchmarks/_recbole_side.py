"""The RecBole half of ``benchmarks/vs_recbole.py``: its virtual environment, its process, its results.

Two parts. In the calling process (rectk's environment), ``run_recbole`` creates RecBole's
virtual environment on first use (``recbole_python``) and runs this file there, under
``_measure.Watch``, then reads what it left. In the RecBole environment, ``main`` trains and
tests RecBole:

    .bench-venvs/recbole/bin/python benchmarks/_recbole_side.py ARGS_JSON

The virtual environment, ``.bench-venvs/recbole``: ``python -m venv``, then ``pip install
torch==2.13.0`` (the CPU build) first, then ``pip install recbole==1.2.1 "numpy<2" "pandas<3"``.
Pins, and why:

- ``torch==2.13.0``: the CPU wheel; installed before RecBole so that pip never resolves a CUDA build.
- ``numpy<2``: RecBole's ``Config.compatibility_settings`` assigns ``np.float = np.float_`` and
  other aliases that numpy 2 removed, so ``Config(...)`` fails on numpy 2.
- ``pandas<3``: under pandas 3's copy-on-write, RecBole's ``feat[field].fillna(..., inplace=True)``
  (``Dataset._fill_nan``) silently does nothing and warns.
- not a pin: since torch 2.6, ``torch.load`` defaults to ``weights_only=True`` and refuses RecBole's
  checkpoints (they pickle the config), so ``main`` loads the best checkpoint itself with
  ``weights_only=False`` and calls ``Trainer.evaluate(load_best_model=False)``.
- ``recbole==1.2.1`` pulls ``ray<=2.6.3``; only ``recbole.quick_start`` imports it, and this
  benchmark does not.

``ARGS_JSON`` names the data, the output folder and the protocol (see ``vs_recbole.py``). The
process runs in the output folder (RecBole writes ``log/``, ``log_tensorboard/`` and checkpoints
under its working directory) and leaves there:

- ``events.jsonl``: one line per epoch, flushed as it happens: training and validation seconds,
  the validation metrics and the wall-clock time (``time.time()``) at the end of the validation;
- ``split.json``: the raw (user, target item, history length) of every validation and test example,
  so the caller can check the split against rectk's;
- ``results.json``: test metrics, timings, the best epoch and what was switched or patched.

Two things are changed in RecBole, both reported in ``results.json``:

1. Exact time order. RecBole keeps timestamps as float32 tensors and sorts by them (stably), so
   interactions less than a float32 step apart (64 s at ml-100k's raw timestamps, about 1 s after
   its default min-max normalisation) fall back to file order; rectk sorts by the float64 times.
   On ml-100k that changes 4 test and 5 validation targets (455 interactions change place). The
   interactions are therefore stably sorted by their float64 timestamp right after loading;
   RecBole's own stable sorts then keep that order, and the split is the same as rectk's (the
   caller checks it).
2. Autograd anomaly detection, which ``recbole.model.sequential_recommender.sine`` switches on
   for the whole process when the model package is imported, is switched off again.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Standard library only at import time: this file also runs in RecBole's environment.
from _measure import create_venv, fail, launch, load_average, median_gap

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".bench-venvs" / "recbole"
WORKER = Path(__file__).resolve()  # this file, run in the venv
TORCH_REQUIREMENT = "torch==2.13.0"
RECBOLE_REQUIREMENTS = ["recbole==1.2.1", "numpy<2", "pandas<3"]


# ---------------------------------------------------------------------------------------------
# In the calling process: the environment, the run, its results
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
    return create_venv(VENV, [[TORCH_REQUIREMENT], [TORCH_REQUIREMENT, *RECBOLE_REQUIREMENTS]])


def run_recbole(
    runs: Path,
    data_path: Path,
    dataset: str,
    protocol: dict,
    seed: int,
    metrics: tuple[str, ...],
    eval_repeats: int = 0,
) -> dict:
    """Trains and tests RecBole's SASRec under ``protocol`` (which includes ``max_epochs`` and
    ``stopping_step``) in ``runs/recbole``; returns the keys ``_rectk_side.run_rectk`` returns,
    and what RecBole's side reports about itself (versions, threads, what it switched)."""
    python = recbole_python()
    out = runs / "recbole"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    args = {
        "out": str(out),
        "data_path": str(data_path),
        "dataset": dataset,
        "seed": seed,
        "protocol": protocol,
        "eval_repeats": eval_repeats,
    }
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    log = runs / "recbole.log"
    load0 = load_average()
    rc, t0, watch = launch([str(python), str(WORKER), json.dumps(args)], log, cwd=out, env=env)
    if rc != 0:
        raise fail("RecBole", log)
    res = json.loads((out / "results.json").read_text())
    events = [json.loads(ln) for ln in (out / "events.jsonl").read_text().splitlines() if ln]
    return {
        "test": {m: res["test"][m] for m in metrics},
        "valid_best": {m: res["valid"].get(m) for m in metrics},
        "epochs_run": res["epochs_run"],
        "steps_per_epoch": res["steps_per_epoch"],
        "best_epoch": res["best_epoch"],
        "stopped": "early_stopping" if res["epochs_run"] < protocol["max_epochs"] else "steps",
        "epoch_median_s": statistics.median(res["epoch_seconds"]),
        "epoch_cycle_median_s": median_gap([e["time"] for e in events]),
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
        "load_average": [load0, load_average()],
        "log": str(log),
        "versions": res["versions"],
        "torch_threads": res["torch_threads"],
        "anomaly_detection": res["anomaly_detection"],
        "time_order_fix": res["time_order_fix"],
        "data": res["data"],
        "split_file": str(out / "split.json"),
    }


# ---------------------------------------------------------------------------------------------
# In RecBole's environment
# ---------------------------------------------------------------------------------------------


def keep_exact_time_order(dataset_cls, stats: dict) -> None:
    """Patches ``dataset_cls._load_data`` to sort the interactions by their float64 time, stably.

    ``stats`` receives the number of interactions loaded and how many of them RecBole's stable
    sort of float32 timestamps (min-max normalised where the config says so) would have put in
    another place than the exact time order does.
    """
    import numpy as np

    original_load = dataset_cls._load_data

    def load_in_time_order(self, token, dataset_path):
        original_load(self, token, dataset_path)
        t = self.inter_feat[self.time_field].to_numpy(np.float64)
        exact = np.argsort(t, kind="stable")
        normalised = self.config["normalize_all"] or self.time_field in (
            self.config["normalize_field"] or ()
        )
        t32 = ((t - t.min()) / max(t.max() - t.min(), 1e-300) if normalised else t).astype(
            np.float32
        )
        stats["interactions_loaded"] = len(t)
        stats["float32_sort_would_misplace"] = int((np.argsort(t32, kind="stable") != exact).sum())
        self.inter_feat = self.inter_feat.iloc[exact].reset_index(drop=True)

    dataset_cls._load_data = load_in_time_order


def main() -> int:
    args = json.loads(sys.argv[1])
    out = Path(args["out"])
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    import numpy as np
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.data.dataset import Dataset
    from recbole.model.sequential_recommender.sasrec import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_logger, init_seed

    anomaly_at_import = torch.is_anomaly_enabled()

    stats: dict = {}
    keep_exact_time_order(Dataset, stats)

    # ---- Configuration -------------------------------------------------------------------------
    p = args["protocol"]
    config_dict = {
        "data_path": args["data_path"],
        "checkpoint_dir": str(out / "saved"),
        "use_gpu": False,
        "device": "cpu",
        "seed": args["seed"],
        "reproducibility": True,
        "show_progress": False,
        "state": "INFO",
        "worker": 0,
        # data: every interaction, nothing filtered
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "rm_dup_inter": None,
        "val_interval": None,
        "filter_inter_by_user_or_item": False,
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "MAX_ITEM_LIST_LENGTH": p["max_len"],
        # model
        "n_layers": p["layers"],
        "n_heads": p["heads"],
        "hidden_size": p["dim"],
        "inner_size": p["inner"],
        "hidden_dropout_prob": p["dropout"],
        "attn_dropout_prob": p["attn_dropout"],
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "initializer_range": 0.02,
        "loss_type": "CE",
        # training
        "train_neg_sample_args": None,
        "epochs": p["max_epochs"],
        "train_batch_size": p["batch_size"],
        "learner": "adam",
        "learning_rate": p["lr"],
        "weight_decay": 0.0,
        "clip_grad_norm": None,
        "eval_step": 1,
        "stopping_step": p["stopping_step"],
        # evaluation
        "eval_args": {
            "split": {"LS": "valid_and_test"},
            "order": "TO",
            "group_by": "user",
            "mode": "full",
        },
        "repeatable": True,
        "metrics": ["Recall", "NDCG", "MRR"],
        "topk": [10],
        "valid_metric": "NDCG@10",
        "metric_decimal_place": 8,
        "eval_batch_size": p["eval_batch_size"],
    }
    config = Config(model="SASRec", dataset=args["dataset"], config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)

    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = SASRec(config, train_data._dataset).to(config["device"])
    torch.autograd.set_detect_anomaly(False)
    trainer = Trainer(config, model)

    # ---- Split, for the caller's check --------------------------------------------------------
    def examples(loader) -> dict:
        ds = loader._dataset
        inter = ds.inter_feat
        users = ds.id2token(ds.uid_field, inter[ds.uid_field].numpy())
        items = ds.id2token(ds.iid_field, inter[ds.iid_field].numpy())
        lengths = inter[ds.item_list_length_field].numpy()
        return {
            "user": [str(u) for u in users],
            "target": [str(i) for i in items],
            "hist_len": [int(n) for n in lengths],
        }

    split = {"valid": examples(valid_data), "test": examples(test_data)}
    (out / "split.json").write_text(json.dumps(split))
    train_ds = train_data._dataset
    data_info = {
        "users": int(dataset.user_num - 1),
        "items": int(dataset.item_num - 1),
        "interactions": stats["interactions_loaded"],
        "train_targets": len(train_ds),
        "valid_targets": len(split["valid"]["user"]),
        "test_targets": len(split["test"]["user"]),
        "valid_users": len(set(split["valid"]["user"])),
        "test_users": len(set(split["test"]["user"])),
    }

    # ---- Timed training: every epoch and validation recorded as it happens --------------------
    events = (out / "events.jsonl").open("w")
    epoch_log: list[dict] = []
    saved_epochs: list[int] = []
    original_train_epoch = trainer._train_epoch
    original_valid_epoch = trainer._valid_epoch
    original_save = trainer._save_checkpoint

    def train_epoch(train_data, epoch_idx, *a, **kw):
        t0 = time.perf_counter()
        loss = original_train_epoch(train_data, epoch_idx, *a, **kw)
        epoch_log.append({"epoch": epoch_idx + 1, "train_s": time.perf_counter() - t0})
        return loss

    def valid_epoch(valid_data, *a, **kw):
        t0 = time.perf_counter()
        score, result = original_valid_epoch(valid_data, *a, **kw)
        row = epoch_log[-1]
        row.update(
            valid_s=time.perf_counter() - t0,
            time=time.time(),
            valid={k: float(v) for k, v in result.items()},
        )
        events.write(json.dumps(row) + "\n")
        events.flush()
        return score, result

    def save_checkpoint(epoch, *a, **kw):
        saved_epochs.append(epoch + 1)
        return original_save(epoch, *a, **kw)

    trainer._train_epoch = train_epoch
    trainer._valid_epoch = valid_epoch
    trainer._save_checkpoint = save_checkpoint
    anomaly_in_training = torch.is_anomaly_enabled()
    t_fit = time.time()
    trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    fit_s = time.time() - t_fit
    events.close()

    # ---- Test: the best model, full ranking --------------------------------------------------
    # torch.load's weights_only default (True since torch 2.6) refuses RecBole's checkpoint,
    # which pickles the config too; load it here and time the evaluation alone.
    checkpoint = torch.load(trainer.saved_model_file, map_location="cpu", weights_only=False)
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    t0 = time.perf_counter()
    test = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    test_s = time.perf_counter() - t0
    repeat_s = []  # the same evaluation again: a median less at the mercy of one pass
    for _ in range(args.get("eval_repeats", 0)):
        t0 = time.perf_counter()
        trainer.evaluate(test_data, load_best_model=False, show_progress=False)
        repeat_s.append(time.perf_counter() - t0)

    best_epoch = saved_epochs[-1] if saved_epochs else None
    best_row = next((r for r in epoch_log if r["epoch"] == best_epoch), None)
    results = {
        "versions": {
            "recbole": __import__("recbole").__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "pandas": __import__("pandas").__version__,
        },
        "torch_threads": torch.get_num_threads(),
        "anomaly_detection": {
            "after_import": anomaly_at_import,
            "during_training": anomaly_in_training,
        },
        "time_order_fix": stats,
        "data": data_info,
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "start_time": t_start,
        "epochs_run": len(epoch_log),
        "steps_per_epoch": len(train_data),
        "best_epoch": best_epoch,
        "best_time": best_row["time"] if best_row else None,
        "valid": {k: float(v) for k, v in (trainer.best_valid_result or {}).items()},
        "test": {k: float(v) for k, v in test.items()},
        "epoch_seconds": [r["train_s"] for r in epoch_log],
        "valid_seconds": [r.get("valid_s") for r in epoch_log],
        "fit_seconds": fit_s,
        "test_eval_seconds": test_s,
        "test_eval_repeat_seconds": repeat_s,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
