"""Test set-up: paths to shared data, the overrides that make a recipe tiny, and tiny runs
finished once per session for the tests that only read them.

JAX runs on one CPU device here: only the tests of sharding start processes with several
(``rectk --cpu-devices 8``). Tests compile with most XLA optimisations off, as Flax's example
tests do: tiny runs spend most of their time compiling (processes the tests start inherit that
through the environment). A test whose run is long enough for optimised code to pay off asks
for ``full_optimisations``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import contextlib
import dataclasses
import io
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
RECIPES = ROOT / "recipes"


def shared(*parts: str) -> Path:
    """A path under ../shared/data, or a skip saying it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs ../shared/data/{'/'.join(parts)} (absent on this machine)")
    return path


TINY = [
    "train.steps=12",
    "train.batch_size=64",
    "train.eval_every=6",
    "train.warmup_steps=2",
    "data.num_learners=200",
    "model.dim=16",
    "model.max_len=10",
    "model.encoder.layers=1",
    "eval.batch_size=64",
    "recommend.show_users=1",
]

# The tiny quickstart run the session shares (``tiny_run``): every step's loss is logged.
TINY_RUN = [*TINY, "train.log_every=1"]
# BERT4Rec pre-trained by masked items (``masked_item_run``), named as a source of fine-tuning.
MASKED_ITEM_RUN = [
    *TINY,
    "model.encoder.type=bert4rec",
    "task.type=masked_item",
    "train.steps=6",
    "name=pre",
]


@pytest.fixture
def full_optimisations():
    """XLA's optimisations back on for one test (a real run: they halve its time)."""
    import jax

    before = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", False)
    yield
    jax.config.update("jax_disable_most_optimizations", before)


@pytest.fixture
def tiny_overrides(tmp_path):
    """Overrides that make the quickstart recipe tiny, writing runs under tmp_path."""
    return [*TINY, f"run_dir={tmp_path / 'runs'}"]


def set_args(overrides: list[str]) -> list[str]:
    """``--set`` arguments of the command line, one per override."""
    return [arg for o in overrides for arg in ("--set", o)]


def train_command(overrides: list[str], *, cpu_devices: int = 0) -> list[str]:
    """``rectk train`` of the quickstart recipe with ``overrides``, as a user would run it."""
    return [
        sys.executable,
        "-m",
        "rectk.cli",
        "--cpu-devices",
        str(cpu_devices),
        "train",
        str(RECIPES / "quickstart.toml"),
        *set_args(overrides),
    ]


def train_losses(run_dir: Path) -> list[float]:
    """The training losses a run logged, step by step (``metrics.jsonl``)."""
    log = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["train/loss"] for r in log if "train/loss" in r]


@dataclasses.dataclass(frozen=True)
class FinishedRun:
    """A finished run that tests read and never write."""

    path: Path  # its run directory
    overrides: tuple[str, ...]  # of recipes/quickstart.toml, run_dir included
    results: dict  # its results.json
    stdout: str = ""  # what ``rectk run`` printed
    stderr: str = ""


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> FinishedRun:
    """``rectk run recipes/quickstart.toml`` with ``TINY_RUN``, in this process (output is
    not a terminal, so no progress bar)."""
    from rectk.cli import main

    overrides = [*TINY_RUN, f"run_dir={tmp_path_factory.mktemp('tiny')}"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["run", str(RECIPES / "quickstart.toml"), *set_args(overrides)])
    assert code == 0, err.getvalue()[-3000:]
    return _finished(overrides, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def masked_item_run(tmp_path_factory) -> FinishedRun:
    """BERT4Rec trained by masked items (``MASKED_ITEM_RUN``): the source of fine-tuning."""
    from rectk import recipe as recipe_lib
    from rectk.train import train_and_evaluate

    overrides = [*MASKED_ITEM_RUN, f"run_dir={tmp_path_factory.mktemp('masked')}"]
    recipe = recipe_lib.load(RECIPES / "quickstart.toml", overrides)
    train_and_evaluate(recipe, progress=False, echo=lambda *_: None)
    return _finished(overrides)


def _finished(overrides: list[str], stdout: str = "", stderr: str = "") -> FinishedRun:
    from rectk import recipe as recipe_lib
    from rectk.rundir import RunDir

    path = RunDir.of(recipe_lib.load(RECIPES / "quickstart.toml", overrides).config).path
    results = json.loads((path / "results.json").read_text())
    return FinishedRun(path, tuple(overrides), results, stdout, stderr)


def weights_at(run_dir: Path, step: int):
    """``{"params", "rest"}`` as saved at ``step`` of the run in ``run_dir``."""
    from rectk import recipe as recipe_lib
    from rectk.checkpoint import Checkpoints
    from rectk.setup import prepare, setup, weights_of
    from rectk.sharding import make_mesh

    cfg = recipe_lib.load(run_dir / "recipe.toml").config
    s = setup(cfg, *prepare(cfg), make_mesh())
    ckpt = Checkpoints(run_dir / "checkpoints", keep=cfg.train.keep_checkpoints)
    try:
        return ckpt.restore_weights(step, weights_of(s.abstract_state))
    finally:
        ckpt.close()


def assert_same_weights(a, b) -> None:
    """Exactly equal arrays, leaf by leaf."""
    import jax
    import numpy as np

    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
