"""Training end to end: recompilation, resume, NaN handling (in-process, 8 fake devices)."""

import functools
import json
import shutil

import jax
import numpy as np
import pytest

from rectk import recipe as recipe_lib
from rectk import steps
from rectk.checkpoint import Checkpoints
from rectk.data.pipeline import train_dataset
from rectk.errors import TrainingError
from rectk.run import prepare, train_and_evaluate
from rectk.sharding import make_mesh
from rectk.trainer import evaluator, setup, train_batches
from tests.conftest import RECIPES


def tiny_recipe(overrides):
    return recipe_lib.load(RECIPES / "quickstart.toml", overrides)


def test_eight_devices_are_used():
    assert len(jax.devices()) == 8
    assert make_mesh().shape["data"] == 8


def test_second_train_step_does_not_recompile(tiny_overrides):
    cfg = tiny_recipe(tiny_overrides).config
    data, sp = prepare(cfg)
    s = setup(cfg, data, sp, make_mesh())
    step_fn = steps.jit_train_step(s.bound, s.state_shardings, s.batch_sharding, s.replicated)
    ds = iter(train_dataset(sp.train, max_len=cfg.model.max_len, batch_size=64, epochs=1, seed=0))
    key = jax.random.key(0)
    state = s.state
    losses = []
    for _ in range(3):
        batch = {k: jax.device_put(v, s.batch_sharding) for k, v in next(ds).items()}
        state, m = step_fn(state, batch, key)
        losses.append(float(m["loss"]))
    assert step_fn._cache_size() == 1
    assert all(np.isfinite(losses)) and int(state["step"]) == 3


def test_strided_training_scores_only_the_trained_positions(tiny_overrides):
    """With train.stride the loss reads a window's last positions only; same value as all."""
    import dataclasses

    cfg = tiny_recipe([*tiny_overrides, "train.stride=3"]).config
    data, sp = prepare(cfg)
    s = setup(cfg, data, sp, make_mesh())
    assert s.bound.target_positions == 3
    ds = train_dataset(sp.train, max_len=cfg.model.max_len, batch_size=64, epochs=1, seed=0)
    batch = {k: jax.device_put(v, s.batch_sharding) for k, v in next(iter(ds)).items()}
    full = dataclasses.replace(s.bound, target_positions=0)
    key = jax.random.key(0)
    _, sliced = jax.jit(functools.partial(steps.train_step, s.bound))(s.state, batch, key)
    _, whole = jax.jit(functools.partial(steps.train_step, full))(s.state, batch, key)
    # The batch was cut with stride 0: slicing drops real targets, so the losses differ ...
    assert abs(float(sliced["loss"]) - float(whole["loss"])) > 1e-4
    ds = train_dataset(
        sp.train, max_len=cfg.model.max_len, batch_size=64, epochs=1, seed=0, stride=3
    )
    batch = {k: jax.device_put(v, s.batch_sharding) for k, v in next(iter(ds)).items()}
    _, sliced = jax.jit(functools.partial(steps.train_step, s.bound))(s.state, batch, key)
    _, whole = jax.jit(functools.partial(steps.train_step, full))(s.state, batch, key)
    # ... and on strided windows they agree: the context positions carry no target.
    np.testing.assert_allclose(float(sliced["loss"]), float(whole["loss"]), rtol=1e-5)


def test_length_grouped_batches_train_the_loss_of_full_windows(tiny_overrides):
    """train.group_by_length cuts leading padding only: the loss and gradients of a cut batch
    equal those of the same windows at full width (dropout off: its masks follow the shape)."""
    no_dropout = ["model.encoder.dropout=0", "model.encoder.attn_dropout=0"]
    over = [*tiny_overrides, "model.max_len=24", *no_dropout, "train.group_by_length=true"]
    cfg = tiny_recipe(over).config
    data, sp = prepare(cfg)
    s = setup(cfg, data, sp, make_mesh())
    step = jax.jit(functools.partial(steps.train_step, s.bound))
    key = jax.random.key(0)

    def put(batch):
        return {k: jax.device_put(v, s.batch_sharding) for k, v in batch.items()}

    checked = set()
    for batch in train_batches(s, sp, epochs=1):
        width = batch["input"].shape[1]
        if width == 24 or width in checked:
            continue
        full = {
            k: np.pad(v, ((0, 0), (24 - width, 0))) if v.ndim == 2 else v for k, v in batch.items()
        }
        _, cut = step(s.state, put(batch), key)
        _, whole = step(s.state, put(full), key)
        for name in ("loss", "grad_norm"):
            np.testing.assert_allclose(float(cut[name]), float(whole[name]), rtol=1e-5)
        checked.add(width)
    assert checked  # at least one batch was cut


def test_length_grouping_refuses_an_encoder_that_reads_padding(tiny_overrides, monkeypatch):
    from rectk.errors import RectkError
    from rectk_plugins.encoders.sasrec import SASRec

    monkeypatch.setattr(SASRec, "variable_length", False)
    cfg = tiny_recipe([*tiny_overrides, "train.group_by_length=true"]).config
    data, sp = prepare(cfg)
    with pytest.raises(RectkError, match=r"group_by_length.*'sasrec'.*variable_length"):
        setup(cfg, data, sp, make_mesh())


