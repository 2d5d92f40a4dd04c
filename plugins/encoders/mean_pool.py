"""Mean pooling: a learner is the running mean of the items they took."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from rectk import registry
from rectk.recipe import registered
from rectk_plugins.encoders.layers import dense


class MeanPool(nnx.Module):
    variable_length = True  # a window left-trimmed of padding gives the same states

    def __init__(self, cfg: MeanPoolConfig, *, dim: int, rngs: nnx.Rngs):
        self.norm = nnx.LayerNorm(dim, rngs=rngs)
        self.proj = dense(dim, dim, ("embed", "mlp"), cfg.init_std, rngs) if cfg.linear else None

    def __call__(self, emb_bld, mask_bl, *, users_b=None, rngs=None) -> jax.Array:
        del users_b, rngs
        count_bl = jnp.cumsum(mask_bl, axis=1).astype(emb_bld.dtype)
        mean_bld = jnp.cumsum(emb_bld, axis=1) / jnp.maximum(count_bl, 1.0)[..., None]
        mean_bld = self.norm(mean_bld)
        return self.proj(mean_bld) if self.proj is not None else mean_bld


@registered(registry.encoders, "mean_pool")
@dataclasses.dataclass(frozen=True, kw_only=True)
class MeanPoolConfig:
    """Causal running mean of the history's item embeddings (padding excluded), layer-normalised
    (so its scale does not shrink with the item tower's small initial vectors).

    ``linear``: follow it by a learned linear map.
    """

    linear: bool = True
    init_std: float = 0.02

    def build(self, *, dim: int, max_len: int, num_users: int, rngs: nnx.Rngs) -> MeanPool:
        del max_len, num_users
        return MeanPool(self, dim=dim, rngs=rngs)
