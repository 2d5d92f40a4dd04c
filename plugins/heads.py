"""Scoring heads: user states x item table -> scores."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from rectk import registry
from rectk.recipe import registered


class DotHead(nnx.Module):
    def __call__(self, user_nd: jax.Array, items_vd: jax.Array) -> jax.Array:
        return jnp.einsum("nd,vd->nv", user_nd, items_vd)


@registered(registry.heads, "dot")
@dataclasses.dataclass(frozen=True, kw_only=True)
class DotHeadConfig:
    """Inner product of the user state and the item vector."""

    def build(self, *, dim: int, rngs: nnx.Rngs) -> DotHead:
        del dim, rngs
        return DotHead()
