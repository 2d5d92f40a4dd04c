"""Training end to end, in process: recompilation, resume, NaN handling, checkpoints."""

import dataclasses
import functools
import itertools
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
from rectk.setup import create_state, evaluator, prepare, setup, train_batches
from rectk.sharding import make_mesh
from rectk.train import train_and_evaluate
from tests.conftest import RECIPES, assert_same_weights, weights_at


def tiny_recipe(overrides):
    return recipe_lib.load(RECIPES / "quickstart.toml", overrides)


def quiet(*_):
    pass


def test_second_train_step_does_not_recompile(tiny_overrides):
    cfg = tiny_recipe(tiny_overrides).config
    data, sp = prepare(cfg)
    s = setup(cfg, data, sp, make_mesh())
    step_fn = steps.jit_train_step(s.bound, s.state_shardings, s.batch_sharding, s.replicated)
    ds = iter(train_dataset(sp.train, max_len=cfg.model.max_len, batch_size=64, epochs=1, seed=0))
    key = jax.random.key(0)
    state = create_state(s)
    losses = []
    for _ in range(3):
        batch = {k: jax.device_put(v, s.batch_sharding) for k, v in next(ds).items()}
        state, m = step_fn(state, batch, key)
        losses.append(float(m["loss"]))
    assert step_fn._cache_size() == 1
    assert all(np.isfinite(losses)) and int(state["step"]) == 3


def test_strided_training_scores_only_the_trained_positions(tiny_overrides):
    """With train.stride the loss reads a window's last positions only; same value as all."""
    cfg = tiny_recipe([*tiny_overrides, "train.stride=3"]).config
    data, sp = prepare(cfg)
    s = setup(cfg, data, sp, make_mesh())
    assert s.bound.target_positions == 3
    state = create_state(s)
    ds = train_dataset(sp.train, max_len=cfg.model.max_len, batch_size=64, epochs=1, seed=0)
    batch = {k: jax.device_put(v, s.batch_sharding) for k, v in next(iter(ds)).items()}
    full = dataclasses.replace(s.bound, target_positions=0)
    key = jax.random.key(0)
    _, sliced = jax.jit(functools.partial(steps.train_step, s.bound))(state, batch, key)
    _, whole = jax.jit(functools.partial(steps.train_step, full))(state, batch, key)
    # The batch was cut with stride 0: slicing drops real targets, so the losses differ ...
    assert abs(float(sliced["loss"]) - float(whole["loss"])) > 1e-4
    ds = train_dataset(
        sp.train, max_len=cfg.model.max_len, batch_size=64, epochs=1, seed=0, stride=3
    )
    batch = {k: jax.device_put(v, s.batch_sharding) for k, v in next(iter(ds)).items()}
    _, sliced = jax.jit(functools.partial(steps.train_step, s.bound))(state, batch, key)
    _, whole = jax.jit(functools.partial(steps.train_step, full))(state, batch, key)
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
    state = create_state(s)

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
        _, cut = step(state, put(batch), key)
        _, whole = step(state, put(full), key)
        for name in ("loss", "grad_norm"):
            np.testing.assert_allclose(float(cut[name]), float(whole[name]), rtol=1e-5)
        checked.add(width)
    assert checked  # at least one batch was cut


def test_length_grouping_refuses_an_encoder_that_reads_padding(tiny_overrides, monkeypatch):
    from rectk.contracts import EncoderTraits
    from rectk.errors import RectkError
    from rectk_plugins.encoders.sasrec import SASRecConfig

    monkeypatch.setattr(SASRecConfig, "traits", EncoderTraits(variable_length=False))
    cfg = tiny_recipe([*tiny_overrides, "train.group_by_length=true"]).config
    data, sp = prepare(cfg)
    with pytest.raises(RectkError, match=r"group_by_length.*'sasrec'.*variable_length"):
        setup(cfg, data, sp, make_mesh())


