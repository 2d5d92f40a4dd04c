"""What the train-step benchmarks share (``ce_chunks.py``, ``group_by_length.py``).

Each setting runs in a fresh process, since the XLA CPU device count is fixed when JAX starts:
the parent calls ``run_child``, which re-runs the benchmark script with ``--child SETS``; the
child builds the recipe's own jitted train step with ``train_step`` and times it with
``seconds_per_step``, then prints its row as JSON on its last line.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_child(script: str, args: list[str], sets: list[str], devices: int, what: str) -> dict:
    """``script ARGS --child SETS`` in a fresh process on ``devices`` XLA CPU devices (0 = one);
    its last line of output, as JSON. Exits naming ``what`` if the child fails."""
    env = {**os.environ, "RECTK_BENCH_DEVICES": str(devices)}
    cmd = [sys.executable, script, *args, "--child", json.dumps(sets)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        sys.exit(f"{what} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def train_step(recipe: str, sets: list[str], steps: int):
    """In the child: the recipe's ``Setup``, the first ``steps`` training batches of an epoch
    (0 = all of them), the jitted train step, and its first state and key."""
    from rectk import sharding as shd

    shd.set_cpu_devices(int(os.environ.get("RECTK_BENCH_DEVICES", "0")))
    import jax

    from rectk import recipe as recipe_lib
    from rectk import steps as steps_lib
    from rectk.setup import create_state, prepare, setup, train_batches

    cfg = recipe_lib.load(recipe, sets).config
    data, split = prepare(cfg)
    s = setup(cfg, data, split, shd.make_mesh(cfg.mesh.data, cfg.mesh.model))
    batches = list(itertools.islice(train_batches(s, split, epochs=1), steps or None))
    fn = steps_lib.jit_train_step(s.bound, s.state_shardings, s.batch_sharding, s.replicated)
    return s, batches, fn, create_state(s), jax.random.key(cfg.seed + 1)


def seconds_per_step(s, fn, state, key, batches) -> tuple[float, float, object]:
    """Wall and process CPU seconds per step over ``batches``, and the state after them."""
    import jax

    t, c = time.perf_counter(), time.process_time()
    for b in batches:
        state, _ = fn(state, jax.device_put(b, s.batch_sharding), key)
    jax.block_until_ready(state)
    n = len(batches)
    return (time.perf_counter() - t) / n, (time.process_time() - c) / n, state
