"""GRU4Rec (Hidasi et al., 2016): a recurrent network over the learner's history."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from rectk import registry
from rectk.contracts import BuildContext, EncoderPlugin, EncoderTraits
from rectk.recipe import registered

from .layers import dropout, require


def _linear(din: int, dout: int, axes: tuple, rngs: nnx.Rngs) -> nnx.Linear:
    part = nnx.with_partitioning
    return nnx.Linear(
        din,
        dout,
        kernel_init=part(nnx.initializers.lecun_normal(), axes),
        bias_init=part(nnx.initializers.zeros_init(), (axes[1],)),
        rngs=rngs,
    )


def _gru_cell(din: int, hidden: int, rngs: nnx.Rngs) -> nnx.GRUCell:
    part = nnx.with_partitioning
    return nnx.GRUCell(
        din,
        hidden,
        kernel_init=part(nnx.initializers.lecun_normal(), ("embed", "mlp")),
        recurrent_kernel_init=part(nnx.initializers.orthogonal(), (None, "mlp")),
        bias_init=part(nnx.initializers.zeros_init(), ("mlp",)),
        rngs=rngs,
    )


def run_gru(cell: nnx.GRUCell, hidden: int, x_bld: jax.Array, mask_bl: jax.Array) -> jax.Array:
    """The cell scanned over time; padding steps keep the state (zero before the first item)."""
    h0_bh = jnp.zeros((x_bld.shape[0], hidden), x_bld.dtype)

    def step(h_bh, inputs):
        x_bd, m_b = inputs
        new_bh, _ = cell(h_bh, x_bd)
        h_bh = jnp.where(m_b[:, None], new_bh.astype(h_bh.dtype), h_bh)
        return h_bh, h_bh

    _, h_lbh = jax.lax.scan(step, h0_bh, (x_bld.swapaxes(0, 1), mask_bl.swapaxes(0, 1)))
    return h_lbh.swapaxes(0, 1)


class GRU4Rec(nnx.Module):
    def __init__(self, cfg: GRU4RecConfig, *, dim: int, rngs: nnx.Rngs):
        self.hidden = cfg.hidden or dim
        self.norm = nnx.LayerNorm(dim, rngs=rngs)
        self.cells = nnx.List(
            [
                _gru_cell(dim if i == 0 else self.hidden, self.hidden, rngs)
                for i in range(cfg.layers)
            ]
        )
        self.out = _linear(self.hidden, dim, ("mlp", "embed"), rngs)
        self.rate = cfg.dropout

    def __call__(
        self, emb_bld, mask_bl, *, users_b=None, rngs=None, last_only: bool = False
    ) -> jax.Array:
        del users_b
        x_blh = dropout(self.norm(emb_bld), self.rate, rngs)
        for cell in self.cells:
            x_blh = dropout(run_gru(cell, self.hidden, x_blh, mask_bl), self.rate, rngs)
        h_bld = self.out(x_blh)
        return h_bld[:, -1:] if last_only else h_bld


@registered(registry.encoders, "gru4rec")
@dataclasses.dataclass(frozen=True, kw_only=True)
class GRU4RecConfig(EncoderPlugin):
    """Stacked GRUs over the layer-normalised item embeddings, then a linear map to
    ``model.dim``.

    Causal by construction: the state at position ``t`` has read items ``<= t`` only. The layer
    norm (not in the paper) makes the small initial item embeddings (``init_std`` 0.02) a
    full-scale input; without it the GRU learns several times slower.
    ``hidden``: GRU width (0 = model.dim). ``dropout``: on the inputs and after each layer.
    """

    # Left-trimmed windows give the same states. Ranking compiles without XLA:CPU's YNNPACK
    # fusions: the scan's small per-step products run slower with them
    # (benchmarks/eval_speed.py; docs/notes/2026-11-29-eval-speed.md).
    traits = EncoderTraits(variable_length=True, library_dots=False)

    layers: int = 1
    hidden: int = 0
    dropout: float = 0.2

    def __post_init__(self):
        require(self.layers >= 1, "layers", "at least 1", self.layers)
        require(self.hidden >= 0, "hidden", ">= 0 (0 = model.dim)", self.hidden)
        require(0.0 <= self.dropout < 1.0, "dropout", "in [0, 1)", self.dropout)

    def build(self, ctx: BuildContext) -> GRU4Rec:
        return GRU4Rec(self, dim=ctx.dim, rngs=ctx.rngs)
