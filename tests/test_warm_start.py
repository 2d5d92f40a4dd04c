"""Pre-train, then fine-tune: ``train.init_from`` starts a run from another run's weights."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from rectk import recipe as recipe_lib
from rectk import sharding as shd
from rectk.errors import RectkError
from rectk.predict import load_run
from rectk.rundir import RunDir
from rectk.setup import create_state, prepare, setup
from rectk.train import train_and_evaluate
from rectk.warm_start import warm_start
from tests.conftest import MASKED_ITEM_RUN, RECIPES

# The shared masked-item run's recipe, writing elsewhere as "fine" (its source named by path).
FINE = [o for o in MASKED_ITEM_RUN if o != "name=pre"] + ["name=fine"]


def _recipe(overrides):
    return recipe_lib.load(RECIPES / "quickstart.toml", overrides)


def test_fine_tuning_starts_from_the_pretrained_best_weights(masked_item_run, tmp_path):
    finetune = [
        *FINE,
        f"run_dir={tmp_path}",
        f"train.init_from={masked_item_run.path}",
        "task.mask_last_prob=1.0",
        "train.stride=1",
    ]
    cfg = _recipe(finetune).config
    data, sp = prepare(cfg)
    s = setup(cfg, data, sp, shd.make_mesh(-1, 1))
    fresh = create_state(s)
    before = jax.tree.leaves(fresh["params"])
    state, info = warm_start(cfg, fresh, data.interactions.fingerprint())
    source = load_run(masked_item_run.path)
    assert info["step"] == source.step and info["fresh"] == [] and info["unused"] == []
    got, want = jax.tree.leaves(state["params"]), jax.tree.leaves(source.weights["params"])
    assert len(info["copied"]) == len(got) == len(want)
    for g, w, b in zip(got, want, before, strict=True):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))
        assert g.sharding == b.sharding  # placed as this run's state is
    assert any(
        not np.array_equal(np.asarray(g), np.asarray(b)) for g, b in zip(got, before, strict=True)
    )

    summary = train_and_evaluate(_recipe(finetune), progress=False, echo=lambda *_: None)
    # Validated before its first step: the starting weights score as the source's best did,
    # and remain the best unless fine-tuning beats them.
    first = next(
        json.loads(line)
        for line in (tmp_path / "fine" / "metrics.jsonl").read_text().splitlines()
        if "valid/ndcg@10" in line
    )
    assert first["step"] == 0
    pre = masked_item_run.results
    assert first["valid/ndcg@10"] == pytest.approx(pre["valid"]["ndcg@10"], abs=1e-6)
    assert summary["valid"]["ndcg@10"] >= first["valid/ndcg@10"]
    pre_hash = RunDir(masked_item_run.path).record()["recipe_hash"]
    assert summary["init_from"]["recipe_hash"] == pre_hash  # results name the source run
    assert summary["init_from"]["step"] == source.step
    assert np.isfinite(summary["test"]["model"]["ndcg@10"])


@pytest.mark.parametrize(
    "change,message",
    [
        (["train.init_from=nowhere"], "not a rectk run directory"),
        (["train.init_from=SOURCE", "split.type=temporal"], "another split"),
        (["train.init_from=SOURCE", "model.dim=8"], "differ in shape"),
        (["train.init_from=fine"], "names this run itself"),
    ],
)
def test_init_from_refuses_what_it_cannot_use(masked_item_run, tmp_path, change, message):
    change = [c.replace("SOURCE", str(masked_item_run.path)) for c in change]
    r = _recipe([*FINE, f"run_dir={tmp_path}", *change])
    with pytest.raises(RectkError, match=message):
        train_and_evaluate(r, progress=False, echo=lambda *_: None)
    # nothing written: the corrected recipe can start this run
    assert not (Path(r.config.run_dir) / "fine").exists()
