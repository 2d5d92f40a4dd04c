"""Caser (Tang & Wang, 2018): convolutions over the embeddings of the most recent items."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from rectk import registry
from rectk.contracts import BuildContext, EncoderPlugin, EncoderTraits
from rectk.recipe import registered

from .layers import dense, dropout, require


class Caser(nnx.Module):
    def __init__(self, cfg: CaserConfig, *, dim: int, num_users: int, rngs: nnx.Rngs):
        part, normal = nnx.with_partitioning, nnx.initializers.normal(cfg.init_std)
        w, n_h, n_v = cfg.window, cfg.horizontal, cfg.vertical
        self.window = w
        self.norm = nnx.LayerNorm(dim, rngs=rngs)
        self.horizontal = nnx.List(
            [
                nnx.Conv(
                    dim,
                    n_h,
                    kernel_size=(h,),
                    padding="VALID",
                    kernel_init=part(nnx.initializers.lecun_normal(), (None, "embed", "mlp")),
                    bias_init=part(nnx.initializers.zeros_init(), ("mlp",)),
                    rngs=rngs,
                )
                for h in range(1, w + 1)
            ]
        )
        self.vertical = nnx.Param(part(normal, (None, None))(rngs.params(), (w, n_v)))
        self.fc = dense(w * n_h + n_v * dim, dim, ("mlp", "embed"), cfg.init_std, rngs)
        self.users = (
            nnx.Param(part(normal, ("users", "embed"))(rngs.params(), (num_users, dim)))
            if cfg.user_embedding
            else None
        )
        self.out = dense(
            2 * dim if cfg.user_embedding else dim, dim, ("mlp", "embed"), cfg.init_std, rngs
        )
        self.rate = cfg.dropout

    def __call__(
        self, emb_bld, mask_bl, *, users_b=None, rngs=None, last_only: bool = False
    ) -> jax.Array:
        b, length, d = emb_bld.shape
        # Unit-scale inputs; padding stays zero, as the paper pads short sequences.
        emb_bld = self.norm(emb_bld) * mask_bl[..., None]
        w = self.window
        # The window of the last ``w`` items ending at every position (causal), [B*L, W, D].
        padded_bpd = jnp.pad(emb_bld, ((0, 0), (w - 1, 0), (0, 0)))
        index_lw = jnp.arange(length)[:, None] + jnp.arange(w)[None, :]
        win_nwd = padded_bpd[:, index_lw, :].reshape(b * length, w, d)
        # Horizontal filters of heights 1..W, max-pooled over their placements in the window.
        pooled = [jax.nn.relu(conv(win_nwd)).max(axis=1) for conv in self.horizontal]
        # Vertical filters: weighted sums of the window's rows.
        vert_nfd = jnp.einsum("nwd,wf->nfd", win_nwd, self.vertical[...].astype(win_nwd.dtype))
        z_nk = jnp.concatenate([*pooled, vert_nfd.reshape(b * length, -1)], axis=-1)
        z_nd = jax.nn.relu(self.fc(dropout(z_nk, self.rate, rngs)))
        z_bld = z_nd.reshape(b, length, d)
        if self.users is not None:
            if users_b is None:
                raise ValueError("caser with user_embedding needs the learners' ids (users_b)")
            user_bd = jnp.take(self.users[...], users_b, axis=0).astype(z_bld.dtype)
            z_bld = jnp.concatenate([z_bld, jnp.broadcast_to(user_bd[:, None], z_bld.shape)], -1)
        h_bld = self.out(z_bld)
        return h_bld[:, -1:] if last_only else h_bld


@registered(registry.encoders, "caser")
@dataclasses.dataclass(frozen=True, kw_only=True)
class CaserConfig(EncoderPlugin):
    """Horizontal and vertical convolutions over the last ``window`` item embeddings.

    Computed causally at every position ``t`` over the window ending at ``t`` (left-padded with
    zeros), so every position trains and the last one recommends. The embeddings are
    layer-normalised first (not in the paper: the item tower's small initial vectors would
    otherwise make it learn several times slower). ``horizontal``: filters per
    height 1..window (ReLU, max-pooled); ``vertical``: filters over the window's rows;
    ``dropout``: before the fully connected layer (the paper's 0.5). ``user_embedding``: also
    a learned per-learner vector, concatenated before the output layer, as in the paper (a new
    learner, id 0, gets the untrained padding row).
    """

    traits = EncoderTraits(variable_length=True)  # left-trimmed windows give the same states

    window: int = 5
    horizontal: int = 16
    vertical: int = 4
    dropout: float = 0.5
    user_embedding: bool = True
    init_std: float = 0.02

    def __post_init__(self):
        for key in ("window", "horizontal", "vertical"):
            require(getattr(self, key) >= 1, key, "at least 1", getattr(self, key))
        require(0.0 <= self.dropout < 1.0, "dropout", "in [0, 1)", self.dropout)
        require(self.init_std >= 0.0, "init_std", ">= 0", self.init_std)

    def build(self, ctx: BuildContext) -> Caser:
        return Caser(self, dim=ctx.dim, num_users=ctx.num_users, rngs=ctx.rngs)