def test_a_run_directory_records_recipe_data_versions_and_metrics(tiny_run):
    record = json.loads((tiny_run.path / "run.json").read_text())
    recipe = tiny_recipe(list(tiny_run.overrides))
    assert record["recipe_hash"] == recipe.hash == tiny_run.results["recipe_hash"]
    assert record["data_fingerprint"] == tiny_run.results["data_fingerprint"]
    assert {"rectk", "jax", "jaxlib", "flax", "optax", "orbax", "grain"} <= set(record)
    assert recipe_lib.load(tiny_run.path / "recipe.toml").hash == recipe.hash
    assert set(tiny_run.results["test"]) == {"model", "popularity"}
    log = [json.loads(line) for line in (tiny_run.path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in log if "train/loss" in r]
    assert [r["step"] for r in train] == list(range(1, 13))  # train.log_every = 1
    # the learning rate of each step's update: warm-up from 0 over 2 updates, then decay
    lr = [r["train/lr"] for r in train]
    assert lr[0] == 0.0 and lr[2] == pytest.approx(recipe.config.train.lr) and lr[-1] < lr[2]
    # TensorBoard tags are the metrics.jsonl keys themselves ("valid/ndcg@10")
    keys = {k for r in log for k in r if k != "step"}
    assert "valid/ndcg@10" in keys and _tensorboard_tags(tiny_run.path / "tensorboard") == keys


def _tensorboard_tags(folder) -> set[str]:
    """The scalar tags of the event files in ``folder`` (TFRecord framing, read directly)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    tags = set()
    for path in folder.iterdir():
        data, i = path.read_bytes(), 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            event = Event.FromString(data[i + 12 : i + 12 + n])
            tags |= {v.tag for v in event.summary.value}
            i += 12 + n + 4
    return tags


class _Stop(Exception):
    """Stands for a run interrupted between two steps."""


def test_a_stopped_run_restarted_ends_as_an_uninterrupted_one(tiny_run, tmp_path, monkeypatch):
    """Stopped after step 9 (its last checkpoint: the validation at step 6), the same recipe
    resumes at step 6 and ends exactly as the uninterrupted run: the same metrics.jsonl line
    for line, the same results and the same final parameters. (A real SIGKILL, in another
    process: tests/test_resume_and_devices.py.)"""
    overrides = [o for o in tiny_run.overrides if not o.startswith("run_dir=")]
    recipe = tiny_recipe([*overrides, f"run_dir={tmp_path}"])
    jit_train_step = steps.jit_train_step

    def stopping_after(n):
        def jit(*args, **kwargs):
            step_fn, calls = jit_train_step(*args, **kwargs), []

            def step(state, batch, key):
                calls.append(1)
                if len(calls) > n:
                    raise _Stop
                return step_fn(state, batch, key)

            return step

        return jit

    with monkeypatch.context() as m:
        m.setattr(steps, "jit_train_step", stopping_after(9))
        with pytest.raises(_Stop):
            train_and_evaluate(recipe, progress=False, echo=quiet)
    run = tmp_path / "quickstart"
    with_checkpoints = Checkpoints(run / "checkpoints", keep=2)
    assert with_checkpoints.all_steps() == [6]
    with_checkpoints.close()
    said = []
    resumed = train_and_evaluate(recipe, progress=False, echo=said.append)
    assert "resuming from the checkpoint at step 6" in said

    assert (run / "metrics.jsonl").read_text() == (tiny_run.path / "metrics.jsonl").read_text()
    for key in ("best_step", "last_step", "stopped", "valid", "test"):
        assert resumed[key] == tiny_run.results[key], key
    assert_same_weights(weights_at(run, 12), weights_at(tiny_run.path, 12))


@pytest.mark.parametrize("fetch", ["every step", "every 3rd step"])
def test_a_nan_loss_stops_the_run_naming_its_step_and_the_last_good_checkpoint(
    tiny_overrides, tmp_path, fetch
):
    """The loss is read back at log, validation, checkpoint and epoch-end steps only; the
    error still names the first step whose loss was not finite, and no checkpoint is kept
    after it."""
    every = 1 if fetch == "every step" else 3
    base = [*tiny_overrides, f"train.checkpoint_every={every}", "train.steps=40"]
    base += ["train.eval_every=100", "train.log_every=100"]
    cfg = tiny_recipe(base).config
    _, sp = prepare(cfg)
    ds = train_dataset(sp.train, max_len=cfg.model.max_len, batch_size=64, epochs=10, seed=cfg.seed)
    seen: set[int] = set()
    poison = None
    for n, batch in enumerate(ds):
        targets = set(np.unique(batch["target"]).tolist()) - {0}
        if n >= 3 and (every == 1 or (n + 1) % every):  # every 3rd: not read back at once
            fresh = sorted(targets - seen)
            if fresh:
                poison, poison_step = fresh[0], n + 1
                break
        seen |= targets
    assert poison is not None
    r = tiny_recipe(
        [*base, 'plugins=["tests.nan_plugin"]', f'loss={{type="nan_on_item", item={poison}}}']
    )
    with pytest.raises(TrainingError) as err:
        train_and_evaluate(r, progress=False, echo=quiet)
    kept = (poison_step - 1) // every * every
    msg = str(err.value)
    assert f"at step {poison_step};" in msg and f"checkpoint (step {kept})" in msg
    ckpt = Checkpoints(tmp_path / "runs" / "quickstart" / "checkpoints", keep=2)
    assert ckpt.latest_step() == kept
    ckpt.close()


def test_bfloat16_compute_trains_float32_weights(tiny_overrides):
    cfg = tiny_recipe([*tiny_overrides, "train.dtype=bfloat16"]).config
    data, sp = prepare(cfg)
    s = setup(cfg, data, sp, make_mesh())
    step_fn = steps.jit_train_step(s.bound, s.state_shardings, s.batch_sharding, s.replicated)
    state = create_state(s)
    for batch in itertools.islice(train_batches(s, sp), 3):
        state, m = step_fn(state, jax.device_put(batch, s.batch_sharding), jax.random.key(0))
        assert np.isfinite(float(m["loss"]))
    assert {x.dtype for x in jax.tree.leaves(state["params"])} == {np.dtype("float32")}


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
    state = create_state(s)
    model = s.bound.model(state["params"], state["rest"])
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
    weights = _weights_with_bias(s, state, jnp.zeros(v).at[7].set(1e4))
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
    new, _ = jax.jit(functools.partial(steps.train_step, s.bound))(state, batch, jax.random.key(0))
    learned = np.asarray(s.bound.model(new["params"], new["rest"]).item_bias[...])
    assert np.abs(learned).max() > 0


def _weights_with_bias(s, state, bias):
    """The train state's weights with the item bias replaced (split as the state is)."""
    from flax import nnx

    from rectk.model import trainable_filter

    model = s.bound.model(state["params"], state["rest"])
    model.item_bias[...] = bias
    _, params, rest = nnx.split(model, trainable_filter(model), ...)
    return {"params": params, "rest": rest}
