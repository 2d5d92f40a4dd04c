"""SASRec (Kang & McAuley, 2018): causal self-attention over the learner's history."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from flax import nnx

from rectk import registry
from rectk.contracts import BuildContext, EncoderPlugin, EncoderTraits
from rectk.recipe import registered

from .layers import TransformerStack, check_stack_config


class SASRec(nnx.Module):
    def __init__(self, cfg: SASRecConfig, *, dim: int, max_len: int, rngs: nnx.Rngs):
        self.stack = TransformerStack(cfg, dim=dim, max_len=max_len, rngs=rngs)

    def __call__(self, emb_bld, mask_bl, *, users_b=None, rngs=None, last_only=False):
        del users_b
        length = emb_bld.shape[1]
        causal_ll = jnp.tril(jnp.ones((length, length), bool))
        return self.stack(emb_bld, causal_ll[None] & mask_bl[:, None, :], rngs, last_only=last_only)


@registered(registry.encoders, "sasrec")
@dataclasses.dataclass(frozen=True, kw_only=True)
class SASRecConfig(EncoderPlugin):
    """Causal transformer encoder with learned positions.

    ``inner``: feed-forward width (0 = 4 x model.dim).
    """

    traits = EncoderTraits(variable_length=True)  # left-trimmed windows give the same states

    layers: int = 2
    heads: int = 2
    inner: int = 0
    dropout: float = 0.2
    attn_dropout: float = 0.2
    layer_norm_eps: float = 1e-12
    init_std: float = 0.02

    def __post_init__(self):
        check_stack_config(self)

    def build(self, ctx: BuildContext) -> SASRec:
        return SASRec(self, dim=ctx.dim, max_len=ctx.max_len, rngs=ctx.rngs)
