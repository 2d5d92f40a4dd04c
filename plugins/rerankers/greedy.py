"""What every reranker shares: validity, relevance, the batched greedy loop, the final gather.

Every built-in reranker is a greedy selection run for all learners of a batch at once: ``k``
steps, each scoring every candidate ``[B, C]`` against what the row has taken so far and
taking the best. ``greedy`` holds that loop; a reranker supplies the gain and the update of
its own state. Candidates with id 0 or score -inf are invalid: a step takes the best valid
candidate still open and, only when a row has none left, its first open invalid one (in
candidate order), so invalid candidates always come last.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from rectk.contracts import RERANK_NEEDS, RerankContext
from rectk.rerank.chain import check_k as check_k  # re-exported for rerankers

# Gains are clipped to this floor (a finite value) before the argmax, so that an open valid
# candidate whose gain is -inf or NaN still beats the -inf of the closed ones.
_FLOOR = float(jnp.finfo(jnp.float32).min)
# The greedy loop of a list this short is unrolled (faster on CPU; longer ones, such as a
# stage that orders all C candidates, stay a loop to keep compilation short).
UNROLL_UP_TO = 16


def check_unit(name: str, value: float, *, closed: bool = True) -> None:
    """A field in ``[0, 1]`` (``closed``) or ``[0, 1)``; the message names the range."""
    ok = 0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0
    if not ok:
        raise ValueError(f"{name} must lie in [0, 1{']' if closed else ')'}, got {value!r}")


def context_field(ctx: RerankContext, need: str, who: str) -> jax.Array:
    """The context array behind ``need`` (a key of ``RERANK_NEEDS``), or a ``ValueError``
    saying which reranker needs what the data set did not provide."""
    field = RERANK_NEEDS[need]
    value = getattr(ctx, field)
    if value is None:
        raise ValueError(f"{who} needs item {need} (RerankContext.{field}), which is None here")
    return value


def valid_candidates(ids_bc: jax.Array, scores_bc: jax.Array) -> jax.Array:
    """``[B, C]`` True where a candidate is valid: a real id and a score above -inf."""
    return (ids_bc > 0) & (scores_bc > -jnp.inf)


def relevance(scores_bc: jax.Array, valid_bc: jax.Array, *, normalize: bool) -> jax.Array:
    """The scores a reranker trades against its other term, 0 at invalid candidates.

    ``normalize``: each list's valid scores min-max scaled to ``[0, 1]`` (a list of one, or
    of equal scores, gets 0), so that a trade-off weight means the same for any model."""
    scores = scores_bc.astype(jnp.float32)
    if not normalize:
        return jnp.where(valid_bc, scores, 0.0)
    lo = jnp.min(jnp.where(valid_bc, scores, jnp.inf), axis=-1, keepdims=True)
    hi = jnp.max(jnp.where(valid_bc, scores, -jnp.inf), axis=-1, keepdims=True)
    span = jnp.where(hi > lo, hi - lo, 1.0)
    return jnp.where(valid_bc, (scores - lo) / span, 0.0)


def unit_rows(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """Rows scaled to unit length along the last axis (a zero row stays zero)."""
    x = x.astype(jnp.float32)
    sq = jnp.sum(x * x, axis=-1, keepdims=True)
    return x * jax.lax.rsqrt(jnp.maximum(sq, eps))


def pick(gain_bc: jax.Array, open_bc: jax.Array, unused_bc: jax.Array) -> jax.Array:
    """``[B]``: per row, the open candidate of highest gain (the first on ties) or, where a
    row has no open candidate, its first unused one.

    Two plain reductions (a max, then the smallest position reaching it) rather than
    ``argmax``, whose variadic reduction runs about twice as slowly on CPU."""
    num = gain_bc.shape[-1]
    safe = jnp.where(jnp.isnan(gain_bc), _FLOOR, jnp.maximum(gain_bc, _FLOOR))
    key = jnp.where(open_bc, safe, -jnp.inf)
    best = jnp.max(key, axis=-1, keepdims=True)
    has_open = best > -jnp.inf  # an open candidate's key is at least _FLOOR
    hit = jnp.where(has_open, open_bc & (key == best), unused_bc)
    return jnp.min(jnp.where(hit, jnp.arange(num, dtype=jnp.int32), num), axis=-1)


def row_take(x_bc: jax.Array, idx_b: jax.Array) -> jax.Array:
    """``x_bc[b, idx_b[b]]`` for every row (``x`` may have trailing axes)."""
    idx = idx_b.reshape(idx_b.shape + (1,) * (x_bc.ndim - 1))
    return jnp.take_along_axis(x_bc, idx, axis=1)[:, 0]


def greedy(
    k: int,
    valid_bc: jax.Array,
    state: Any,
    gain: Callable[[Any, jax.Array, jax.Array], jax.Array],
    update: Callable[[Any, jax.Array, jax.Array, jax.Array], Any],
) -> tuple[jax.Array, Any]:
    """The batched greedy loop: ``k`` steps, each taking one candidate per row.

    Args:
      k: steps (static).
      valid_bc: the valid candidates.
      state: the reranker's loop state (any pytree).
      gain: ``gain(state, taken_bc, step) -> [B, C]``, the value of taking each candidate now.
      update: ``update(state, idx_b, taken_valid_b, step) -> state`` after row b took
        candidate ``idx_b[b]`` (``taken_valid_b``: whether that candidate is valid).

    Returns:
      ``[B, k]`` candidate positions in the order taken, and the final state.
    """
    num = valid_bc.shape[-1]

    def step(carry, t):
        state, taken = carry
        idx = pick(gain(state, taken, t), valid_bc & ~taken, ~taken)
        hit = jnp.arange(num)[None, :] == idx[:, None]
        state = update(state, idx, row_take(valid_bc, idx), t)
        return (state, taken | hit), idx

    taken = jnp.zeros(valid_bc.shape, bool)
    unroll = k if k <= UNROLL_UP_TO else 1  # short lists: straight-line code, no loop
    (state, _), order_kb = jax.lax.scan(step, (state, taken), jnp.arange(k), unroll=unroll)
    return order_kb.T, state


def gather(
    ids_bc: jax.Array, scores_bc: jax.Array, valid_bc: jax.Array, order_bk: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """The ids and scores at ``order_bk``; a slot filled by an invalid candidate scores -inf."""
    ids = jnp.take_along_axis(ids_bc, order_bk, axis=1)
    scores = jnp.take_along_axis(scores_bc, order_bk, axis=1)
    ok = jnp.take_along_axis(valid_bc, order_bk, axis=1)
    return ids, jnp.where(ok, scores, -jnp.inf).astype(scores_bc.dtype)


def keep_in_order(
    ids_bc: jax.Array, scores_bc: jax.Array, keep_bc: jax.Array, k: int
) -> tuple[jax.Array, jax.Array]:
    """A filter's output: the kept candidates in their input order, then the others (scored
    -inf), the first ``k``."""
    num = ids_bc.shape[-1]
    pos = jnp.arange(num)[None, :]
    order = jnp.argsort(jnp.where(keep_bc, pos, pos + num), axis=-1)[:, :k]
    return gather(ids_bc, scores_bc, keep_bc, order)


def in_rows(values_bn: jax.Array, members_bm: jax.Array) -> jax.Array:
    """``[B, N]``: whether each value occurs in its row of ``members`` (any integer ids; a
    sorted search, so memory stays ``O(B (N + M))``)."""
    sorted_bm = jnp.sort(members_bm, axis=-1)
    pos = jax.vmap(jnp.searchsorted)(sorted_bm, values_bn)
    pos = jnp.minimum(pos, sorted_bm.shape[-1] - 1)
    return jnp.take_along_axis(sorted_bm, pos, axis=-1) == values_bn
