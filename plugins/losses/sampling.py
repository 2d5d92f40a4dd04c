"""Negative samplers for sampled losses, with the expected counts their logQ correction needs.

Each draws ``K`` item ids (with replacement, never the padding id 0) shared by every row of the
batch, and returns ``log E[count of item j among the K draws]`` for each draw: ``log(K q_j)``
for a single distribution ``q``; for a mixture of ``K_a`` draws from ``q_a`` and ``K_b`` from
``q_b``, ``log(K_a q_a(j) + K_b q_b(j))``. Dividing ``exp(score_j)`` by that count makes the
sum over the draws an unbiased estimate of the sum over all items.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

Sampler = Literal["uniform", "popularity", "in_batch", "mixed"]


def popularity(item_counts: jax.Array, vocab_size: int) -> jax.Array:
    """``q[j]`` proportional to ``count[j] + 1`` for real items (add-one: every item can be
    drawn), ``q[0] = 0``."""
    counts_v = jnp.asarray(item_counts, jnp.float32)[:vocab_size] + 1.0
    counts_v = counts_v.at[0].set(0.0)
    return counts_v / counts_v.sum()


def _batch_distribution(target_n: jax.Array, weight_n: jax.Array) -> jax.Array:
    """Row-sampling probabilities: real rows (weight > 0) in proportion to their weight."""
    w_n = jnp.where(weight_n > 0, weight_n, 0.0).astype(jnp.float32)
    total = w_n.sum()
    return jnp.where(total > 0, w_n / jnp.maximum(total, 1e-30), 1.0 / w_n.shape[0])


def _batch_frequency(items_k: jax.Array, target_n: jax.Array, p_n: jax.Array) -> jax.Array:
    """The probability that one in-batch draw is item ``items_k[k]``."""
    return jnp.sum(jnp.where(items_k[:, None] == target_n[None, :], p_n[None, :], 0.0), axis=1)


def sample_negatives(
    sampler: Sampler,
    key: jax.Array,
    *,
    num: int,
    vocab_size: int,
    target_n: jax.Array,
    weight_n: jax.Array,
    item_counts: jax.Array | None = None,
    mix: float = 0.5,
) -> tuple[jax.Array, jax.Array]:
    """``(negatives_k, log_count_k)``: ``num`` draws and their log expected counts.

    Samplers: ``uniform`` over real items; ``popularity`` (needs ``item_counts``, see
    :func:`popularity`); ``in_batch``: the targets of random real rows of this batch (so items
    in proportion to their frequency among its targets); ``mixed``: ``round(mix * num)``
    in-batch draws and the rest uniform (mixed negative sampling, Yang et al. 2020).
    """
    num_real = vocab_size - 1
    if sampler == "uniform":
        neg_k = jax.random.randint(key, (num,), 1, vocab_size)
        return neg_k, jnp.full((num,), jnp.log(num / num_real), jnp.float32)
    if sampler == "popularity":
        if item_counts is None:
            raise ValueError(
                "the popularity sampler needs the training item counts: call "
                "loss.prepare(item_counts=...) first (the trainer does)"
            )
        q_v = popularity(item_counts, vocab_size)
        neg_k = jax.random.choice(key, vocab_size, (num,), p=q_v)
        return neg_k, jnp.log(num * jnp.take(q_v, neg_k))
    if sampler not in ("in_batch", "mixed"):
        raise ValueError(f"unknown sampler {sampler!r}")
    n_batch = num if sampler == "in_batch" else round(mix * num)
    n_uniform = num - n_batch
    key_b, key_u = jax.random.split(key)
    p_n = _batch_distribution(target_n, weight_n)
    rows_k = jax.random.choice(key_b, target_n.shape[0], (n_batch,), p=p_n)
    neg_k = jnp.concatenate(
        [jnp.take(target_n, rows_k), jax.random.randint(key_u, (n_uniform,), 1, vocab_size)]
    )
    count_k = n_batch * _batch_frequency(neg_k, target_n, p_n) + n_uniform / num_real
    return neg_k, jnp.log(jnp.maximum(count_k, 1e-30))
