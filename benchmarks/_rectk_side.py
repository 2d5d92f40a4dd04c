"""The rectk half of a comparison script (``vs_recbole.py``): train, time, read the results.

rectk trains through ``python -m rectk.cli train RECIPE --set ...`` in a process of its own,
watched from outside (``_measure.Watch``): the time each validation row reaches the run's
``metrics.jsonl``, peak memory, and the JAX compile log (``JAX_LOG_COMPILES``), which says how
much of the test evaluation was an XLA compilation. The other library's side returns a result
with the same keys, so the driver tabulates both alike.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _measure import fail, launch, load_average, median_gap

ROOT = Path(__file__).resolve().parents[1]
RANKS_COMPILED = r"Finished XLA compilation of jit\(model_ranks\) in ([0-9.]+) sec"


def rectk_split(recipe: Path, sets: list[str]) -> tuple[dict, dict]:
    """rectk's validation and test examples (raw ids) and the data counts, without training."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from rectk import recipe as recipe_lib
    from rectk.setup import prepare

    cfg = recipe_lib.load(recipe, sets).config
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


def rectk_eval_median(
    recipe: Path, runs: Path, sets: list[str], cpu_devices: int, repeats: int
) -> float:
    """Median seconds of ``repeats`` test evaluations with the run's recipe, by eval_speed.py.

    A single pass of a few hundredths of a second varies from run to run; ``eval_speed.py``
    compiles first, then times the passes in a process of its own.
    """
    out = runs / "rectk_eval_speed.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "eval_speed.py"), str(recipe)]
    cmd += ["--only-rectk", "--repeats", str(repeats), "--cpu-devices", str(cpu_devices)]
    cmd += ["--json", str(out)]
    for s in sets:
        cmd += ["--set", s]
    log = runs / "rectk_eval_speed.log"
    with open(log, "w") as f:
        if subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode:
            raise fail("rectk eval_speed", log)
    return float(json.loads(out.read_text())["rows"][0]["median_s"])


def run_rectk(
    recipe: Path,
    runs: Path,
    name: str,
    sets: list[str],
    metrics: tuple[str, ...],
    cpu_devices: int = 0,
    eval_repeats: int = 0,
) -> dict:
    """Trains ``recipe`` with ``sets`` (which name the run ``runs/name``) from scratch; returns
    its metrics, timings and peak memory under the keys every library's side returns."""
    rd = runs / name
    shutil.rmtree(rd, ignore_errors=True)  # rectk resumes an existing run directory
    cmd = [sys.executable, "-m", "rectk.cli", "--cpu-devices", str(cpu_devices), "train"]
    cmd += [str(recipe), "--no-progress"]
    for s in sets:
        cmd += ["--set", s]
    log = runs / "rectk.log"
    load0 = load_average()
    env = dict(os.environ, JAX_LOG_COMPILES="1")
    rc, t0, watch = launch(cmd, log, cwd=ROOT, env=env, jsonl=rd / "metrics.jsonl")
    if rc != 0:
        raise fail("rectk", log)
    ranks_compiles = [float(m) for m in re.findall(RANKS_COMPILED, log.read_text(errors="replace"))]
    res = json.loads((rd / "results.json").read_text())
    n_test_compiles = int(res["seconds"].get("test_eval_compilations", 0))
    valids = [(t, row) for t, row in watch.lines if any(k.startswith("valid/") for k in row)]
    steps = [row["step"] for _, row in valids]
    best = res["best_step"]
    best_epoch = steps.index(best) + 1 if best in steps else None
    stamps = [t for t, _ in valids]
    return {
        "test": {m: res["test"]["model"][m] for m in metrics},
        "valid_best": {m: res["valid"].get(m) for m in metrics},
        "epochs_run": len(valids),
        "steps_per_epoch": steps[0] if steps else None,
        "best_epoch": best_epoch,
        "stopped": res["stopped"],
        "epoch_median_s": res["seconds"]["epoch_median"],
        "epoch_cycle_median_s": median_gap(stamps),
        "to_best_s": stamps[best_epoch - 1] - t0 if best_epoch else None,
        "valid_curve": [[t - t0, row["valid/ndcg@10"]] for t, row in valids],
        "test_eval_s": res["seconds"]["test_eval"],
        # the test evaluation compiles only batch shapes validation did not (the last ones)
        "test_eval_compile_s": sum(ranks_compiles[len(ranks_compiles) - n_test_compiles :]),
        "test_eval_median_s": (
            rectk_eval_median(recipe, runs, sets, cpu_devices, eval_repeats)
            if eval_repeats
            else None
        ),
        "peak_rss_mib": watch.peak_rss / 2**20,
        "process_s": time.time() - t0,
        "load_average": [load0, load_average()],
        "log": str(log),
    }
