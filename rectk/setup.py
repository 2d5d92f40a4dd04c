"""What a run is built from, once: its data and split, the model and optimiser shaped and
sharded, and the functions the loop, evaluation and baselines call.

Shape first, then shard, then create: ``nnx.eval_shape`` gives the abstract model, the recipe's
mesh rules turn its logical axis names into shardings, and ``create_state`` builds each array
where its sharding puts it. A ``Setup`` is frozen and holds no arrays: the loop owns the state
it creates or restores (``Setup.abstract_state`` is what both look like).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from rectk import registry, steps
from rectk import sharding as shd
from rectk.compiler import jit_inference
from rectk.config import RunConfig
from rectk.data.pipeline import train_dataset, training_windows
from rectk.data.split import EvalSet, Split, split
from rectk.data.types import Dataset
from rectk.errors import RectkError
from rectk.evaluate import Evaluator, item_chunk
from rectk.loop import weights_of
from rectk.model import run_model, trainable_filter
from rectk.recipe import plugin_name
from rectk.sparse_items import use_batch_items


def prepare(cfg: RunConfig) -> tuple[Dataset, Split]:
    """The recipe's data set, loaded, and its split into train / valid / test."""
    data = cfg.data.load()
    sp = split(
        data.interactions,
        cfg.split.type,
        cfg.split.valid_fraction,
        cfg.split.test_fraction,
        cold_items=cfg.split.cold_items,
        seed=cfg.split.seed,
    )
    return data, sp


@dataclasses.dataclass(frozen=True, kw_only=True)
class Setup:
    """Everything the loop, evaluation and baselines share; built once by ``setup``."""

    cfg: RunConfig
    mesh: Mesh
    bound: steps.Bound  # what the steps close over: model graph, loss, optimiser
    schedule: optax.Schedule  # learning rate by optimiser update (logged as train/lr)
    abstract_state: dict  # the train state's shapes, dtypes and shardings
    init_weights: Callable[[], tuple[Any, Any]]  # jitted: fresh (params, rest), sharded
    batch_sharding: NamedSharding
    replicated: NamedSharding
    steps_per_epoch: int
    total_steps: int
    epochs: int
    num_items: int
    chunk: int  # items scored at a time in evaluation
    trim_windows: bool  # evaluation may cut windows to each batch's longest history
    # evaluation computes the item table once per evaluation, not per batch (``Ranker``)
    cache_table: bool = False

    @property
    def state_shardings(self) -> dict:
        return jax.tree.map(lambda a: a.sharding, self.abstract_state)


def setup(cfg: RunConfig, data: Dataset, sp: Split, mesh: Mesh) -> Setup:
    """Model, optimiser and the train state's layout: shape first, then shard."""
    inter = data.interactions
    windows = len(training_windows(sp.train, cfg.model.max_len, cfg.train.stride))
    steps_per_epoch, total = run_length(cfg, mesh, windows)

    make = functools.partial(
        run_model,
        cfg,
        vocab_size=shd.table_rows(inter.vocab_size, cfg.mesh.model),
        num_users=inter.num_users + 1,
        catalogue=data.catalogue,
    )

    abstract = nnx.eval_shape(make)
    if cfg.train.group_by_length and not abstract.variable_length:
        raise RectkError(
            f"train.group_by_length cuts windows to their batch's longest history, but encoder "
            f"{plugin_name(cfg.model.encoder)!r} does not declare that its states ignore "
            "leading padding (variable_length); set train.group_by_length = false"
        )
    layout = state_layout(make, trainable_filter(abstract), cfg, mesh, total)
    item_counts = np.bincount(sp.train.items, minlength=inter.vocab_size)
    loss = cfg.loss.prepare(item_counts=item_counts)
    bound = steps.Bound(
        graphdef=layout.graphdef,
        loss=loss,
        tx=layout.tx,
        compute_dtype=jnp.bfloat16 if cfg.train.dtype == "bfloat16" else jnp.float32,
        target_positions=cfg.train.stride if cfg.train.stride < cfg.model.max_len else 0,
        library_dots=abstract.library_dots,
        item_rows=inter.vocab_size,
        table_shards=_table_shards(cfg),
        batch_items=inter.vocab_size if use_batch_items(cfg, abstract, loss) else 0,
    )
    return Setup(
        cfg=cfg,
        mesh=mesh,
        bound=bound,
        schedule=steps.make_schedule(cfg.train, total),
        abstract_state=layout.abstract_state,
        init_weights=layout.init_weights,
        batch_sharding=shd.batch_sharding(mesh),
        replicated=shd.replicated(mesh),
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
        epochs=math.ceil(total / steps_per_epoch),
        num_items=inter.num_items,
        chunk=item_chunk(cfg.eval.item_chunk, inter.num_items),
        trim_windows=abstract.variable_length,
        cache_table=abstract.encodes_items and bound.table_shards == 1,
    )


