"""Training time per epoch with and without ``train.group_by_length``, recipe by recipe.

    python benchmarks/group_by_length.py recipes/beauty_sasrec_ce.toml recipes/ml100k_sasrec.toml
    python benchmarks/group_by_length.py recipes/beauty_bert4rec_finetune.toml --steps 200

Short histories fill a ``model.max_len`` window mostly with padding; grouping windows of similar
length into batches and cutting each batch to its longest window skips that work (the loss is
the same: ``tests/test_training.py``). For each recipe and setting, in its own process, this
builds the model and optimiser, draws the epoch's first ``--steps`` batches (all of them with
``--steps 0``), compiles the train step once per window width among them, then times those steps.
Grouped batches come in shuffled order, so their first ``--steps`` are a fair sample of the
epoch. It prints ms per step, the implied seconds per epoch, the mean window width, and the
speed-up of grouping measured in the same run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(recipe: str, sets: list[str], steps: int) -> dict:
    """Runs in the child process: time the first ``steps`` train steps of an epoch."""
    import time

    from rectk import sharding as shd

    shd.set_cpu_devices(int(os.environ.get("RECTK_BENCH_DEVICES", "0")))
    import jax

    from rectk import recipe as recipe_lib
    from rectk import steps as steps_lib
    from rectk.run import prepare
    from rectk.trainer import setup, train_batches

    cfg = recipe_lib.load(recipe, [*sets, "train.init_from="]).config
    data, split = prepare(cfg)
    s = setup(cfg, data, split, shd.make_mesh(cfg.mesh.data, cfg.mesh.model))
    batches = list(itertools.islice(train_batches(s, split, epochs=1), steps or None))
    fn = steps_lib.jit_train_step(s.bound, s.state_shardings, s.batch_sharding, s.replicated)
    state, key = s.state, jax.random.key(cfg.seed + 1)
    widths = [b["input"].shape[1] for b in batches]
    for width in sorted(set(widths)):  # compile every shape before timing
        b = batches[widths.index(width)]
        state, _ = fn(state, jax.device_put(b, s.batch_sharding), key)
    jax.block_until_ready(state)
    t = time.perf_counter()
    for b in batches:
        state, _ = fn(state, jax.device_put(b, s.batch_sharding), key)
    jax.block_until_ready(state)
    wall = (time.perf_counter() - t) / len(batches)
    return {
        "ms_per_step": 1000 * wall,
        "epoch_seconds": wall * s.steps_per_epoch,
        "steps_per_epoch": s.steps_per_epoch,
        "timed_steps": len(batches),
        "mean_width": sum(widths) / len(widths),
        "max_len": cfg.model.max_len,
        "devices": len(jax.devices()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipes", nargs="+")
    p.add_argument("--steps", type=int, default=100, help="steps timed per setting; 0 = epoch")
    p.add_argument("--devices", type=int, default=0, help="XLA CPU devices; 0 = one")
    p.add_argument("--set", dest="sets", action="append", default=[], help="recipe override")
    p.add_argument("--json", type=Path)
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(measure(a.recipes[0], json.loads(a.child), a.steps)))
        return
    rows = []
    for recipe in a.recipes:
        for grouped in (False, True):
            sets = [*a.sets, f"train.group_by_length={str(grouped).lower()}"]
            env = {**os.environ, "RECTK_BENCH_DEVICES": str(a.devices)}
            cmd = [sys.executable, __file__, recipe, "--steps", str(a.steps)]
            proc = subprocess.run(
                [*cmd, "--child", json.dumps(sets)],
                capture_output=True,
                text=True,
                cwd=ROOT,
                env=env,
            )
            if proc.returncode != 0:
                sys.exit(f"{recipe} {sets} failed:\n{proc.stderr[-2000:]}")
            row = {"recipe": recipe, "grouped": grouped}
            row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
            rows.append(row)
            print(f"  measured {row}", file=sys.stderr, flush=True)
    print(
        f"{'recipe':<40} {'grouped':>7} {'width':>6} {'ms/step':>8} {'s/epoch':>8} {'speed-up':>8}"
    )
    for plain, grouped in zip(rows[::2], rows[1::2], strict=True):
        for r in (plain, grouped):
            ratio = plain["ms_per_step"] / r["ms_per_step"]
            print(
                f"{Path(r['recipe']).name:<40} {'yes' if r['grouped'] else 'no':>7} "
                f"{r['mean_width']:>6.1f} {r['ms_per_step']:>8.1f} {r['epoch_seconds']:>8.1f} "
                f"{ratio:>7.2f}x"
            )
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"steps": a.steps, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
