"""What the losses share: the weighted mean over real rows and scoring (user, item) pairs."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def weighted_mean(values_n: jax.Array, weight_n: jax.Array) -> jax.Array:
    """Mean of ``values_n`` over rows with weight > 0 (padding rows may hold inf or NaN)."""
    safe_n = jnp.where(weight_n > 0, values_n, 0.0)
    return jnp.sum(safe_n * weight_n) / jnp.maximum(jnp.sum(weight_n), 1.0)


def pair_scores(head, user_nd: jax.Array, items_nkd: jax.Array) -> jax.Array:
    """``scores_nk[n, k] = head(user n, item k of row n)``: each row its own items.

    Any head works (``head(user_nd, items_vd) -> scores_nv`` is applied row by row).

    >>> dot = lambda u, i: u @ i.T
    >>> pair_scores(dot, jnp.ones((2, 3)), jnp.ones((2, 4, 3))).shape
    (2, 4)
    """
    return jax.vmap(lambda u_d, items_kd: head(u_d[None], items_kd)[0])(user_nd, items_nkd)


def negative_scores(head, user_nd: jax.Array, table_vd: jax.Array, negatives) -> jax.Array:
    """Scores ``[N, K]`` of negatives shared by all rows (``[K]``) or drawn per row (``[N, K]``)."""
    items = jnp.take(table_vd, negatives, axis=0)
    if negatives.ndim == 1:
        return head(user_nd, items)
    return pair_scores(head, user_nd, items)


def target_scores(head, user_nd: jax.Array, table_vd: jax.Array, target_n: jax.Array):
    """The score of each row's target, ``[N]``."""
    return pair_scores(head, user_nd, jnp.take(table_vd, target_n, axis=0)[:, None, :])[:, 0]
