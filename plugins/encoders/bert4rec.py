"""BERT4Rec (Sun et al., 2019): bidirectional self-attention over the learner's history."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from flax import nnx

from rectk import registry
from rectk.contracts import BuildContext, EncoderPlugin, EncoderTraits
from rectk.recipe import registered

from .layers import TransformerStack, check_stack_config, dense, gelu


class BERT4Rec(nnx.Module):
    def __init__(self, cfg: BERT4RecConfig, *, dim: int, max_len: int, rngs: nnx.Rngs):
        self.stack = TransformerStack(cfg, dim=dim, max_len=max_len, rngs=rngs)
        # The paper's output transform before the dot product with the item embeddings.
        on = cfg.output_transform
        self.out = dense(dim, dim, ("embed", "mlp"), cfg.init_std, rngs) if on else None
        self.out_norm = nnx.LayerNorm(dim, epsilon=cfg.layer_norm_eps, rngs=rngs) if on else None

    def __call__(self, emb_bld, mask_bl, *, users_b=None, rngs=None, last_only=False):
        del users_b
        length = emb_bld.shape[1]
        allowed_bll = jnp.broadcast_to(mask_bl[:, None, :], (*mask_bl.shape, length))
        x_bld = self.stack(emb_bld, allowed_bll, rngs, last_only=last_only)
        if self.out is None or self.out_norm is None:
            return x_bld
        return self.out_norm(gelu(self.out(x_bld)))


@registered(registry.encoders, "bert4rec")
@dataclasses.dataclass(frozen=True, kw_only=True)
class BERT4RecConfig(EncoderPlugin):
    """Bidirectional transformer encoder with learned positions: every position attends to
    every item of the window. Train it with ``[task] type = "masked_item"`` (the Cloze task).
    Next-item training would show each position its own target, so ``next_item`` takes it only
    with ``train.stride = 1`` (a window per prefix, trained at its last position): a way to
    fine-tune a masked-item run with the state read at the last history item.

    ``inner``: feed-forward width (0 = 4 x model.dim).
    ``output_transform``: the paper's dense + GELU + layer norm over the encoder's output before
    the dot product with the item embeddings (BERT's masked-LM head); ``false`` scores the
    encoder's output directly, as SASRec does (on Amazon Beauty that validates higher: see
    docs/notes/2026-11-30-bert4rec-gap.md).
    """

    # Left-trimmed windows give the same states; every position attends to later ones.
    traits = EncoderTraits(variable_length=True, bidirectional=True)

    layers: int = 2
    heads: int = 2
    inner: int = 0
    dropout: float = 0.1
    attn_dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    init_std: float = 0.02
    output_transform: bool = True

    def __post_init__(self):
        check_stack_config(self)

    def build(self, ctx: BuildContext) -> BERT4Rec:
        return BERT4Rec(self, dim=ctx.dim, max_len=ctx.max_len, rngs=ctx.rngs)