def _table_shards(cfg: RunConfig) -> int:
    """Devices the item table's rows are split over: ``mesh.model`` where ``vocab`` maps to
    the ``model`` axis, else 1."""
    rules = shd.mesh_rules(cfg.mesh.rules, cfg.mesh.model)
    return cfg.mesh.model if rules.get("vocab") == "model" else 1


def run_length(cfg: RunConfig, mesh: Mesh, rows: int) -> tuple[int, int]:
    """``(steps per epoch, total steps)`` for ``rows`` training rows (``train.steps``, else
    ``train.epochs`` epochs); refuses a batch size the data-parallel devices do not divide."""
    n_data = mesh.shape["data"]  # the mesh spans every process's devices
    if cfg.train.batch_size % n_data:
        raise RectkError(
            f"train.batch_size = {cfg.train.batch_size} must be divisible by the {n_data} "
            f"data-parallel devices (mesh.data); choose a multiple of {n_data}"
        )
    steps_per_epoch = max(1, math.ceil(rows / cfg.train.batch_size))
    return steps_per_epoch, cfg.train.steps or cfg.train.epochs * steps_per_epoch


@dataclasses.dataclass(frozen=True, kw_only=True)
class StateLayout:
    """A model's train state, shaped and sharded before anything is created."""

    graphdef: Any  # the model's graph, merged with weights to run it
    abstract_state: dict  # ``{"params", "opt", "step", "rest"}``: shapes, dtypes, shardings
    init_weights: Callable[[], tuple[Any, Any]]  # jitted: fresh (params, rest), sharded
    tx: optax.GradientTransformation

    def create(self) -> dict:
        """A freshly initialised train state, each array created where it is placed."""
        params, rest = self.init_weights()
        shardings = jax.tree.map(lambda a: a.sharding, self.abstract_state)
        opt = jax.jit(self.tx.init, out_shardings=shardings["opt"])(params)
        step = jax.device_put(jnp.zeros((), jnp.int32), shardings["step"])
        return {"params": params, "opt": opt, "step": step, "rest": rest}


def state_layout(
    make: Callable[[], nnx.Module], trainable, cfg: RunConfig, mesh: Mesh, total_steps: int
) -> StateLayout:
    """The train state of the module ``make()`` builds: parameters matching ``trainable``
    (an nnx filter) are trained with the recipe's optimiser; each array is placed by the
    recipe's mesh rules, optimiser moments beside their parameters, counts replicated."""
    graphdef, abs_params, abs_rest = nnx.split(nnx.eval_shape(make), trainable, ...)  # type: ignore[misc]
    param_sh = shd.state_shardings(abs_params, mesh, cfg.mesh.rules)
    rest_sh = shd.state_shardings(abs_rest, mesh, cfg.mesh.rules)

    def init():
        _, params, rest = nnx.split(make(), trainable, ...)  # type: ignore[misc]
        return params, rest

    init_weights = jax.jit(init, out_shardings=(param_sh, rest_sh))
    tx = steps.make_optimizer(cfg.train, total_steps)
    repl = shd.replicated(mesh)
    params, rest = jax.eval_shape(init_weights)
    opt = jax.eval_shape(tx.init, params)
    opt_sh = optax.tree_utils.tree_map_params(
        tx,
        lambda _, sharding: sharding,
        opt,
        param_sh,
        transform_non_params=lambda _: repl,
        is_leaf=lambda x: isinstance(x, jax.ShapeDtypeStruct),
    )
    abstract_state = {
        "params": params,
        "opt": jax.tree.map(_placed, opt, opt_sh),
        "step": jax.ShapeDtypeStruct((), jnp.int32, sharding=repl),
        "rest": rest,
    }
    return StateLayout(
        graphdef=graphdef, abstract_state=abstract_state, init_weights=init_weights, tx=tx
    )


