"""Training losses over user states, the item table and targets.

A loss config is called as ``loss(head=, user_nd=, table_vd=, target_n=, weight_n=, key=)``
and returns the weighted mean loss (a scalar). Rows with weight 0 (padding) contribute nothing.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from rectk import registry
from rectk.recipe import registered


def weighted_mean(values_n: jax.Array, weight_n: jax.Array) -> jax.Array:
    """Mean of ``values_n`` over rows with weight > 0 (padding rows may hold inf or NaN)."""
    safe_n = jnp.where(weight_n > 0, values_n, 0.0)
    return jnp.sum(safe_n * weight_n) / jnp.maximum(jnp.sum(weight_n), 1.0)


@registered(registry.losses, "softmax_ce")
@dataclasses.dataclass(frozen=True, kw_only=True)
class SoftmaxCE:
    """Full-softmax cross-entropy over every item (the padding item excluded)."""

    def __call__(self, *, head, user_nd, table_vd, target_n, weight_n, key):
        del key
        scores_nv = head(user_nd, table_vd).astype(jnp.float32)
        scores_nv = scores_nv.at[:, 0].set(-jnp.inf)
        logz_n = jax.nn.logsumexp(scores_nv, axis=-1)
        pos_n = jnp.take_along_axis(scores_nv, target_n[:, None], axis=-1)[:, 0]
        return weighted_mean(logz_n - pos_n, weight_n)
