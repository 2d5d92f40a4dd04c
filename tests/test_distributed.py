"""Many processes on JAX's distributed runtime: two CPU processes on this machine train what one
process with two devices trains, and one process restores their checkpoints."""

import json
import socket
import subprocess

import numpy as np
import pytest

from rectk import recipe as recipe_lib
from rectk.data.pipeline import train_dataset
from rectk.data.split import Sequences
from rectk.train import train_and_evaluate
from tests.conftest import (
    RECIPES,
    ROOT,
    TINY_RUN,
    assert_same_weights,
    train_command,
    train_losses,
    weights_at,
)


def test_the_processes_batches_side_by_side_are_the_one_process_batches():
    rng = np.random.default_rng(0)
    ptr = np.concatenate([[0], np.cumsum(rng.integers(0, 30, 40))])
    seqs = Sequences(ptr, rng.integers(1, 100, ptr[-1]).astype(np.int32))
    kw: dict = dict(max_len=10, batch_size=16, epochs=2, seed=3)
    whole = list(train_dataset(seqs, **kw))
    parts = [list(train_dataset(seqs, **kw, process_index=p, process_count=2)) for p in (0, 1)]
    for b, p0, p1 in zip(whole, *parts, strict=True):
        for k in b:
            np.testing.assert_array_equal(np.concatenate([p0[k], p1[k]]), b[k])


_D = ["--distributed", "--coordinator"]


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        ([*_D, "localhost:1"], "needs --num-processes, --process-id"),
        (["--process-id", "0"], "--process-id: only with --distributed"),
        ([*_D, "h:1", "--num-processes", "2", "--process-id", "2"], "must lie in 0..1"),
        ([*_D, "host", "--num-processes", "2", "--process-id", "0"], "must be HOST:PORT"),
    ],
)
def test_distributed_options_are_all_three_or_none(flags, says, capsys):
    from rectk.cli import main

    assert main(["train", str(RECIPES / "quickstart.toml"), *flags]) == 2
    assert says in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _train(overrides, *, cpu_devices=0, distributed=()) -> subprocess.Popen:
    """``rectk train`` of the quickstart recipe in another process."""
    return subprocess.Popen(
        [*train_command(overrides, cpu_devices=cpu_devices), *distributed],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_two_processes_train_as_one_process_with_two_devices(tmp_path):
    """Two processes of one device each (gloo collectives on the CPU) against one process of
    two devices: the same global batches, so the same losses and test metrics; only process 0
    writes the run directory's files; a run in this (one-device) process restores the
    two-process checkpoints and tests the same weights to the same metrics."""
    port = _free_port()
    two, one = tmp_path / "two", tmp_path / "one"
    flags = ["--distributed", "--coordinator", f"localhost:{port}", "--num-processes", "2"]
    procs = [
        _train([*TINY_RUN, f"run_dir={two}"], distributed=[*flags, "--process-id", str(i)])
        for i in (0, 1)
    ]
    procs.append(_train([*TINY_RUN, f"run_dir={one}"], cpu_devices=2))
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=600))
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert "on 2 data-parallel device(s)" in outs[0][0]
    # process 1 prints nothing (gloo's own note aside)
    assert [ln for ln in outs[1][0].splitlines() if not ln.startswith("[Gloo]")] == []

    run2, run1 = two / "quickstart", one / "quickstart"
    assert len(train_losses(run2)) == 12
    np.testing.assert_allclose(train_losses(run2), train_losses(run1), rtol=1e-5)
    res2 = json.loads((run2 / "results.json").read_text())
    res1 = json.loads((run1 / "results.json").read_text())
    assert res2["best_step"] == res1["best_step"]
    for scorer in ("model", "popularity"):
        for k, v in res1["test"][scorer].items():
            assert res2["test"][scorer][k] == pytest.approx(v, abs=1e-6), k

    steps = sorted(int(p.name) for p in (run2 / "checkpoints").iterdir() if p.name.isdigit())
    assert steps and steps[-1] == 12
    a = weights_at(run2, 12)
    np.testing.assert_allclose(
        np.concatenate([np.ravel(x) for x in _leaves(a)]),
        np.concatenate([np.ravel(x) for x in _leaves(weights_at(run1, 12))]),
        rtol=1e-5,
        atol=1e-6,
    )
    # The same command in one process: the finished run's checkpoint restored, its best
    # weights tested again.
    recipe = recipe_lib.load(RECIPES / "quickstart.toml", [*TINY_RUN, f"run_dir={two}"])
    again = train_and_evaluate(recipe, progress=False, echo=lambda *_: None)
    assert again["last_step"] == 12 and again["best_step"] == res2["best_step"]
    for k, v in res2["test"]["model"].items():
        assert again["test"]["model"][k] == pytest.approx(v, abs=2e-3), k
    assert_same_weights(a, weights_at(run2, 12))


def _leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]
