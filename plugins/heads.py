"""Scoring heads: user states x item table -> scores.

A head is called as ``head(user_nd, items_vd) -> scores_nv`` on any item subset (the full
table, a chunk of it, or sampled negatives).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from rectk import registry
from rectk.contracts import BuildContext, HeadPlugin
from rectk.recipe import registered


def _dense(din: int, dout: int, axes: tuple, rngs: nnx.Rngs, *, bias: bool = True) -> nnx.Linear:
    part = nnx.with_partitioning
    return nnx.Linear(
        din,
        dout,
        use_bias=bias,
        kernel_init=part(nnx.initializers.lecun_normal(), axes),
        bias_init=part(nnx.initializers.zeros_init(), (axes[1],)),
        rngs=rngs,
    )


def _value(param: nnx.Param | None) -> jax.Array:
    """A parameter that this module always creates (a layer's bias, typed optional)."""
    assert param is not None
    return param[...]


class DotHead(nnx.Module):
    def __call__(self, user_nd: jax.Array, items_vd: jax.Array) -> jax.Array:
        return jnp.einsum("nd,vd->nv", user_nd, items_vd)


@registered(registry.heads, "dot")
@dataclasses.dataclass(frozen=True, kw_only=True)
class DotHeadConfig(HeadPlugin):
    """Inner product of the user state and the item vector."""

    def build(self, ctx: BuildContext) -> DotHead:
        del ctx
        return DotHead()


# ---------------------------------------------------------------------------------------------
# Cosine similarity with a temperature.
# ---------------------------------------------------------------------------------------------


def _unit(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    """``x`` scaled to unit length along its last axis (a zero vector stays zero)."""
    sq = jnp.sum(jnp.square(x.astype(jnp.float32)), axis=-1, keepdims=True)
    return (x * jax.lax.rsqrt(jnp.maximum(sq, eps * eps))).astype(x.dtype)


class CosineHead(nnx.Module):
    def __init__(self, *, temperature: float, learn: bool):
        self.temperature = temperature
        log_t = jnp.log(jnp.asarray(temperature, jnp.float32))
        self.log_temperature = nnx.Param(log_t) if learn else None

    def __call__(self, user_nd: jax.Array, items_vd: jax.Array) -> jax.Array:
        cos_nv = jnp.einsum("nd,vd->nv", _unit(user_nd), _unit(items_vd))
        if self.log_temperature is None:
            return cos_nv / self.temperature
        return cos_nv * jnp.exp(-self.log_temperature[...]).astype(cos_nv.dtype)


@registered(registry.heads, "cosine")
@dataclasses.dataclass(frozen=True, kw_only=True)
class CosineHeadConfig(HeadPlugin):
    """Cosine similarity divided by a temperature (scores lie in ``[-1/T, 1/T]``).

    ``learn_temperature``: learn ``log T``, starting from ``temperature``.
    """

    temperature: float = 0.07
    learn_temperature: bool = False

    def __post_init__(self):
        if self.temperature <= 0:
            raise ValueError("head.temperature must be positive")

    def build(self, ctx: BuildContext) -> CosineHead:
        del ctx
        return CosineHead(temperature=self.temperature, learn=self.learn_temperature)


# ---------------------------------------------------------------------------------------------
# Bilinear form.
# ---------------------------------------------------------------------------------------------


class BilinearHead(nnx.Module):
    def __init__(self, dim: int, *, rngs: nnx.Rngs):
        def eye(key, shape, dtype=jnp.float32):
            del key
            rows, cols = shape
            return jnp.eye(rows, cols, dtype=dtype)

        init = nnx.with_partitioning(eye, ("embed", None))
        self.weight = nnx.Param(init(rngs.params(), (dim, dim)))

    def __call__(self, user_nd: jax.Array, items_vd: jax.Array) -> jax.Array:
        user_ne = jnp.einsum("nd,de->ne", user_nd, self.weight[...].astype(user_nd.dtype))
        return jnp.einsum("ne,ve->nv", user_ne, items_vd)


@registered(registry.heads, "bilinear")
@dataclasses.dataclass(frozen=True, kw_only=True)
class BilinearHeadConfig(HeadPlugin):
    """``u^T W i`` with a learned ``D x D`` matrix ``W``, initialised to the identity (so it
    starts as the dot head)."""

    def build(self, ctx: BuildContext) -> BilinearHead:
        return BilinearHead(ctx.dim, rngs=ctx.rngs)


# ---------------------------------------------------------------------------------------------
# MLP over (user, item) pairs.
# ---------------------------------------------------------------------------------------------


class MLPHead(nnx.Module):
    def __init__(self, dim: int, hidden: int, layers: int, chunk_elements: int, *, rngs):
        self.user_in = _dense(dim, hidden, ("embed", "mlp"), rngs)
        self.item_in = _dense(dim, hidden, ("embed", "mlp"), rngs, bias=False)
        self.hidden = nnx.List(
            [_dense(hidden, hidden, ("mlp", None), rngs) for _ in range(layers - 1)]
        )
        self.out = _dense(hidden, 1, ("mlp", None), rngs)
        self.chunk_elements = chunk_elements

    def __call__(self, user_nd: jax.Array, items_vd: jax.Array) -> jax.Array:
        # W [u; i] + b = (W_u u + b) + W_i i: project users and items once, not every pair.
        u_nh, i_vh = self.user_in(user_nd), self.item_in(items_vd)
        weights = [(layer.kernel[...], _value(layer.bias)) for layer in self.hidden]
        w_out_h, b_out = self.out.kernel[...][:, 0], _value(self.out.bias)[0]

        def block(i_ch):
            h_nch = jax.nn.relu(u_nh[:, None, :] + i_ch[None, :, :])
            for w_hh, b_h in weights:
                h_nch = jax.nn.relu(h_nch @ w_hh.astype(h_nch.dtype) + b_h.astype(h_nch.dtype))
            return h_nch @ w_out_h.astype(h_nch.dtype) + b_out.astype(h_nch.dtype)

        n, h = u_nh.shape
        v = i_vh.shape[0]
        chunk = max(1, min(v, self.chunk_elements // max(n * h, 1)))
        if chunk >= v:
            return block(i_vh)
        # [N, chunk, H] at a time; recomputed in the backward pass instead of stored.
        steps = math.ceil(v / chunk)
        i_sch = jnp.pad(i_vh, ((0, steps * chunk - v), (0, 0))).reshape(steps, chunk, h)
        s_snc = jax.lax.map(jax.checkpoint(block), i_sch)
        return s_snc.transpose(1, 0, 2).reshape(n, steps * chunk)[:, :v]


@registered(registry.heads, "mlp")
@dataclasses.dataclass(frozen=True, kw_only=True)
class MLPHeadConfig(HeadPlugin):
    """An MLP over ``concat(user, item)`` (ReLU, ``layers`` hidden layers of width ``hidden``,
    0 = model.dim) to one score, as NCF's MLP.

    The first layer is split as ``W_u u + W_i i`` so users and items are projected once; the
    rest runs on every (user, item) pair, at most ``chunk_elements`` activations at a time
    (recomputed in the backward pass). Full-softmax training costs ``N x V x hidden`` work per
    step: pair it with a sampled loss on large catalogues.
    """

    hidden: int = 0
    layers: int = 1
    chunk_elements: int = 1 << 24

    def __post_init__(self):
        if self.layers < 1 or self.hidden < 0 or self.chunk_elements < 1:
            raise ValueError("head.layers and head.chunk_elements must be at least 1")

    def build(self, ctx: BuildContext) -> MLPHead:
        dim = ctx.dim
        return MLPHead(dim, self.hidden or dim, self.layers, self.chunk_elements, rngs=ctx.rngs)
