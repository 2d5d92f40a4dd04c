"""Whole runs in fresh processes: 1 vs 8 devices, and SIGKILL then resume."""

import functools
import json
import operator
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import RECIPES, ROOT, TINY

pytestmark = pytest.mark.slow


def command(run_dir, *extra):
    sets = [*TINY, "train.log_every=1", f"run_dir={run_dir}", *extra]
    return [
        sys.executable,
        "-m",
        "rectk.cli",
        "train",
        str(RECIPES / "quickstart.toml"),
        "--no-progress",
        *functools.reduce(operator.iadd, (["--set", s] for s in sets), []),
    ]


def env(devices):
    return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def run(run_dir, devices=8, *extra):
    proc = subprocess.run(
        command(run_dir, *extra),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env(devices),
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return read(run_dir)


def read(run_dir):
    d = run_dir / "quickstart"
    results = json.loads((d / "results.json").read_text())
    log = [json.loads(ln) for ln in (d / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in log if "train/loss" in r]
    return results, losses


def test_one_and_eight_devices_give_the_same_run(tmp_path):
    r1, l1 = run(tmp_path / "one", 1)
    r8, l8 = run(tmp_path / "eight", 8)
    assert len(l1) == len(l8) == 12
    np.testing.assert_allclose(l1, l8, rtol=2e-4)
    for scorer in ("model", "popularity"):
        for k, v in r1["test"][scorer].items():
            assert r8["test"][scorer][k] == pytest.approx(v, abs=2e-3), k


@pytest.mark.parametrize("grouping", ["false", "true"])
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, grouping):
    extra = ("train.steps=30", "train.checkpoint_every=3", "train.eval_every=10")
    extra += (f"train.group_by_length={grouping}",)  # length-grouped batches resume as well
    clean_results, clean_losses = run(tmp_path / "clean", 8, *extra)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        command(killed, *extra),
        cwd=ROOT,
        env=env(8),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ckpts = killed / "quickstart" / "checkpoints"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        steps = [int(p.name) for p in ckpts.glob("*") if p.name.isdigit()] if ckpts.exists() else []
        if steps and max(steps) >= 12:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = [int(p.name) for p in ckpts.glob("*") if p.name.isdigit()]
    assert max(partial) < 30

    resumed_results, resumed_losses = run(killed, 8, *extra)
    assert resumed_losses == clean_losses
    assert resumed_results["test"] == clean_results["test"]
    assert resumed_results["valid"] == clean_results["valid"]
    assert resumed_results["best_step"] == clean_results["best_step"]
    # Final parameters are identical too.
    import orbax.checkpoint as ocp

    def final_params(d):
        with ocp.PyTreeCheckpointer() as c:
            return c.restore(d / "quickstart" / "checkpoints" / "30" / "state")["params"]

    import jax

    a, b = final_params(tmp_path / "clean"), final_params(killed)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=False):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
