"""Knowledge distillation: a student trained on a finished teacher run's softened
full-catalogue distribution plus the true next item (Hinton et al. 2015).

Per position with a target, with student scores ``s_v`` and teacher scores ``t_v`` over every
item (the padding item excluded) and temperature ``T``::

    loss = alpha * CE(softmax(s), target)
           + (1 - alpha) * T**2 * KL(softmax(t / T) || softmax(s / T))

``T**2`` keeps the soft term's gradients on the scale of the hard one's as ``T`` grows. The KL
differs from the soft cross-entropy by the teacher's entropy only, a constant: the same
gradients, and 0 where the student matches the teacher.

The teacher runs forward inside the jitted step on the student's batch windows (left-padded or
left-cropped to its own ``max_len``), without dropout; its weights are an argument of the step,
never closed over as constants and never part of the student's train state (so never in its
checkpoints). Scores are built ``chunk`` rows at a time, rows with a target first, chunks of
padding skipped and each chunk rematerialised in the backward pass: no ``[B * L, V]`` matrix,
teacher's or student's, is built whole.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from rectk import steps
from rectk.data.types import Dataset
from rectk.errors import RecipeError
from rectk.predict import Loaded, load_run
from rectk.recipe import plugin_name
from rectk.rundir import RunDir

# Teacher tasks whose runs score every position's next item with a causal encoder.
TEACHER_TASKS = ("next_item", "distill")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Distill:
    """What the distillation step closes over besides the student's ``Bound``."""

    teacher: steps.Bound  # the teacher's model graph (scoring only)
    teacher_len: int  # the teacher's window length (its ``model.max_len``)
    vocab_size: int  # items + 1 (the padding id 0): table rows past it are padding
    alpha: float  # weight of the true next item's cross-entropy
    temperature: float
    chunk: int  # rows scored at a time


def loss_terms(
    student_nv: jax.Array, teacher_nv: jax.Array, target_n: jax.Array, temperature: float
) -> tuple[jax.Array, jax.Array]:
    """``(CE, KL)`` per row ``[N]`` from student and teacher scores ``[N, V]`` over the items a
    target may be (row ``n``'s target is column ``target_n[n]``): the student's cross-entropy
    on the target, and ``KL(softmax(t / T) || softmax(s / T))`` (no gradient to the teacher)."""
    s_nv = student_nv.astype(jnp.float32)
    t_nv = jax.lax.stop_gradient(teacher_nv.astype(jnp.float32))
    logp_nv = jax.nn.log_softmax(s_nv, axis=-1)
    ce_n = -jnp.take_along_axis(logp_nv, target_n[:, None], axis=-1)[:, 0]
    log_q_nv = jax.nn.log_softmax(s_nv / temperature, axis=-1)
    log_p_nv = jax.nn.log_softmax(t_nv / temperature, axis=-1)
    kl_n = jnp.sum(jnp.exp(log_p_nv) * (log_p_nv - log_q_nv), axis=-1)
    return ce_n, kl_n


def distillation_loss(
    student_nv: jax.Array,
    teacher_nv: jax.Array,
    target_n: jax.Array,
    *,
    alpha: float,
    temperature: float,
) -> jax.Array:
    """Per-row loss ``[N]``: ``alpha * CE + (1 - alpha) * T**2 * KL`` (``loss_terms``).

    >>> s = jnp.array([[2.0, 0.0, -1.0]])
    >>> ce = distillation_loss(s, s * 3, jnp.array([0]), alpha=1.0, temperature=2.0)
    >>> bool(ce[0] == -jax.nn.log_softmax(s)[0, 0])
    True
    >>> float(distillation_loss(s, s, jnp.array([0]), alpha=0.0, temperature=2.0)[0])
    0.0
    """
    ce_n, kl_n = loss_terms(student_nv, teacher_nv, target_n, temperature)
    return alpha * ce_n + (1.0 - alpha) * temperature**2 * kl_n


