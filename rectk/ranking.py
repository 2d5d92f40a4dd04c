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


def _chunk_mask(ids_c: jax.Array, seen_bh: jax.Array, num_items: int, shards: int = 1):
    """True where an item must not be ranked: padding, beyond the catalogue, or seen.

    ``ids_c`` is one chunk of ``chunk_ids``: contiguous, or with ``shards > 1`` one run of
    ``C / shards`` ids from each shard's block of rows.
    """
    b, c = seen_bh.shape[0], ids_c.shape[0]
    if shards == 1:
        rel_bh = seen_bh - ids_c[0]
        in_chunk = (seen_bh > 0) & (rel_bh >= 0) & (rel_bh < c)
    else:  # ids_c[0] is the chunk's first row within every shard's block
        run, block = c // shards, _block(num_items, shards)
        local_bh = seen_bh % block - ids_c[0]
        in_chunk = (seen_bh > 0) & (local_bh >= 0) & (local_bh < run)
        rel_bh = (seen_bh // block) * run + local_bh
    rows = jnp.broadcast_to(jnp.arange(b)[:, None], seen_bh.shape)
    seen_bc = jnp.zeros((b, c), bool).at[rows, jnp.where(in_chunk, rel_bh, 0)].max(in_chunk)
    invalid_c = (ids_c == 0) | (ids_c > num_items)
    return seen_bc | invalid_c[None, :]


def chunk_count(num_items: int, chunk: int, shards: int = 1) -> int:
    """How many chunks of ``chunk`` ids cover the item ids (``chunk_ids``)."""
    if shards == 1:
        return -(-(num_items + 1) // chunk)
    return -(-_block(num_items, shards) // (chunk // shards))


def _block(num_items: int, shards: int) -> int:
    """Rows of each shard's block of the item table (``sharding.table_rows`` / shards)."""
    return -(-(num_items + 1) // shards)


def chunk_ids(c, *, num_items: int, chunk: int, shards: int = 1) -> jax.Array:
    """The item ids of chunk ``c`` ``[C]``: ``c * C + [0, C)``; with ``shards > 1`` (a table
    sharded by rows) the rows ``c * C / shards + [0, C / shards)`` of every shard's block,
    so that each device scores the part of the chunk it holds. Ids past a block are 0.

    >>> chunk_ids(1, num_items=7, chunk=4, shards=2).tolist()
    [2, 3, 6, 7]
    """
    if shards == 1:
        return c * chunk + jnp.arange(chunk)
    run, block = chunk // shards, _block(num_items, shards)
    local_c = c * run + jnp.tile(jnp.arange(run), shards)
    ids_c = jnp.repeat(jnp.arange(shards), run) * block + local_c
    return jnp.where(local_c < block, ids_c, 0)


def target_ranks(
    user_repr,
    score_chunk: ScoreChunk,
    target_b: jax.Array,
    target_score_b: jax.Array,
    seen_bh: jax.Array,
    *,
    num_items: int,
    chunk: int,
    shards: int = 1,
) -> jax.Array:
    """0-based rank of each target among all items, seen items (``seen_bh``, 0 = none) masked.

    ``shards``: chunks laid out for an item table sharded by rows (``chunk_ids``).
    """
    n_chunks = chunk_count(num_items, chunk, shards)

    def body(count_b, c):
        ids_c = chunk_ids(c, num_items=num_items, chunk=chunk, shards=shards)
        s_bc = score_chunk(user_repr, ids_c)
        masked_bc = _chunk_mask(ids_c, seen_bh, num_items, shards)
        masked_bc = masked_bc | (ids_c[None, :] == target_b[:, None])
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
    shards: int = 1,
) -> tuple[jax.Array, jax.Array]:
    """Top-``k`` unseen items per row, chunked: (scores [B, K], item ids [B, K]).

    ``shards``: chunks laid out for an item table sharded by rows (``chunk_ids``).
    """
    n_chunks = chunk_count(num_items, chunk, shards)
    b = seen_bh.shape[0]

    def body(carry, c):
        best_s, best_i = carry
        ids_c = chunk_ids(c, num_items=num_items, chunk=chunk, shards=shards)
        s_bc = score_chunk(user_repr, ids_c)
        s_bc = jnp.where(_chunk_mask(ids_c, seen_bh, num_items, shards), NEG, s_bc)
        all_s = jnp.concatenate([best_s, s_bc], axis=1)
        all_i = jnp.concatenate([best_i, jnp.broadcast_to(ids_c, (b, ids_c.shape[0]))], axis=1)
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
