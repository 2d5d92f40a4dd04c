"""Matrix factorisation (as trained by BPR, Rendle et al. 2009): one learned vector per learner."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from rectk import registry
from rectk.contracts import BuildContext, EncoderPlugin, EncoderTraits
from rectk.recipe import registered

from .layers import require


class UserTable(nnx.Module):
    def __init__(self, num_users: int, dim: int, *, init_std: float, rngs: nnx.Rngs):
        init = nnx.with_partitioning(nnx.initializers.normal(init_std), ("users", "embed"))
        self.embedding = nnx.Param(init(rngs.params(), (num_users, dim)))

    def __call__(
        self, emb_bld, mask_bl, *, users_b=None, rngs=None, last_only: bool = False
    ) -> jax.Array:
        del mask_bl, rngs
        if users_b is None:
            raise ValueError("bpr_mf needs the learners' ids (users_b); it ignores the history")
        table_ud = self.embedding[...].at[0].set(0.0)  # id 0: padding rows, unknown learners
        user_bd = jnp.take(table_ud, users_b, axis=0).astype(emb_bld.dtype)
        b, length, d = emb_bld.shape
        return jnp.broadcast_to(user_bd[:, None, :], (b, 1 if last_only else length, d))


@registered(registry.encoders, "bpr_mf")
@dataclasses.dataclass(frozen=True, kw_only=True)
class BPRMFConfig(EncoderPlugin):
    """A learned vector per learner, the same at every position; the history is ignored.

    With ``loss.type = "bpr"`` this is BPR-MF. It only knows the learners it trained on: a new
    learner (id 0, e.g. ``rectk recommend --history``) scores every item 0. The logical axis of
    its rows is ``users`` (replicated unless ``mesh.rules`` maps it). ``init_std``: larger
    than the item tower's, as the user vector alone carries the learner into the scores.
    """

    traits = EncoderTraits(variable_length=True)  # the same state at every position

    init_std: float = 0.1

    def __post_init__(self):
        require(self.init_std >= 0.0, "init_std", ">= 0", self.init_std)

    def build(self, ctx: BuildContext) -> UserTable:
        return UserTable(ctx.num_users, ctx.dim, init_std=self.init_std, rngs=ctx.rngs)
