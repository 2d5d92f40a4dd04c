"""Composing rerankers: ``chain(stages, k)`` and the jitted entry point ``rerank``.

As Optax chains gradient transformations, a reranker chain applies its stages left to right:
every stage but the last keeps all C candidates, in its new order; the last returns the k of
the final list. The final list marks an empty slot (one filled by an invalid candidate, say
after a filter removed too many) with id 0 and score -inf.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from rectk.contracts import RerankContext, RerankerPlugin


def check_k(k: int, num_candidates: int, who: str) -> None:
    """``1 <= k <= C`` (``k`` is static); a ``ValueError`` naming the reranker otherwise."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"{who}: k must be a positive integer, got {k!r}")
    if k > num_candidates:
        raise ValueError(
            f"{who}: k = {k} exceeds the {num_candidates} candidates per learner (K > C); "
            "retrieve at least k candidates"
        )


RerankFn = Callable[[jax.Array, jax.Array, RerankContext], tuple[jax.Array, jax.Array]]
# Learners reranked together by default on a CPU: enough to amortise each step's fixed cost,
# few enough that their candidates' vectors (C x D floats each) stay in the CPU's cache.
ROWS_PER_CHUNK = 64


def chain(
    stages: Sequence[RerankerPlugin], k: int, *, rows_per_chunk: int | None = None
) -> RerankFn:
    """``(ids_bc, scores_bc, ctx) -> (ids_bk, scores_bk)``: the stages applied in order.

    Args:
      stages: the rerankers, applied left to right.
      k: the length of the final lists.
      rows_per_chunk: learners reranked together (a loop over chunks of this many), so that
        a chunk's candidate vectors stay in cache; 0 = the whole batch at once; None (the
        default) = ``ROWS_PER_CHUNK`` on a CPU, the whole batch on an accelerator. A chain
        with a stage that looks ``across_learners`` always takes the whole batch. The lists
        do not depend on it.

    Raises:
      ValueError: an empty chain or ``k < 1`` (at once); ``k > C`` (when called).
    """
    stages = tuple(stages)
    if not stages:
        raise ValueError(
            "a reranker chain needs at least one stage; to rank by the model's scores alone, "
            "leave the chain out"
        )
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"a reranker chain's k must be a positive integer, got {k!r}")

    def run(
        ids_bc: jax.Array, scores_bc: jax.Array, ctx: RerankContext
    ) -> tuple[jax.Array, jax.Array]:
        num = ids_bc.shape[-1]
        for stage in stages[:-1]:
            ids_bc, scores_bc = stage(ids_bc, scores_bc, ctx, k=num)
        ids_bk, scores_bk = stages[-1](ids_bc, scores_bc, ctx, k=k)
        return jnp.where(scores_bk > -jnp.inf, ids_bk, 0), scores_bk

    def apply(
        ids_bc: jax.Array, scores_bc: jax.Array, ctx: RerankContext
    ) -> tuple[jax.Array, jax.Array]:
        batch, num = ids_bc.shape
        check_k(k, num, "reranker chain")
        rows = rows_per_chunk
        if rows is None:
            rows = ROWS_PER_CHUNK if jax.default_backend() == "cpu" else 0
        if rows <= 0 or batch <= rows or across_learners(stages):
            return run(ids_bc, scores_bc, ctx)
        # Pad the batch with empty rows (every candidate invalid) to whole chunks; the
        # per-learner context fields (histories, success) are chunked with the rows.
        pad = -batch % rows
        hist, success = ctx.history_bh, ctx.success_bv
        padded = (
            jnp.pad(ids_bc, ((0, pad), (0, 0))),
            jnp.pad(scores_bc, ((0, pad), (0, 0)), constant_values=-jnp.inf),
            jnp.pad(hist, ((0, pad), (0, 0))),
            None if success is None else jnp.pad(success, ((0, pad), (0, 0))),
        )
        chunks = jax.tree.map(lambda x: x.reshape(-1, rows, *x.shape[1:]), padded)
        ids_nbk, scores_nbk = jax.lax.map(
            lambda c: run(c[0], c[1], ctx._replace(history_bh=c[2], success_bv=c[3])), chunks
        )
        return ids_nbk.reshape(-1, k)[:batch], scores_nbk.reshape(-1, k)[:batch]

    return apply


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _rerank(
    stages: tuple[RerankerPlugin, ...],
    ids_bc: jax.Array,
    scores_bc: jax.Array,
    ctx: RerankContext,
    k: int,
    rows_per_chunk: int | None,
) -> tuple[jax.Array, jax.Array]:
    return chain(stages, k, rows_per_chunk=rows_per_chunk)(ids_bc, scores_bc, ctx)


def rerank(
    stages: Sequence[RerankerPlugin],
    ids_bc: jax.Array,
    scores_bc: jax.Array,
    ctx: RerankContext,
    k: int,
    *,
    rows_per_chunk: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The final lists ``(ids_bk, scores_bk)`` of the chain ``stages`` (see ``chain``),
    jit-compiled once per chain, ``k``, chunk and shapes (reranker configs are frozen,
    hashable dataclasses)."""
    stages = tuple(stages)
    chain(stages, k)  # an empty chain or a bad k fails here, before tracing
    return _rerank(stages, ids_bc, scores_bc, ctx, k, rows_per_chunk)


def requires(stages: Sequence[RerankerPlugin]) -> frozenset[str]:
    """What the chain reads from its context (keys of ``rectk.contracts.RERANK_NEEDS``)."""
    return frozenset().union(*(stage.requires() for stage in stages))


def across_learners(stages: Sequence[RerankerPlugin]) -> bool:
    """Whether a learner's list depends on the other learners of the batch."""
    return any(stage.across_learners for stage in stages)
