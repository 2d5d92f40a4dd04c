"""Train-step time of full-softmax CE by chunk size (and XLA CPU device count) for one recipe.

    python benchmarks/ce_chunks.py recipes/beauty_sasrec_ce.toml --chunks 2048 1024 512 256 0
    python benchmarks/ce_chunks.py recipes/beauty_sasrec_ce.toml --devices 1 2 --chunks 2048 0

Each (devices, chunk_rows) pair runs in its own process (the device count is fixed when JAX
starts): it builds the recipe's model and optimiser, jits the train step, runs ``--warmup``
steps, then times ``--steps`` steps on the recipe's own first training batches (seeded). It
prints ms per step, process CPU ms per step, the implied seconds per epoch, and the ratio to the
first configuration listed. ``chunk_rows = 0`` is the automatic size (see ``SoftmaxCE``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _train_steps import run_child, seconds_per_step, train_step


def measure(recipe: str, sets: list[str], warmup: int, steps: int) -> dict:
    """Runs in the child process: time ``steps`` train steps after ``warmup``."""
    import jax

    s, batches, fn, state, key = train_step(recipe, sets, warmup + steps)
    _, _, state = seconds_per_step(s, fn, state, key, batches[:warmup])
    wall, cpu, _ = seconds_per_step(s, fn, state, key, batches[warmup:])
    return {
        "devices": len(jax.devices()),
        "chunk_rows": s.cfg.loss.rows_per_chunk(s.num_items + 1),
        "ms_per_step": 1000 * wall,
        "cpu_ms_per_step": 1000 * cpu,
        "epoch_seconds": wall * s.steps_per_epoch,
        "steps_per_epoch": s.steps_per_epoch,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe")
    p.add_argument("--chunks", type=int, nargs="+", default=[2048, 1024, 512, 256, 0])
    p.add_argument(
        "--devices",
        type=int,
        nargs="+",
        default=[0],
        help="XLA CPU devices; 0 = one (rectk's default)",
    )
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--json", type=Path)
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(measure(a.recipe, json.loads(a.child), a.warmup, a.steps)))
        return
    rows = []
    for devices in a.devices:
        for chunk in a.chunks:
            sets = [f"loss.chunk_rows={chunk}"]
            args = [a.recipe, "--warmup", str(a.warmup), "--steps", str(a.steps)]
            row = run_child(__file__, args, sets, devices, f"{sets} on {devices or 1} device(s)")
            row["asked_chunk_rows"] = chunk
            rows.append(row)
            print(f"  measured {row}", file=sys.stderr, flush=True)
    ref = rows[0]["ms_per_step"]
    print(f"{a.recipe}: {a.steps} timed steps after {a.warmup} warm-up steps")
    print(f"{'devices':>8} {'chunk_rows':>12} {'ms/step':>9} {'cpu ms/step':>12} {'s/epoch':>8}")
    for r in rows:
        asked = "auto " + str(r["chunk_rows"]) if r["asked_chunk_rows"] == 0 else r["chunk_rows"]
        print(
            f"{r['devices']:>8} {asked!s:>12} {r['ms_per_step']:>9.0f} "
            f"{r['cpu_ms_per_step']:>12.0f} {r['epoch_seconds']:>8.1f}"
            f"   {ref / r['ms_per_step']:.2f}x vs first"
        )
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"recipe": a.recipe, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
