"""Item towers: item ids (and later content) -> the item table ``[V, D]``."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from rectk import registry
from rectk.contracts import BuildContext, ItemTowerPlugin
from rectk.recipe import registered


class IdTower(nnx.Module):
    """A learned embedding per item id; row 0 (padding) is kept at zero by masking."""

    def __init__(self, vocab_size: int, dim: int, *, init_std: float, rngs: nnx.Rngs):
        init = nnx.with_partitioning(nnx.initializers.normal(init_std), ("vocab", "embed"))
        self.embedding = nnx.Param(init(rngs.params(), (vocab_size, dim)))

    def __call__(self) -> jax.Array:
        return self.embedding[...].at[0].set(0.0)

    def rows(self, ids_u: jax.Array) -> jax.Array:
        """The vectors of items ``ids_u`` only, ``[U, D]`` (id 0 gives zeros)."""
        rows_ud = jnp.take(self.embedding[...], ids_u, axis=0)
        return jnp.where(ids_u[:, None] > 0, rows_ud, 0.0)


@registered(registry.item_towers, "id")
@dataclasses.dataclass(frozen=True, kw_only=True)
class IdTowerConfig(ItemTowerPlugin):
    """Item-id embeddings. ``init_std``: standard deviation of the normal initialiser."""

    init_std: float = 0.02

    def build(self, ctx: BuildContext) -> IdTower:
        return IdTower(ctx.vocab_size, ctx.dim, init_std=self.init_std, rngs=ctx.rngs)
