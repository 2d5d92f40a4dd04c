"""Training time per epoch with and without ``train.group_by_length``, recipe by recipe.

    python benchmarks/group_by_length.py recipes/beauty_sasrec_ce.toml recipes/ml100k_sasrec.toml
    python benchmarks/group_by_length.py recipes/beauty_bert4rec_finetune.toml --steps 200

Short histories fill a ``model.max_len`` window mostly with padding; grouping windows of one
width into batches and cutting each batch to that width skips that work (the loss is
the same: ``tests/test_training.py``). For each recipe and setting, in its own process, this
builds the model and optimiser, draws the epoch's first ``--steps`` batches (all of them with
``--steps 0``), compiles the train step once per window width among them, then times those steps.
Grouped batches come in shuffled order, so their first ``--steps`` are a fair sample of the
epoch. It prints ms per step, the implied seconds per epoch, the mean window width, and the
speed-up of grouping measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _train_steps import run_child, seconds_per_step, train_step


def measure(recipe: str, sets: list[str], steps: int) -> dict:
    """Runs in the child process: time the first ``steps`` train steps of an epoch."""
    import jax

    s, batches, fn, state, key = train_step(recipe, sets, steps)
    widths = [b["input"].shape[1] for b in batches]
    # compile every shape before timing
    firsts = [batches[widths.index(w)] for w in sorted(set(widths))]
    _, _, state = seconds_per_step(s, fn, state, key, firsts)
    wall, _, _ = seconds_per_step(s, fn, state, key, batches)
    return {
        "ms_per_step": 1000 * wall,
        "epoch_seconds": wall * s.steps_per_epoch,
        "steps_per_epoch": s.steps_per_epoch,
        "timed_steps": len(batches),
        "mean_width": sum(widths) / len(widths),
        "max_len": s.cfg.model.max_len,
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
            args = [recipe, "--steps", str(a.steps)]
            row = {"recipe": recipe, "grouped": grouped}
            row.update(run_child(__file__, args, sets, a.devices, f"{recipe} {sets}"))
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
