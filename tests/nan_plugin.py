"""A loss that turns NaN on batches containing one chosen target item (tests only)."""

import dataclasses

import jax.numpy as jnp

from rectk import registry
from rectk.contracts import LossPlugin
from rectk.recipe import registered
from rectk_plugins.losses import SoftmaxCE


@registered(registry.losses, "nan_on_item")
@dataclasses.dataclass(frozen=True, kw_only=True)
class NanOnItem(LossPlugin):
    item: int = 1

    def __call__(self, *, head, user_nd, table_vd, target_n, weight_n, key):
        ce = SoftmaxCE()(
            head=head,
            user_nd=user_nd,
            table_vd=table_vd,
            target_n=target_n,
            weight_n=weight_n,
            key=key,
        )
        return ce + jnp.where(jnp.any(target_n == self.item), jnp.nan, 0.0)
