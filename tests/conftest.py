"""Test set-up: 8 fake CPU devices (set before JAX is imported) and paths to shared data."""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

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


@pytest.fixture
def tiny_overrides(tmp_path):
    """Overrides that make the quickstart recipe tiny, writing runs under tmp_path."""
    return [*TINY, f"run_dir={tmp_path / 'runs'}"]
