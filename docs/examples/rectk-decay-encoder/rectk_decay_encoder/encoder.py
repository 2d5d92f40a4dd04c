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
from rectk.contracts import BuildContext, EncoderPlugin, EncoderTraits
from rectk.recipe import registered


class DecayEncoder(nnx.Module):
    def __init__(self, dim: int, initial_decay: float, *, rngs: nnx.Rngs):
        logit = jnp.log(initial_decay) - jnp.log1p(-initial_decay)
        self.decay_logit = nnx.Param(jnp.asarray(logit, jnp.float32))
        self.proj = nnx.Linear(dim, dim, rngs=rngs)

    def __call__(
        self,
        emb_bld: jax.Array,
        mask_bl: jax.Array,
        *,
        users_b: jax.Array | None = None,
        rngs: nnx.Rngs | None = None,
        last_only: bool = False,
    ) -> jax.Array:
        del users_b, rngs  # no per-learner parameters, no dropout
        w = jax.nn.sigmoid(self.decay_logit[...])
        length = emb_bld.shape[1]
        t = jnp.arange(length)
        # weights_ts[t, s] = w^(t - s) for s <= t, else 0
        weights_ts = jnp.where(t[:, None] >= t[None, :], w ** (t[:, None] - t[None, :]), 0.0)
        if last_only:  # ranking reads the last state only: compute that row alone
            weights_ts = weights_ts[-1:]
        weights_bts = weights_ts[None] * mask_bl[:, None, :]
        norm_bt = jnp.maximum(weights_bts.sum(-1, keepdims=True), 1e-6)
        pooled_btd = jnp.einsum("bts,bsd->btd", weights_bts, emb_bld) / norm_bt
        return self.proj(pooled_btd)


@registered(registry.encoders, "decay")
@dataclasses.dataclass(frozen=True, kw_only=True)
class DecayConfig(EncoderPlugin):
    """Exponentially decayed average of the history. ``initial_decay`` lies in (0, 1)."""

    # Weights depend on offsets t - s and skip padding: a window left-trimmed of padding gives
    # the same states, so evaluation may trim windows and train.group_by_length may be used.
    traits = EncoderTraits(variable_length=True)

    initial_decay: float = 0.8

    def __post_init__(self) -> None:
        if not 0.0 < self.initial_decay < 1.0:
            raise ValueError("encoder.initial_decay must lie in (0, 1)")

    def build(self, ctx: BuildContext) -> DecayEncoder:
        return DecayEncoder(ctx.dim, self.initial_decay, rngs=ctx.rngs)
