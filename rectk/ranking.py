"""Full-ranking evaluation, chunked over items so no learners x items matrix is ever built.

A target's rank is the number of unmasked items scoring higher, plus items scoring exactly the
same (ties count against the model: a constant scorer ranks every target last, not first).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

NEG = -jnp.inf

# score_chunk(user_repr, item_ids_c) -> scores [B, C]
ScoreChunk = Callable[[jax.Array, jax.Array], jax.Array]


def _chunk_mask(ids_c: jax.Array, seen_bh: jax.Array, num_items: int) -> jax.Array:
    """True where an item must not be ranked: padding, beyond the catalogue, or seen."""
    start = ids_c[0]
    b = seen_bh.shape[0]
    rel_bh = seen_bh - start
    in_chunk = (seen_bh > 0) & (rel_bh >= 0) & (rel_bh < ids_c.shape[0])
    rows = jnp.broadcast_to(jnp.arange(b)[:, None], seen_bh.shape)
    seen_bc = (
        jnp.zeros((b, ids_c.shape[0]), bool).at[rows, jnp.where(in_chunk, rel_bh, 0)].max(in_chunk)
    )
    invalid_c = (ids_c == 0) | (ids_c > num_items)
    return seen_bc | invalid_c[None, :]


def target_ranks(
    user_repr,
    score_chunk: ScoreChunk,
    target_b: jax.Array,
    target_score_b: jax.Array,
    seen_bh: jax.Array,
    *,
    num_items: int,
    chunk: int,
) -> jax.Array:
    """0-based rank of each target among all items, seen items (``seen_bh``, 0 = none) masked."""
    n_chunks = -(-(num_items + 1) // chunk)

    def body(count_b, c):
        ids_c = c * chunk + jnp.arange(chunk)
        s_bc = score_chunk(user_repr, ids_c)
        masked_bc = _chunk_mask(ids_c, seen_bh, num_items) | (ids_c[None, :] == target_b[:, None])
        t = target_score_b[:, None]
        beats_bc = ((s_bc > t) | (s_bc == t)) & ~masked_bc
        return count_b + beats_bc.sum(axis=1, dtype=jnp.int32), None

    count_b, _ = jax.lax.scan(body, jnp.zeros(target_b.shape, jnp.int32), jnp.arange(n_chunks))
    return count_b


def top_k(
    user_repr,
    score_chunk: ScoreChunk,
    seen_bh: jax.Array,
    *,
    k: int,
    num_items: int,
    chunk: int,
) -> tuple[jax.Array, jax.Array]:
    """Top-``k`` unseen items per row, chunked: (scores [B, K], item ids [B, K])."""
    n_chunks = -(-(num_items + 1) // chunk)
    b = seen_bh.shape[0]

    def body(carry, c):
        best_s, best_i = carry
        ids_c = c * chunk + jnp.arange(chunk)
        s_bc = score_chunk(user_repr, ids_c)
        s_bc = jnp.where(_chunk_mask(ids_c, seen_bh, num_items), NEG, s_bc)
        all_s = jnp.concatenate([best_s, s_bc], axis=1)
        all_i = jnp.concatenate([best_i, jnp.broadcast_to(ids_c, (b, chunk))], axis=1)
        top_s, pos = jax.lax.top_k(all_s, k)
        return (top_s, jnp.take_along_axis(all_i, pos, axis=1)), None

    init = (jnp.full((b, k), NEG), jnp.zeros((b, k), jnp.int32))
    (s, i), _ = jax.lax.scan(body, init, jnp.arange(n_chunks))
    return s, i


def metrics_from_ranks(ranks: np.ndarray, ks, names=("recall", "ndcg", "mrr")) -> dict[str, float]:
    """Each registered metric in ``names`` at each k, averaged over targets.

    >>> metrics_from_ranks(np.array([0, 3]), [1])["ndcg@1"]
    0.5
    """
    from rectk import registry

    ranks = np.asarray(ranks, np.float64)
    return {
        f"{name}@{k}": float(registry.metrics.get(name)(ranks, k).mean())
        for k in ks
        for name in names
    }
