"""The loop tests the weights of its own best validation (``train.min_delta``'s), and the
checkpoints never prune that step for a later near miss with a higher value."""

from __future__ import annotations

import grain
import jax
import jax.numpy as jnp
import numpy as np

from rectk.checkpoint import Checkpoints
from rectk.config import TrainConfig
from rectk.loop import Job, fit
from rectk.rundir import RunDir

# validation values after steps 1..5: step 2 is a best by more than min_delta = 0.001; steps
# 3 and 4 are higher but within 0.001 of it (near misses); patience 3 stops after step 5
VALUES = [0.50, 0.52, 0.5205, 0.5209, 0.5100]


def test_the_min_delta_best_is_tested_and_kept(tmp_path):
    state = {
        "params": {"w": jnp.zeros(())},
        "opt": {},
        "step": jnp.zeros((), jnp.int32),
        "rest": {},
    }
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), state)

    @jax.jit
    def step_fn(state, batch, key):
        new = dict(state, params={"w": state["params"]["w"] + 1.0}, step=state["step"] + 1)
        return new, {"loss": jnp.float32(1.0), "grad_norm": jnp.float32(0.0)}

    def validate(weights):  # the weights count the steps trained
        return {"auc": VALUES[int(weights["params"]["w"]) - 1]}

    job = Job(
        abstract_state=abstract,
        step_fn=step_fn,
        batches=grain.MapDataset.source(np.arange(8)).map(lambda i: {"x": np.int32(i)}),
        put=lambda b: b,
        validate=validate,
        schedule=lambda s: 0.0,
        total_steps=5,
        steps_per_epoch=1,
    )
    tc = TrainConfig(patience=3, min_delta=0.001, keep_checkpoints=1, log_every=1)
    tested = []
    fitted = fit(
        job,
        tc,
        RunDir(tmp_path / "run"),
        recipe_hash="h",
        seed=0,
        monitor="auc",
        state=state,
        test=lambda w: (tested.append(float(w["params"]["w"])) or {}, None),
        progress=False,
        say=lambda *a: None,
    )
    assert fitted.loop.best_step == 2 and fitted.loop.stopped == "early_stopping"
    assert tested == [2.0]  # the weights after step 2, restored from its checkpoint
    ckpt = Checkpoints(tmp_path / "run" / "checkpoints", keep=1, repair=False)
    try:
        assert ckpt.best_step() == 2 and 2 in ckpt.all_steps()
    finally:
        ckpt.close()