def _placed(a: jax.ShapeDtypeStruct, sharding) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding)


def create_state(s: Setup) -> dict:
    """A freshly initialised train state ``{"params", "opt", "step", "rest"}``, each array
    created where ``s.abstract_state`` places it."""
    assert s.bound.tx is not None  # setup() always binds the optimiser
    layout = StateLayout(
        graphdef=s.bound.graphdef,
        abstract_state=s.abstract_state,
        init_weights=s.init_weights,
        tx=s.bound.tx,
    )
    return layout.create()


def train_batches(s: Setup, sp: Split, epochs: int | None = None):
    """This process's training batches as the recipe shapes them (stride, the task's
    per-window map), for ``epochs`` epochs (default: the run's)."""
    cfg = s.cfg
    return train_dataset(
        sp.train,
        max_len=cfg.model.max_len,
        batch_size=cfg.train.batch_size,
        epochs=s.epochs if epochs is None else epochs,
        seed=cfg.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        transform=cfg.task.train_transform(vocab_size=s.num_items + 1),
        stride=cfg.train.stride,
        group_by_length=cfg.train.group_by_length,
    )


def evaluator(s: Setup, examples: EvalSet, trim: bool | None = None) -> Evaluator:
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


class Ranker:
    """Jitted ``(weights, batch) -> ranks`` of the model's targets among all items
    (``weights = weights_of(state)``), and ``bind(weights)``: ``batch -> ranks`` for one
    evaluation. Where the item tower computes items at a cost (a fine-tuned text encoder),
    ``bind`` computes the item table once for all the evaluation's batches instead of once
    per batch; the ranks are the same."""

    def __init__(self, s: Setup, allowed_v: np.ndarray | None = None):
        allowed = None if allowed_v is None else jnp.asarray(allowed_v)
        ranks = functools.partial(
            steps.model_ranks, s.bound, s.num_items, s.chunk, allowed_v=allowed
        )
        weights = weights_of(s.state_shardings)
        self._jitted = jit_inference(
            ranks, library_dots=s.bound.library_dots, in_shardings=(weights, s.batch_sharding)
        )
        self._table = self._with_table = None
        if s.cache_table:
            self._table = jax.jit(
                functools.partial(steps.item_table, s.bound),
                in_shardings=(weights,),
                out_shardings=s.replicated,
            )
            self._with_table = jit_inference(
                lambda w, table_vd, batch: ranks(w, batch, table_vd=table_vd),
                library_dots=s.bound.library_dots,
                in_shardings=(weights, s.replicated, s.batch_sharding),
            )

    def __call__(self, weights, batch) -> jax.Array:
        return self._jitted(weights, batch)

    def bind(self, weights) -> Callable[[dict], jax.Array]:
        if self._table is None or self._with_table is None:
            return functools.partial(self._jitted, weights)
        table_vd, ranks = self._table(weights), self._with_table
        return lambda batch: ranks(weights, table_vd, batch)

    def compiled_shapes(self) -> int:
        """How many batch shapes the ranker has compiled."""
        both = (self._jitted, self._with_table)
        return sum(int(f._cache_size()) for f in both if f is not None)


def model_ranker(s: Setup, allowed_v: np.ndarray | None = None) -> Ranker:
    """The model's ``Ranker``; ``allowed_v`` (bool [V]) restricts the candidates."""
    return Ranker(s, allowed_v)


def baseline_scores(s: Setup, name: str, train_items: np.ndarray) -> np.ndarray:
    """The per-item scores of the baseline plugin ``name`` (``eval.baselines``)."""
    baseline = registry.baselines.get(name)()
    return baseline.item_scores(
        train_items=train_items, vocab_size=s.num_items + 1, seed=s.cfg.seed
    )


def baseline_ranker(s: Setup, scores_v: np.ndarray, allowed_v: np.ndarray | None = None):
    """``batch -> ranks`` under one fixed score per item (a baseline)."""
    scores = jax.device_put(jnp.asarray(scores_v, jnp.float32), s.replicated)
    allowed = None if allowed_v is None else jnp.asarray(allowed_v)
    f = jit_inference(
        functools.partial(steps.baseline_ranks, s.num_items, s.chunk, allowed_v=allowed),
        in_shardings=(s.replicated, s.batch_sharding),
    )
    return functools.partial(f, scores)