def _teacher_window(input_bl: jax.Array, teacher_len: int) -> jax.Array:
    """The student's windows as the teacher reads them: left-padded or left-cropped to its
    length (windows are left-padded, so the last positions line up)."""
    length = input_bl.shape[1]
    if teacher_len >= length:
        return jnp.pad(input_bl, [(0, 0), (teacher_len - length, 0)])
    return input_bl[:, length - teacher_len :]


def _aligned(h_bld: jax.Array, length: int) -> tuple[jax.Array, jax.Array]:
    """Teacher states at the student's ``length`` positions ``[B, length, D]`` and whether the
    teacher saw each position ``[length]`` (not where its window is shorter)."""
    have = h_bld.shape[1]
    if have >= length:
        return h_bld[:, have - length :], jnp.ones((length,), bool)
    pad = length - have
    return jnp.pad(h_bld, [(0, 0), (pad, 0), (0, 0)]), jnp.arange(length) >= pad


def distill_step(
    bound: steps.Bound, d: Distill, state: dict, teacher_weights: dict, batch: dict, root_key
):
    """One optimiser step of the student on ``distillation_loss`` at every target position.

    Positions the teacher does not see (a teacher window shorter than the student's) are
    trained on the true next item alone.
    """
    key = jax.random.fold_in(root_key, state["step"])
    dropout_key, _ = jax.random.split(key)
    teacher = d.teacher.model(
        steps.cast_floats(teacher_weights["params"], bound.compute_dtype),
        teacher_weights["rest"],
    )
    t_table_vd = teacher.item_table()
    t_h_bld = teacher.encode(
        _teacher_window(batch["input"], d.teacher_len), t_table_vd, users_b=batch["user"]
    )
    length = batch["input"].shape[1]
    t_h_bld, seen_l = _aligned(t_h_bld, length)
    t_head, t_rows_vk = teacher.scoring(t_table_vd)
    t_rows_vk = t_rows_vk[1 : d.vocab_size]  # the padding item (and rows) are never targets
    target_bl = batch["target"]
    soft_bl = jnp.broadcast_to(seen_l[None, :], target_bl.shape)
    if bound.target_positions:
        p = bound.target_positions
        t_h_bld, target_bl, soft_bl = t_h_bld[:, -p:], target_bl[:, -p:], soft_bl[:, -p:]
    target_n = target_bl.reshape(-1)
    weight_n = (target_n > 0).astype(jnp.float32)
    order = jnp.argsort(weight_n <= 0, stable=True)  # rows with a target first
    t_u_nd = jax.lax.stop_gradient(t_h_bld.reshape(-1, t_h_bld.shape[-1]))

    def loss_fn(params):
        model = bound.model(steps.cast_floats(params, bound.compute_dtype), state["rest"])
        table_vd = model.item_table()
        h_bld = model.encode(
            batch["input"], table_vd, users_b=batch["user"], rngs=nnx.Rngs(dropout=dropout_key)
        )
        if bound.target_positions:
            h_bld = h_bld[:, -bound.target_positions :]
        head, rows_vk = model.scoring(table_vd)
        rows_vk = rows_vk[1 : d.vocab_size]
        n, c = target_n.shape[0], min(d.chunk, target_n.shape[0])
        pad = (-n) % c

        def chunks(x):
            x = jnp.pad(jnp.take(x, order, axis=0), [(0, pad)] + [(0, 0)] * (x.ndim - 1))
            return x.reshape(-1, c, *x.shape[1:])

        @jax.checkpoint
        def chunk_sum(args):
            u_cd, tu_cd, t_c, w_c, soft_c = args

            def compute():
                s_cv, t_cv = head(u_cd, rows_vk), t_head(tu_cd, t_rows_vk)
                ce_c, kl_c = loss_terms(s_cv, t_cv, jnp.maximum(t_c - 1, 0), d.temperature)
                mixed_c = d.alpha * ce_c + (1.0 - d.alpha) * d.temperature**2 * kl_c
                return jnp.sum(jnp.where(soft_c, mixed_c, ce_c) * w_c)

            return jax.lax.cond(jnp.any(w_c > 0), compute, lambda: jnp.zeros((), jnp.float32))

        u_nd = h_bld.reshape(-1, h_bld.shape[-1])
        rows = (u_nd, t_u_nd, target_n, weight_n, soft_bl.reshape(-1))
        per_chunk = jax.lax.map(chunk_sum, tuple(chunks(x) for x in rows))
        return jnp.sum(per_chunk) / jnp.maximum(jnp.sum(weight_n), 1.0)

    return steps.update(bound.tx, state, batch, loss_fn)


