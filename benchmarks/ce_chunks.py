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
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(recipe: str, sets: list[str], warmup: int, steps: int) -> dict:
    """Runs in the child process: time ``steps`` train steps after ``warmup``."""
    import time

    from rectk import sharding as shd

    shd.set_cpu_devices(int(os.environ.get("RECTK_BENCH_DEVICES", "0")))
    import jax

    from rectk import recipe as recipe_lib
    from rectk import steps as steps_lib
    from rectk.run import prepare
    from rectk.trainer import setup, train_batches

    cfg = recipe_lib.load(recipe, sets).config
    data, split = prepare(cfg)
    s = setup(cfg, data, split, shd.make_mesh(cfg.mesh.data, cfg.mesh.model))
    batches = list(itertools.islice(train_batches(s, split, epochs=1), warmup + steps))
    fn = steps_lib.jit_train_step(s.bound, s.state_shardings, s.batch_sharding, s.replicated)
    state, key = s.state, jax.random.key(cfg.seed + 1)
    for b in batches[:warmup]:
        state, _ = fn(state, jax.device_put(b, s.batch_sharding), key)
    jax.block_until_ready(state)
    t, c = time.perf_counter(), time.process_time()
    for b in batches[warmup:]:
        state, _ = fn(state, jax.device_put(b, s.batch_sharding), key)
    jax.block_until_ready(state)
    wall = (time.perf_counter() - t) / len(batches[warmup:])
    return {
        "devices": len(jax.devices()),
        "chunk_rows": cfg.loss.rows_per_chunk(s.num_items + 1),
        "ms_per_step": 1000 * wall,
        "cpu_ms_per_step": 1000 * (time.process_time() - c) / len(batches[warmup:]),
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
            env = {**os.environ, "RECTK_BENCH_DEVICES": str(devices)}
            cmd = [sys.executable, __file__, a.recipe, "--warmup", str(a.warmup)]
            cmd += ["--steps", str(a.steps), "--child", json.dumps(sets)]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
            if proc.returncode != 0:
                sys.exit(f"{sets} on {devices or 'all'} devices failed:\n{proc.stderr[-2000:]}")
            row = json.loads(proc.stdout.strip().splitlines()[-1])
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
