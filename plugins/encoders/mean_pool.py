"""Mean pooling: a learner is the running mean of the items they took."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from rectk import registry
from rectk.contracts import BuildContext, EncoderPlugin, EncoderTraits
from rectk.recipe import registered

from .layers import dense, require


class MeanPool(nnx.Module):
    def __init__(self, cfg: MeanPoolConfig, *, dim: int, rngs: nnx.Rngs):
        self.norm = nnx.LayerNorm(dim, rngs=rngs)
        self.proj = dense(dim, dim, ("embed", "mlp"), cfg.init_std, rngs) if cfg.linear else None

    def __call__(
        self, emb_bld, mask_bl, *, users_b=None, rngs=None, last_only: bool = False
    ) -> jax.Array:
        del users_b, rngs
        count_bl = jnp.cumsum(mask_bl, axis=1).astype(emb_bld.dtype)
        mean_bld = jnp.cumsum(emb_bld, axis=1) / jnp.maximum(count_bl, 1.0)[..., None]
        mean_bld = self.norm(mean_bld)
        h_bld = self.proj(mean_bld) if self.proj is not None else mean_bld
        return h_bld[:, -1:] if last_only else h_bld


@registered(registry.encoders, "mean_pool")
@dataclasses.dataclass(frozen=True, kw_only=True)
class MeanPoolConfig(EncoderPlugin):
    """Causal running mean of the history's item embeddings (padding excluded), layer-normalised
    (so its scale does not shrink with the item tower's small initial vectors).

    ``linear``: follow it by a learned linear map.
    """

    traits = EncoderTraits(variable_length=True)  # left-trimmed windows give the same states

    linear: bool = True
    init_std: float = 0.02

    def __post_init__(self):
        require(self.init_std >= 0.0, "init_std", ">= 0", self.init_std)

    def build(self, ctx: BuildContext) -> MeanPool:
        return MeanPool(self, dim=ctx.dim, rngs=ctx.rngs)