# ---------------------------------------------------------------------------------------------
# The teacher: checked, loaded, and bound into a step the training loop calls.
# ---------------------------------------------------------------------------------------------


def check_teacher(path: str | Path) -> RunDir:
    """The teacher's run directory, or a ``RecipeError`` saying why it cannot teach: absent,
    not a run, unfinished, or not a next-item run with a causal encoder."""
    if not str(path):
        raise RecipeError(
            "task.teacher: name the directory of a finished next-item run (train the teacher "
            "first, e.g. rectk train recipes/ml100k_sasrec.toml, then "
            "--set task.teacher=runs/ml100k_sasrec)"
        )
    rd = RunDir(Path(path))
    if not rd.path.is_dir():
        raise RecipeError(f"task.teacher: {rd.path} does not exist (train the teacher first)")
    if not (rd.path / "run.json").is_file():
        raise RecipeError(f"task.teacher: {rd.path} is not a rectk run directory (no run.json)")
    if not rd.finished:
        raise RecipeError(
            f"task.teacher: {rd.path} has not finished training (no results.json): "
            "distil from a finished run"
        )
    from rectk import recipe as recipe_lib

    cfg = recipe_lib.load(rd.path / "recipe.toml").config
    task = plugin_name(cfg.task)
    if task not in TEACHER_TASKS:
        raise RecipeError(
            f"task.teacher: {rd.path} is a run of task {task!r}; a teacher must be a "
            f"next-item run (task {' or '.join(map(repr, TEACHER_TASKS))})"
        )
    if cfg.model.encoder.traits.bidirectional:
        raise RecipeError(
            f"task.teacher: {rd.path}'s encoder {plugin_name(cfg.model.encoder)!r} is "
            "bidirectional: its states at each position would see the targets"
        )
    return rd


def same_items(teacher: Loaded, path: Path, data: Dataset) -> None:
    """Refuses a teacher whose item vocabulary is not the student data's, id by id."""
    mine = list(data.interactions.item_ids)
    theirs = list(teacher.vocab["item_ids"])
    where = f"task.teacher: {path / 'vocab.json'} holds {len(theirs)} item ids"
    if len(theirs) != len(mine):
        raise RecipeError(
            f"{where}, the student's data {data.name} {len(mine)}: distil on the teacher's data"
        )
    for i, (a, b) in enumerate(zip(theirs, mine, strict=True)):
        if a != b:
            raise RecipeError(
                f"{where} as the student's data {data.name} does, but item {i + 1} is {a!r} "
                f"there and {b!r} here: distil on the teacher's data"
            )


def distill_step_factory(*, teacher: str | Path, alpha: float, temperature: float):
    """A ``(setup, data) -> step`` hook for ``rectk.train.train_and_evaluate``: loads the
    teacher, checks its items, and returns ``(state, batch, key) -> (state, metrics)`` with the
    teacher's weights passed to the jitted step on every call."""

    def make(s: Any, data: Dataset):
        rd = check_teacher(teacher)
        loaded = load_run(rd.path)
        same_items(loaded, rd.path, data)
        d = Distill(
            teacher=loaded.bound,
            teacher_len=loaded.cfg.model.max_len,
            vocab_size=s.num_items + 1,
            alpha=alpha,
            temperature=temperature,
            chunk=s.cfg.loss.rows_per_chunk(s.num_items + 1),
        )
        weights = jax.device_put(loaded.weights, s.replicated)
        jitted = jax.jit(
            functools.partial(distill_step, s.bound, d),
            in_shardings=(s.state_shardings, s.replicated, s.batch_sharding, s.replicated),
            out_shardings=(s.state_shardings, s.replicated),
            donate_argnums=(0,),
        )

        def step(state: dict, batch: dict, root_key):
            return jitted(state, weights, batch, root_key)

        return step

    return make
