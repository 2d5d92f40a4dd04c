"""Attention for knowledge tracing: strict or inclusive causal masks, AKT's monotonic
(distance-aware, exponentially decaying) attention, and pyKT's transformer layer.

Shapes: B learners, L answers, H heads, D model width (``dh = D / H`` per head).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from rectk_plugins.encoders.layers import dropout


def causal(length: int, *, strict: bool) -> jax.Array:
    """``[L, L]`` True where position ``t`` may attend to ``s``: ``s < t`` (``strict``) or
    ``s <= t``."""
    return jnp.tril(jnp.ones((length, length), bool), k=-1 if strict else 0)


class KTAttention(nnx.Module):
    """Multi-head attention; ``monotonic`` adds AKT's decay (Ghosh et al. 2020, eqs. 6-7, as
    pyKT computes it): each score is multiplied by ``exp(-softplus(theta_h) * d(t, s))``,
    ``d`` the distance from ``t`` to ``s`` weighted by the attention that lies between them
    (computed without gradient). A row with nothing to attend to (the first, under a strict
    mask) outputs zeros, as pyKT's ``zero_pad``."""

    def __init__(self, dim: int, heads: int, *, monotonic: bool, kq_same: bool, rngs: nnx.Rngs):
        if dim % heads:
            raise ValueError(f"heads = {heads} must divide the model width {dim}")
        self.heads, self.monotonic = heads, monotonic
        init = nnx.initializers.xavier_uniform()
        self.q = nnx.Linear(dim, dim, kernel_init=init, rngs=rngs)
        self.k = None if kq_same else nnx.Linear(dim, dim, kernel_init=init, rngs=rngs)
        self.v = nnx.Linear(dim, dim, kernel_init=init, rngs=rngs)
        self.out = nnx.Linear(dim, dim, kernel_init=init, rngs=rngs)
        self.gammas = nnx.Param(nnx.initializers.xavier_uniform()(rngs.params(), (heads, 1)))

    def __call__(
        self,
        query_bld: jax.Array,
        key_bld: jax.Array,
        value_bld: jax.Array,
        allowed_bll: jax.Array,
        *,
        attn_dropout: float = 0.0,
        rngs: nnx.Rngs | None = None,
    ) -> jax.Array:
        b, length, dim = query_bld.shape
        h = self.heads
        dh = dim // h
        key_proj = self.q if self.k is None else self.k
        q = self.q(query_bld).reshape(b, length, h, dh)
        k = key_proj(key_bld).reshape(b, length, h, dh)
        v = self.v(value_bld).reshape(b, length, h, dh)
        scores = jnp.einsum("blhd,bmhd->bhlm", q, k) / math.sqrt(dh)
        allowed = allowed_bll[:, None]
        if self.monotonic:
            probs = jax.nn.softmax(jnp.where(allowed, scores, -1e32), axis=-1)
            probs = jax.lax.stop_gradient(jnp.where(allowed, probs, 0.0))
            cum = jnp.cumsum(probs, axis=-1)
            total = jnp.sum(probs, axis=-1, keepdims=True)
            pos = jnp.arange(length)
            distance = jnp.abs(pos[None, :] - pos[:, None]).astype(scores.dtype)
            dist = jnp.sqrt(jnp.clip((total - cum) * distance, 0.0))
            gamma = -jax.nn.softplus(self.gammas[...])[None, :, :, None]  # [1, H, 1, 1]
            effect = jnp.clip(jnp.exp(jax.lax.stop_gradient(dist) * gamma), 1e-5, 1e5)
            scores = scores * effect
        scores = jnp.where(allowed, scores, -1e32)
        probs = jax.nn.softmax(scores, axis=-1)
        probs = jnp.where(allowed.any(-1, keepdims=True), probs, 0.0)  # zero_pad
        probs = dropout(probs, attn_dropout, rngs)
        out = jnp.einsum("bhlm,bmhd->blhd", probs, v).reshape(b, length, dim)
        return self.out(out)


class KTTransformerLayer(nnx.Module):
    """pyKT's ``TransformerLayer``: attention (its weights dropped out at ``rate``, as pyKT's
    AKT, simpleKT and SAKT do), residual, layer norm, then (``apply_pos``) a ReLU feed-forward
    block, residual, layer norm."""

    def __init__(
        self,
        dim: int,
        heads: int,
        inner: int,
        *,
        monotonic: bool,
        kq_same: bool,
        rngs: nnx.Rngs,
    ):
        self.attn = KTAttention(dim, heads, monotonic=monotonic, kq_same=kq_same, rngs=rngs)
        self.norm1 = nnx.LayerNorm(dim, rngs=rngs)
        self.ff1 = nnx.Linear(dim, inner, rngs=rngs)
        self.ff2 = nnx.Linear(inner, dim, rngs=rngs)
        self.norm2 = nnx.LayerNorm(dim, rngs=rngs)

    def __call__(
        self,
        query_bld: jax.Array,
        key_bld: jax.Array,
        value_bld: jax.Array,
        allowed_bll: jax.Array,
        *,
        apply_pos: bool,
        rate: float,
        rngs: nnx.Rngs | None,
    ) -> jax.Array:
        x = query_bld + dropout(
            self.attn(query_bld, key_bld, value_bld, allowed_bll, attn_dropout=rate, rngs=rngs),
            rate,
            rngs,
        )
        x = self.norm1(x)
        if apply_pos:
            inner = dropout(jax.nn.relu(self.ff1(x)), rate, rngs)
            x = self.norm2(x + dropout(self.ff2(inner), rate, rngs))
        return x
