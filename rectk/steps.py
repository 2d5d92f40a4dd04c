"""Pure, jitted steps: ``train_step(state, batch, key)`` and the evaluation scorers.

The model and recipe are bound with ``functools.partial`` (never traced); the state is a plain
pytree ``{"params", "opt", "step", "rest"}`` (``rest``: what is not trained) so it shards,
donates and checkpoints as one tree.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from rectk import ranking
from rectk.config import TrainConfig


def make_schedule(cfg: TrainConfig, total_steps: int) -> optax.Schedule:
    """The learning rate by optimiser update: warm-up, then cosine/linear decay (or constant).

    It counts updates, so the update made at train step ``s`` (1-based) uses
    ``schedule((s - 1) // cfg.accumulate)``.
    """
    total_steps = max(1, total_steps // cfg.accumulate)  # the schedule counts updates
    warm = min(cfg.warmup_steps, max(total_steps - 1, 0))
    rest = max(total_steps - warm, 1)
    if cfg.schedule == "constant":
        after = optax.constant_schedule(cfg.lr)
    elif cfg.schedule == "linear":
        after = optax.linear_schedule(cfg.lr, 0.0, rest)
    else:
        after = optax.cosine_decay_schedule(cfg.lr, rest)
    if not warm:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, cfg.lr, warm), after], [warm])


def make_optimizer(cfg: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    """AdamW on ``make_schedule``; weight decay on matrices only; clipping; accumulation."""
    sched = make_schedule(cfg, total_steps)
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)  # noqa: E731
    tx = optax.adamw(sched, weight_decay=cfg.weight_decay, mask=decay_mask)
    if cfg.clip_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), tx)
    if cfg.accumulate > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=cfg.accumulate).gradient_transformation()
    return tx


@dataclasses.dataclass(frozen=True)
class Bound:
    """What the steps close over: the model's graph, its loss and optimizer (None where only
    scoring is bound, as for a finished run's recommendations)."""

    graphdef: Any
    loss: Any = None
    tx: optax.GradientTransformation | None = None
    compute_dtype: Any = jnp.float32
    # > 0: only a window's last ``target_positions`` positions carry targets (``train.stride``),
    # so the loss scores those rows only.
    target_positions: int = 0
    # Forward-only steps may use XLA:CPU's library (YNNPACK) fusions; the encoder's
    # ``library_dots`` attribute says (``rectk.compiler``).
    library_dots: bool = True
    # > 0: the item table's rows past this count are padding (``sharding.table_rows``), which
    # the train step scores out of the loss.
    item_rows: int = 0
    # > 1: the item table is sharded by rows over this many devices (``mesh.model``), and
    # evaluation scores each chunk where its rows are (``ranking.chunk_ids``).
    table_shards: int = 1
    # > 0: the train step computes only the item vectors the batch needs, among this many
    # item ids (``rectk.sparse_items``; ``train.encode_items``)
    batch_items: int = 0

    def model(self, params, rest):
        return nnx.merge(self.graphdef, params, rest)


def cast_floats(tree, dtype):
    """``tree`` with its floating-point arrays cast to ``dtype`` (the compute precision)."""
    return jax.tree.map(
        lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree
    )


def train_step(bound: Bound, state: dict, batch: dict, root_key: jax.Array):
    """One optimiser step on every (position -> next item) target of the batch."""
    if bound.batch_items:
        from rectk import sparse_items

        return sparse_items.train_step(bound, bound.batch_items, state, batch, root_key)
    key = jax.random.fold_in(root_key, state["step"])
    dropout_key, loss_key = jax.random.split(key)

    def loss_fn(params):
        model = bound.model(cast_floats(params, bound.compute_dtype), state["rest"])
        table_vd = model.item_table()
        h_bld = model.encode(
            batch["input"], table_vd, users_b=batch["user"], rngs=nnx.Rngs(dropout=dropout_key)
        )
        target_bl = batch["target"]
        if bound.target_positions:
            h_bld = h_bld[:, -bound.target_positions :]
            target_bl = target_bl[:, -bound.target_positions :]
        target_n = target_bl.reshape(-1)
        head, rows_vk = model.scoring(table_vd)
        if 0 < bound.item_rows < rows_vk.shape[0]:
            head, rows_vk = _without_padding_rows(head, rows_vk, bound.item_rows)
        return bound.loss(
            head=head,
            user_nd=h_bld.reshape(-1, h_bld.shape[-1]),
            table_vd=rows_vk,
            target_n=target_n,
            weight_n=(target_n > 0).astype(jnp.float32),
            key=loss_key,
        ).astype(jnp.float32)

    return update(bound.tx, state, batch, loss_fn)


def _without_padding_rows(head, rows_vk: jax.Array, item_rows: int):
    """``(head, rows_vk)`` where rows from ``item_rows`` on score -1e9 with any head: each row
    gains a last column (0, or -1e9 for padding) that the returned head adds, as the item bias
    does (``Recommender.scoring``), so every loss drops exactly the rows it scores."""
    pad_v1 = jnp.where(jnp.arange(rows_vk.shape[0]) < item_rows, 0.0, -1e9)[:, None]

    def masked(user_nd: jax.Array, r_vk: jax.Array) -> jax.Array:
        return head(user_nd, r_vk[:, :-1]) + r_vk[None, :, -1]

    return masked, jnp.concatenate([rows_vk, pad_v1.astype(rows_vk.dtype)], axis=1)


def update(tx: optax.GradientTransformation | None, state: dict, batch: dict, mean_loss):
    """One optimiser update from ``mean_loss(params)``, the batch's mean loss: its gradients
    weighted by the batch's ``loss_scale`` where it has one (length-grouped batches weigh
    their targets as uniformly shuffled ones would; ``LengthGroupedBatches``), the loss
    reported unweighted. ``(state, {"loss", "grad_norm"})``, as ``apply_gradients``."""
    assert tx is not None, "a train step needs the optimiser bound"
    scale = jnp.max(batch["loss_scale"]) if "loss_scale" in batch else 1.0

    def scaled(params):
        loss = mean_loss(params)
        return loss * scale, loss

    (_, loss), grads = jax.value_and_grad(scaled, has_aux=True)(state["params"])
    return apply_gradients(tx, state, grads, loss)


def apply_gradients(tx: optax.GradientTransformation, state: dict, grads, loss):
    """``(the train state after one optimiser update, {"loss", "grad_norm"})``: what every
    task's train step ends with."""
    updates, opt = tx.update(grads, state["opt"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    new_state = {"params": params, "opt": opt, "step": state["step"] + 1, "rest": state["rest"]}
    return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}


def jit_state_step(step_fn, state_shardings, batch_sharding, replicated):
    """A ``(state, batch, key) -> (state, metrics)`` step jitted once with explicit
    shardings, the state donated."""
    return jax.jit(
        step_fn,
        in_shardings=(state_shardings, batch_sharding, replicated),
        out_shardings=(state_shardings, replicated),
        donate_argnums=(0,),
    )


def jit_train_step(bound: Bound, state_shardings, batch_sharding, replicated):
    """``train_step`` jitted once with explicit shardings, the state donated."""
    return jit_state_step(
        functools.partial(train_step, bound), state_shardings, batch_sharding, replicated
    )


# ---------------------------------------------------------------------------------------------
# Scorers for evaluation and recommendation.
# ---------------------------------------------------------------------------------------------


def item_table(bound: Bound, weights) -> jax.Array:
    """The model's item table ``[V, D]`` under ``weights``, for a ranker to take precomputed."""
    return bound.model(weights["params"], weights["rest"]).item_table()


def _model_scorer(bound: Bound, weights, batch, chunk: int = 0, table_vd=None):
    model = bound.model(weights["params"], weights["rest"])
    if table_vd is None:
        table_vd = model.item_table()
    user_bd = model.user_states(batch["input"], table_vd, batch["user"])
    head, rows_vk = model.scoring(table_vd)
    v = rows_vk.shape[0]

    def score_chunk(u_bd, ids_c):
        return head(u_bd, jnp.take(rows_vk, jnp.minimum(ids_c, v - 1), axis=0))

    def score_targets(u_bd, target_b):
        return jnp.diagonal(head(u_bd, jnp.take(rows_vk, target_b, axis=0)))

    if bound.table_shards > 1 and chunk:
        score_chunk = _sharded_chunks(head, rows_vk, bound.table_shards, chunk)
    return user_bd, score_chunk, score_targets


def _sharded_chunks(head, rows_vk: jax.Array, shards: int, chunk: int):
    """``score_chunk`` for the chunks ``ranking.chunk_ids`` lays out over a table sharded by
    rows: the chunk is a slice of every shard's block (no gather across devices), so its
    scores ``[B, C]`` stay sharded over the items."""
    m, k, run = shards, rows_vk.shape[1], chunk // shards
    blocks_mrk = rows_vk.reshape(m, -1, k)
    pad = (-blocks_mrk.shape[1]) % run
    if pad:  # the last chunk's slice stays inside every block (its ids there are 0)
        blocks_mrk = jnp.pad(blocks_mrk, ((0, 0), (0, pad), (0, 0)))

    def score_chunk(u_bd, ids_c):
        rows_ck = jax.lax.dynamic_slice_in_dim(blocks_mrk, ids_c[0], run, axis=1)
        return head(u_bd, rows_ck.reshape(-1, k))

    return score_chunk


def restrict(score_chunk, allowed_v):
    """Scores of items outside ``allowed_v`` (bool [V]) become -inf: they never outrank a target."""
    if allowed_v is None:
        return score_chunk

    def restricted(user_repr, ids_c):
        keep_c = jnp.take(allowed_v, jnp.minimum(ids_c, allowed_v.shape[0] - 1))
        return jnp.where(keep_c[None, :], score_chunk(user_repr, ids_c), -jnp.inf)

    return restricted


def model_ranks(
    bound: Bound, num_items: int, chunk: int, weights, batch, allowed_v=None, table_vd=None
):
    """Ranks of the batch's targets; ``weights`` = ``{"params", "rest"}`` of the train state.

    ``allowed_v`` (bool [V]) restricts the candidates (new-item evaluation); ``table_vd``: the
    item table computed beforehand (``item_table``), else computed here.
    """
    user_bd, score_chunk, score_targets = _model_scorer(bound, weights, batch, chunk, table_vd)
    score_chunk = restrict(score_chunk, allowed_v)
    t_b = score_targets(user_bd, batch["target"])
    return ranking.target_ranks(
        user_bd,
        score_chunk,
        batch["target"],
        t_b,
        batch["seen"],
        num_items=num_items,
        chunk=chunk,
        shards=bound.table_shards,
    )


def model_top_k(bound: Bound, num_items: int, chunk: int, k: int, weights, batch, table_vd=None):
    """The batch's top-``k`` items ``(scores [B, K], ids [B, K])``, seen items masked;
    ``table_vd``: the item table computed beforehand (``item_table``), else computed here."""
    user_bd, score_chunk, _ = _model_scorer(bound, weights, batch, chunk, table_vd)
    return ranking.top_k(
        user_bd,
        score_chunk,
        batch["seen"],
        k=k,
        num_items=num_items,
        chunk=chunk,
        shards=bound.table_shards,
    )


def baseline_ranks(num_items: int, chunk: int, scores_v, batch, allowed_v=None):
    """Ranks under one fixed score per item (a baseline: popularity, a seeded random order)."""
    v = scores_v.shape[0]
    b = batch["target"].shape[0]

    def score_chunk(_, ids_c):
        return jnp.broadcast_to(jnp.take(scores_v, jnp.minimum(ids_c, v - 1)), (b, ids_c.shape[0]))

    t_b = jnp.take(scores_v, batch["target"])
    score_chunk = restrict(score_chunk, allowed_v)
    return ranking.target_ranks(
        None, score_chunk, batch["target"], t_b, batch["seen"], num_items=num_items, chunk=chunk
    )