def test_run_writes_record_and_is_reproducible(tiny_overrides, tmp_path):
    r = tiny_recipe(tiny_overrides)
    summary = train_and_evaluate(r, progress=False, echo=lambda *_: None)
    run_dir = tmp_path / "runs" / "quickstart"
    record = json.loads((run_dir / "run.json").read_text())
    assert (
        record["recipe_hash"] == r.hash
        and record["data_fingerprint"] == summary["data_fingerprint"]
    )
    assert recipe_lib.load(run_dir / "recipe.toml").hash == r.hash
    assert (run_dir / "metrics.jsonl").is_file() and list((run_dir / "tensorboard").iterdir())
    assert set(summary["test"]) == {"model", "popularity"}
    # Same recipe, fresh directory: identical results.
    again = tiny_recipe([*tiny_overrides[:-1], f"run_dir={tmp_path / 'again'}"])
    assert (
        train_and_evaluate(again, progress=False, echo=lambda *_: None)["test"] == summary["test"]
    )


def test_eval_batch_size_does_not_change_metrics(tiny_overrides, tmp_path):
    results = []
    for bs in (8, 64):
        r = tiny_recipe(
            [
                *tiny_overrides[:-1],
                f"run_dir={tmp_path / str(bs)}",
                f"eval.batch_size={bs}",
                "train.steps=6",
            ]
        )
        results.append(train_and_evaluate(r, progress=False, echo=lambda *_: None))
    assert results[0]["test"] == results[1]["test"]
    assert results[0]["valid"] == results[1]["valid"]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_overrides, tmp_path):
    base = [*tiny_overrides, "train.checkpoint_every=1", "train.steps=40", "train.eval_every=100"]
    cfg = tiny_recipe(base).config
    _, sp = prepare(cfg)
    ds = train_dataset(sp.train, max_len=cfg.model.max_len, batch_size=64, epochs=10, seed=cfg.seed)
    seen: set[int] = set()
    poison = None
    for n, batch in enumerate(ds):
        targets = set(np.unique(batch["target"]).tolist()) - {0}
        if n >= 3:
            fresh = sorted(targets - seen)
            if fresh:
                poison, poison_step = fresh[0], n + 1
                break
        seen |= targets
    assert poison is not None
    r = recipe_lib.load(
        RECIPES / "quickstart.toml",
        [*base, 'plugins=["tests.nan_plugin"]', f'loss={{type="nan_on_item", item={poison}}}'],
    )
    with pytest.raises(TrainingError) as err:
        train_and_evaluate(r, progress=False, echo=lambda *_: None)
    msg = str(err.value)
    assert f"at step {poison_step}" in msg and f"checkpoint (step {poison_step - 1})" in msg
    ckpt = Checkpoints(tmp_path / "runs" / "quickstart" / "checkpoints", keep=2)
    assert ckpt.latest_step() == poison_step - 1
    ckpt.close()


def test_bfloat16_compute_trains(tiny_overrides):
    r = tiny_recipe([*tiny_overrides, "train.dtype=bfloat16", "train.steps=6"])
    summary = train_and_evaluate(r, progress=False, echo=lambda *_: None)
    assert 0.0 <= summary["test"]["model"]["ndcg@10"] <= 1.0


def test_gradient_accumulation_averages_micro_batches():
    import optax

    from rectk.config import TrainConfig
    from rectk.recipe import from_dict

    tx = steps.make_optimizer(
        from_dict(TrainConfig, {"accumulate": 2, "warmup_steps": 0, "clip_norm": 0.0}), 10
    )
    assert isinstance(tx, optax.GradientTransformation)
    params = {"w": jax.numpy.ones(3)}
    opt = tx.init(params)
    up1, opt = tx.update({"w": jax.numpy.ones(3)}, opt, params)
    assert float(abs(up1["w"]).sum()) == 0.0  # the first micro-batch only accumulates
    up2, opt = tx.update({"w": jax.numpy.ones(3)}, opt, params)
    assert float(abs(up2["w"]).sum()) > 0.0


def test_checkpoints_keep_the_best_across_processes(tmp_path):
    """A resumed run (a new ``Checkpoints`` on the same folder) must not delete the best
    checkpoint an earlier process wrote: Orbax's own BestN policy forgot those metrics."""
    import jax.numpy as jnp

    state = {"w": jnp.ones(3)}
    first = Checkpoints(tmp_path, keep=2)
    for step, value in [(1, 0.1), (2, 0.5), (3, 0.2), (4, 0.3)]:
        first.save(step, state, {"step": step}, metric=value)
    assert first.all_steps() == [2, 3, 4]
    first.close()
    resumed = Checkpoints(tmp_path, keep=2)
    assert resumed.best_step() == 2
    for step, value in [(5, 0.1), (6, None), (7, 0.5)]:  # 7 ties 2: the earlier stays best
        resumed.save(step, state, {"step": step}, metric=value)
    assert resumed.all_steps() == [2, 6, 7]
    assert resumed.restore_meta(2) == {"step": 2}
    _, meta = resumed.restore(2, {"w": jax.ShapeDtypeStruct((3,), jnp.float32)})
    assert meta == {"step": 2}
    resumed.close()


