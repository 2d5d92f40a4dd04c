"""A history encoder: an exponentially decayed average of the items seen so far.

State at position t: h_t = sum_{s<=t} w^(t-s) e_s / sum_{s<=t} w^(t-s), then a linear map.
The decay ``w`` is learned (through a sigmoid) from ``initial_decay``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from rectk import registry
from rectk.recipe import registered


class DecayEncoder(nnx.Module):
    def __init__(self, dim: int, initial_decay: float, *, rngs: nnx.Rngs):
        logit = jnp.log(initial_decay) - jnp.log1p(-initial_decay)
        self.decay_logit = nnx.Param(jnp.asarray(logit, jnp.float32))
        self.proj = nnx.Linear(dim, dim, rngs=rngs)

    def __call__(self, emb_bld, mask_bl, *, users_b=None, rngs=None) -> jax.Array:
        del users_b, rngs
        w = jax.nn.sigmoid(self.decay_logit[...])
        length = emb_bld.shape[1]
        t = jnp.arange(length)
        # weights_ts[t, s] = w^(t - s) for s <= t, else 0
        weights_ts = jnp.where(t[:, None] >= t[None, :], w ** (t[:, None] - t[None, :]), 0.0)
        weights_bts = weights_ts[None] * mask_bl[:, None, :]
        norm_bt = jnp.maximum(weights_bts.sum(-1, keepdims=True), 1e-6)
        pooled_btd = jnp.einsum("bts,bsd->btd", weights_bts, emb_bld) / norm_bt
        return self.proj(pooled_btd)


@registered(registry.encoders, "decay")
@dataclasses.dataclass(frozen=True, kw_only=True)
class DecayConfig:
    """Exponentially decayed average of the history. ``initial_decay`` lies in (0, 1)."""

    initial_decay: float = 0.8

    def __post_init__(self):
        if not 0.0 < self.initial_decay < 1.0:
            raise ValueError("encoder.initial_decay must lie in (0, 1)")

    def build(self, *, dim: int, max_len: int, num_users: int, rngs: nnx.Rngs) -> DecayEncoder:
        del max_len, num_users
        return DecayEncoder(dim, self.initial_decay, rngs=rngs)
