"""Runs in other processes: eight CPU devices against one, and a run killed by SIGKILL."""

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from rectk import recipe as recipe_lib
from rectk.train import train_and_evaluate
from tests.conftest import (
    RECIPES,
    ROOT,
    TINY,
    assert_same_weights,
    train_command,
    train_losses,
    weights_at,
)

pytestmark = pytest.mark.slow


def test_eight_devices_train_the_run_one_device_trains(tiny_run, tmp_path):
    """Data parallelism over 8 CPU devices: the same losses and metrics as the shared run on
    one device, within float tolerance (the batch's reductions are split 8 ways)."""
    overrides = [o for o in tiny_run.overrides if not o.startswith("run_dir=")]
    proc = subprocess.run(
        train_command([*overrides, f"run_dir={tmp_path}"], cpu_devices=8),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on 8 data-parallel device(s)" in proc.stdout
    run = tmp_path / "quickstart"
    one, eight = train_losses(tiny_run.path), train_losses(run)
    assert len(one) == len(eight) == 12
    np.testing.assert_allclose(eight, one, rtol=2e-4)
    results = json.loads((run / "results.json").read_text())
    for scorer in ("model", "popularity"):
        for k, v in tiny_run.results["test"][scorer].items():
            assert results["test"][scorer][k] == pytest.approx(v, abs=2e-3), k


def test_a_run_killed_by_sigkill_resumes_to_the_uninterrupted_end(tmp_path):
    """Killed at any point (here once a checkpoint at step 12 or later exists; length-grouped
    batches, whose iterator resumes too), the same recipe continues from its last complete
    checkpoint and ends exactly as a run never killed: losses, results, final parameters."""
    overrides = [
        *TINY,
        "train.steps=30",
        "train.checkpoint_every=3",
        "train.eval_every=10",
        "train.log_every=1",
        "train.group_by_length=true",
    ]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        train_command([*overrides, f"run_dir={killed}"]),
        cwd=ROOT,
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
    assert max(int(p.name) for p in ckpts.glob("*") if p.name.isdigit()) < 30

    def run(run_dir):
        recipe = recipe_lib.load(RECIPES / "quickstart.toml", [*overrides, f"run_dir={run_dir}"])
        return train_and_evaluate(recipe, progress=False, echo=lambda *_: None)

    resumed, clean = run(killed), run(tmp_path / "clean")
    assert train_losses(killed / "quickstart") == train_losses(tmp_path / "clean" / "quickstart")
    for key in ("best_step", "stopped", "valid", "test"):
        assert resumed[key] == clean[key], key
    assert_same_weights(
        weights_at(killed / "quickstart", 30), weights_at(tmp_path / "clean" / "quickstart", 30)
    )
