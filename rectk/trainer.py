"""The training loop, top to bottom: set up, (resume), train, validate, checkpoint, stop.

Each step's randomness is ``fold_in(key, step)``, the data iterator's position is saved with
every checkpoint, and metrics logged after the restored step are dropped on resume: a run killed
at any point and restarted with the same command ends exactly where an uninterrupted run ends.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding

from rectk import sharding as shd
from rectk import steps
from rectk.checkpoint import Checkpoints, abstract_like
from rectk.compiler import jit_inference
from rectk.config import RunConfig
from rectk.data.pipeline import train_dataset, training_windows
from rectk.data.split import Split
from rectk.data.types import Dataset
from rectk.errors import RectkError, TrainingError
from rectk.evaluate import Evaluator, item_chunk
from rectk.logging import MetricsLog
from rectk.model import build_model, trainable_filter
from rectk.recipe import plugin_name


@dataclasses.dataclass
class Setup:
    """Everything the steps and the loop share, built once."""

    cfg: RunConfig
    mesh: Any
    bound: steps.Bound
    state: dict
    state_shardings: Any
    batch_sharding: Any
    replicated: Any
    steps_per_epoch: int
    total_steps: int
    epochs: int
    num_items: int
    chunk: int
    trim_windows: bool = False  # evaluation may cut windows to each batch's longest history
    ranker: Any = None  # the jitted model ranker over all items, built once (rank_fn)


def setup(cfg: RunConfig, data: Dataset, split: Split, mesh) -> Setup:
    """Model, optimiser and sharded state: shape first, then shard, then create."""
    inter = data.interactions
    n_data = mesh.shape["data"]
    if cfg.train.batch_size % (n_data * jax.process_count()):
        raise RectkError(
            f"train.batch_size = {cfg.train.batch_size} must be divisible by the {n_data} "
            f"data-parallel devices (mesh.data); choose a multiple of {n_data}"
        )
    windows = len(training_windows(split.train, cfg.model.max_len, cfg.train.stride))
    steps_per_epoch = max(1, math.ceil(windows / cfg.train.batch_size))
    total = cfg.train.steps or cfg.train.epochs * steps_per_epoch
    epochs = math.ceil(total / steps_per_epoch)

    def make():
        return build_model(
            cfg.model,
            vocab_size=inter.vocab_size,
            num_users=inter.num_users + 1,
            catalogue=data.catalogue,
            rngs=nnx.Rngs(params=jax.random.key(cfg.seed)),
            mask_token=uses_mask_token(cfg),
        )

    abstract = nnx.eval_shape(make)
    if cfg.train.group_by_length and not abstract.variable_length:
        raise RectkError(
            f"train.group_by_length cuts windows to their batch's longest history, but encoder "
            f"{plugin_name(cfg.model.encoder)!r} does not declare that its states ignore "
            "leading padding (variable_length); set train.group_by_length = false"
        )
    trainable = trainable_filter(abstract)
    graphdef, abs_params, abs_rest = nnx.split(abstract, trainable, ...)  # type: ignore[misc]
    param_sh = shd.state_shardings(abs_params, mesh, cfg.mesh.rules)
    rest_sh = shd.state_shardings(abs_rest, mesh, cfg.mesh.rules)

    def init():
        _, params, rest = nnx.split(make(), trainable, ...)
        return params, rest

    params, rest = jax.jit(init, out_shardings=(param_sh, rest_sh))()
    tx = steps.make_optimizer(cfg.train, total)
    opt = jax.jit(tx.init)(params)
    state = {"params": params, "opt": opt, "step": jnp.zeros((), jnp.int32), "rest": rest}
    # Optimiser moments follow their parameters; scalars (counts, step) are replicated.
    repl = shd.replicated(mesh)
    state_sh = jax.tree.map(
        lambda x: x.sharding if isinstance(x.sharding, NamedSharding) else repl, state
    )
    state = jax.device_put(state, state_sh)
    dtype = jnp.bfloat16 if cfg.train.dtype == "bfloat16" else jnp.float32
    loss = cfg.loss
    if hasattr(loss, "prepare"):  # e.g. a popularity sampler: the training item counts
        loss = loss.prepare(item_counts=np.bincount(split.train.items, minlength=inter.vocab_size))
    stride = cfg.train.stride if cfg.train.stride < cfg.model.max_len else 0
    bound = steps.Bound(
        graphdef=graphdef,
        loss=loss,
        tx=tx,
        compute_dtype=dtype,
        target_positions=stride,
        library_dots=abstract.library_dots,
    )
    return Setup(
        cfg=cfg,
        mesh=mesh,
        bound=bound,
        state=state,
        state_shardings=state_sh,
        batch_sharding=shd.batch_sharding(mesh),
        replicated=shd.replicated(mesh),
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
        epochs=epochs,
        num_items=inter.num_items,
        chunk=item_chunk(cfg.eval.item_chunk, inter.num_items),
        trim_windows=abstract.variable_length,
    )


def uses_mask_token(cfg: RunConfig) -> bool:
    """Whether the task trains by masked-item prediction (the model then learns a MASK input)."""
    return bool(getattr(cfg.task, "mask_token", False))


def evaluator(s: Setup, examples, trim: bool | None = None) -> Evaluator:
    """An evaluator of ``examples`` with the recipe's evaluation settings, on the mesh.

    ``trim``: cut windows per batch (None: where the encoder declares ``variable_length``).
    """
    e = s.cfg.eval
    return Evaluator(
        examples,
        max_len=s.cfg.model.max_len,
        batch_size=e.batch_size,
        mask_seen=e.mask_seen,
        ks=e.ks,
        metrics=e.metrics,
        sharding=s.batch_sharding,
        multiple=s.mesh.shape["data"],
        trim=s.trim_windows if trim is None else trim,
    )


def rank_fn(s: Setup, allowed_v: np.ndarray | None = None):
    """Jitted ``(weights, batch) -> ranks`` of the model; ``weights = weights_of(state)``.

    ``allowed_v`` (bool [V]) restricts the candidates.
    """
    if allowed_v is None and s.ranker is not None:
        return s.ranker  # validation and test share one compiled ranker
    allowed = None if allowed_v is None else jnp.asarray(allowed_v)
    f = jit_inference(
        functools.partial(steps.model_ranks, s.bound, s.num_items, s.chunk, allowed_v=allowed),
        library_dots=s.bound.library_dots,
        in_shardings=(weights_of(s.state_shardings), s.batch_sharding),
    )
    if allowed_v is None:
        s.ranker = f
    return f


def weights_of(state: dict) -> dict:
    """What scoring needs from a train state: trained params and the rest."""
    return {"params": state["params"], "rest": state["rest"]}


@dataclasses.dataclass
class TrainResult:
    weights: Any  # {"params", "rest"} at the best validation step
    best_step: int
    best_value: float
    last_step: int
    stopped: str  # "steps", "early_stopping"
    epoch_seconds: list[float]
    valid: dict[str, float]


def train_batches(s: Setup, split: Split, epochs: int | None = None):
    """This process's training batches as the recipe shapes them (stride, the task's per-window
    map), for ``epochs`` epochs (default: the run's)."""
    cfg = s.cfg
    task_transform = getattr(cfg.task, "train_transform", None)  # a task's per-window map
    return train_dataset(
        split.train,
        max_len=cfg.model.max_len,
        batch_size=cfg.train.batch_size,
        epochs=s.epochs if epochs is None else epochs,
        seed=cfg.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        transform=task_transform(vocab_size=s.num_items + 1) if task_transform else None,
        stride=cfg.train.stride,
        group_by_length=cfg.train.group_by_length,
    )


def fit(
    s: Setup, split: Split, ckpt: Checkpoints, log: MetricsLog, *, progress=True
) -> TrainResult:
    """Trains to ``total_steps`` or early stopping; resumes from the latest checkpoint."""
    cfg = s.cfg
    tc = cfg.train
    it = iter(train_batches(s, split).to_iter_dataset())
    valid = evaluator(s, split.valid)
    ranks = rank_fn(s)
    step_fn = steps.jit_train_step(s.bound, s.state_shardings, s.batch_sharding, s.replicated)
    root_key = jax.random.key(cfg.seed + 1)

    # ---- Resume -----------------------------------------------------------------------------
    state = s.state
    meta: dict[str, Any] = {
        "best_value": -math.inf,
        "best_step": -1,
        "bad_evals": 0,
        "epoch_seconds": [],
        "valid": {},
    }
    start = 0
    latest = ckpt.latest_step()
    if latest is not None:
        state, meta = ckpt.restore(latest, abstract_like(state))
        it.set_state(meta["data_iter"])
        start = int(meta["step"])
        log.truncate_after(start)
        print(f"resuming from the checkpoint at step {start}")
    if meta.get("stopped"):
        return _result(ckpt, state, meta, start)

    def validate(step: int) -> float:
        """Validation metrics at ``step``, logged and compared with the best so far."""
        metrics = valid.metrics(functools.partial(ranks, weights_of(state)))
        value = metrics[tc.monitor] if tc.monitor in metrics else _bad_monitor(tc.monitor, metrics)
        log.write(step, {f"valid/{k}": v for k, v in metrics.items()})
        if value > meta["best_value"]:
            meta.update(best_value=value, best_step=step, bad_evals=0, valid=metrics)
        else:
            meta["bad_evals"] += 1
        return value

    # ---- A warm start is validated first: fine-tuning keeps its starting weights unless it
    # ---- beats them on validation.
    if tc.init_from and latest is None:
        value = validate(0)
        meta.update(step=0, data_iter=it.get_state(), stopped="")
        ckpt.save(0, state, meta, metric=value)

    # ---- Train ------------------------------------------------------------------------------
    eval_every = tc.eval_every or s.steps_per_epoch
    bar = _progress(progress, s.total_steps, start)
    epoch_start, epoch_train_s = time.perf_counter(), 0.0
    stopped = "steps"
    step = start
    for step in range(start + 1, s.total_steps + 1):
        t0 = time.perf_counter()  # an epoch's time includes its input pipeline
        batch = next(it)
        batch = {
            k: jax.make_array_from_process_local_data(
                s.batch_sharding, v, (tc.batch_size, *v.shape[1:])
            )
            for k, v in batch.items()
        }
        state, m = step_fn(state, batch, root_key)
        loss = float(m["loss"])
        epoch_train_s += time.perf_counter() - t0
        if not math.isfinite(loss):
            bar.close()
            kept = ckpt.latest_step()
            raise TrainingError(
                f"the training loss became {loss} at step {step}; training stopped. "
                + (
                    f"The last good checkpoint (step {kept}) is kept in {log.run_dir}/checkpoints."
                    if kept is not None
                    else "No checkpoint had been written yet."
                )
                + " Lower train.lr, set train.clip_norm, or check the data for extreme values."
            )
        if step % tc.log_every == 0 or step == s.total_steps:
            log.write(step, {"train/loss": loss, "train/grad_norm": float(m["grad_norm"])})
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")
        if step % s.steps_per_epoch == 0:
            meta["epoch_seconds"].append(epoch_train_s)
            epoch_train_s = 0.0
        validating = step % eval_every == 0 or step == s.total_steps
        if validating:
            value = validate(step)
            if tc.patience and meta["bad_evals"] >= tc.patience:
                stopped = "early_stopping"
            meta["stopped"] = stopped if (stopped != "steps" or step == s.total_steps) else ""
            bar.set_postfix(loss=f"{loss:.4f}", **{tc.monitor: f"{value:.4f}"})
        if validating or (tc.checkpoint_every and step % tc.checkpoint_every == 0):
            meta.update(step=step, data_iter=it.get_state())
            ckpt.save(step, state, meta, metric=value if validating else None)
        if stopped != "steps":
            break
    bar.close()
    del epoch_start
    return _result(ckpt, state, meta, step)


def _bad_monitor(name: str, metrics: dict) -> float:
    raise RectkError(
        f"train.monitor = {name!r} is not an evaluation metric; choose one of "
        f"{', '.join(sorted(metrics))}"
    )


def _result(ckpt: Checkpoints, state, meta: dict, last: int) -> TrainResult:
    best = int(meta["best_step"])
    if best >= 0 and best != last:
        state, _ = ckpt.restore(best, abstract_like(state))
    return TrainResult(
        weights=weights_of(state),
        best_step=best,
        best_value=float(meta["best_value"]),
        last_step=last,
        stopped=meta.get("stopped") or "steps",
        epoch_seconds=list(meta["epoch_seconds"]),
        valid=dict(meta.get("valid", {})),
    )


def _progress(enabled: bool, total: int, start: int):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=start,
        disable=not enabled,
        desc="train",
        unit="step",
        dynamic_ncols=True,
        leave=False,
    )


def fixed_rank_fn(s: Setup, scores_v: np.ndarray, allowed_v: np.ndarray | None = None):
    """Ranks under one fixed score per item (a baseline: popularity, random)."""
    scores = jax.device_put(jnp.asarray(scores_v, jnp.float32), s.replicated)
    allowed = None if allowed_v is None else jnp.asarray(allowed_v)
    f = jit_inference(
        functools.partial(steps.popularity_ranks, s.num_items, s.chunk, allowed_v=allowed),
        in_shardings=(s.replicated, s.batch_sharding),
    )
    return lambda b: f(scores, b)


def baseline_scores(name: str, s: Setup, train_items: np.ndarray, seed: int) -> np.ndarray:
    """Per-item scores of a named baseline: ``popularity`` (training counts) or ``random``."""
    if name == "popularity":
        return steps.popularity_scores(train_items, s.num_items + 1)
    if name == "random":
        return np.random.default_rng(seed).random(s.num_items + 1).astype(np.float32)
    raise RectkError(f"eval.baselines: unknown baseline {name!r} (known: popularity, random)")