def test_checkpoints_survive_a_run_killed_while_pruning(tmp_path, capsys):
    """Pruning renames a step out of the way before deleting it, so no half-deleted step folder
    is left to be taken for the latest step; one left by an older rectk (here: ``meta`` and
    Orbax's completion file already gone, ``state`` not yet) is moved aside on opening."""
    import jax.numpy as jnp

    state = {"w": jnp.ones(3)}
    ckpt = Checkpoints(tmp_path, keep=2)
    for step in (1, 2, 3, 4):
        ckpt.save(step, state, {"step": step}, metric=None)
    ckpt.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["3", "4"]  # no trash left behind
    shutil.rmtree(tmp_path / "4" / "meta")
    (tmp_path / "4" / "_CHECKPOINT_METADATA").unlink()
    (tmp_path / "_deleted" / "2" / "state").mkdir(parents=True)  # debris of a killed delete
    reopened = Checkpoints(tmp_path, keep=2)
    assert "was an incomplete checkpoint (no meta, _CHECKPOINT_METADATA" in capsys.readouterr().err
    assert reopened.all_steps() == [3] and reopened.latest_step() == 3
    assert reopened.restore_meta(3) == {"step": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["3"]
    reopened.close()


def test_item_bias_adds_a_learned_offset_to_every_score(tiny_overrides):
    """model.item_bias: the full softmax, the gathered targets and negatives, and ranking all
    score ``head(user, item) + bias[item]``, and training learns the biases."""
    import jax.numpy as jnp

    from rectk_plugins.losses.common import negative_scores, target_scores

    cfg = tiny_recipe([*tiny_overrides, "model.item_bias=true", "loss.type=softmax_ce"]).config
    data, sp = prepare(cfg)
    s = setup(cfg, data, sp, make_mesh())
    model = s.bound.model(s.state["params"], s.state["rest"])
    table = model.item_table()
    v = table.shape[0]
    bias = jax.random.normal(jax.random.key(1), (v,))
    model.item_bias[...] = bias
    head, rows = model.scoring(table)
    user = jax.random.normal(jax.random.key(2), (5, table.shape[1]))
    expect = np.asarray(user @ table.T + bias[None])
    np.testing.assert_allclose(np.asarray(head(user, rows)), expect, rtol=1e-5, atol=1e-5)
    target = jnp.array([1, 2, 3, 4, 5])
    negatives = jnp.array([[6, 7], [8, 9], [1, 2], [3, 4], [5, 6]])
    np.testing.assert_allclose(
        np.asarray(target_scores(head, user, rows, target)),
        expect[np.arange(5), np.asarray(target)],
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        np.asarray(negative_scores(head, user, rows, negatives)),
        np.take_along_axis(expect, np.asarray(negatives), axis=1),
        rtol=1e-5,
    )
    loss = cfg.loss(
        head=head, user_nd=user, table_vd=rows, target_n=target, weight_n=jnp.ones(5), key=None
    )
    ce = np.log(np.exp(expect[:, 1:]).sum(1)) - expect[np.arange(5), np.asarray(target)]
    np.testing.assert_allclose(float(loss), ce.mean(), rtol=1e-5)  # padding item 0 excluded

    # Ranking: an item given a bias far above every score comes first for every learner.
    weights = _weights_with_bias(s, jnp.zeros(v).at[7].set(1e4))
    ev = evaluator(s, sp.valid)
    batch = ev._put(ev.batches[0])  # as evaluation places it on the mesh
    _, ids = jax.jit(functools.partial(steps.model_top_k, s.bound, s.num_items, s.chunk, 3))(
        weights, batch
    )
    seen_7 = (np.asarray(batch["seen"]) == 7).any(axis=1)
    assert (np.asarray(ids)[~seen_7, 0] == 7).all() and (~seen_7).any()

    # Training moves the biases (they start at zero).
    ds = train_dataset(sp.train, max_len=cfg.model.max_len, batch_size=64, epochs=1, seed=0)
    batch = {k: jax.device_put(v_, s.batch_sharding) for k, v_ in next(iter(ds)).items()}
    new, _ = jax.jit(functools.partial(steps.train_step, s.bound))(
        s.state, batch, jax.random.key(0)
    )
    learned = np.asarray(s.bound.model(new["params"], new["rest"]).item_bias[...])
    assert np.abs(learned).max() > 0


def _weights_with_bias(s, bias):
    """The train state's weights with the item bias replaced (split as the state is)."""
    from flax import nnx

    from rectk.model import trainable_filter

    model = s.bound.model(s.state["params"], s.state["rest"])
    model.item_bias[...] = bias
    _, params, rest = nnx.split(model, trainable_filter(model), ...)
    return {"params": params, "rest": rest}
