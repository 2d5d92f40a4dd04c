"""Exposure fairness across provider groups, amortised over the learners of a batch."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp

from rectk import registry
from rectk.contracts import RerankContext, RerankerPlugin
from rectk.recipe import registered

from .greedy import check_k, check_unit, context_field, gather, pick, relevance, valid_candidates


def position_weights(k: int) -> jax.Array:
    """``[k]``: the exposure of rank ``r = 1..k``, ``1 / log2(1 + r)`` (the DCG discount)."""
    return 1.0 / jnp.log2(2.0 + jnp.arange(k, dtype=jnp.float32))


def target_shares(
    group_bc: jax.Array,
    rel_bc: jax.Array,
    known_bc: jax.Array,
    target: str,
    num_groups: int,
    groups_v: jax.Array | None = None,
) -> jax.Array:
    """``[G]``: each group's target share of the exposure. ``"relevance"``: its share of the
    relevance of the batch's candidates (merit); ``"equal"``: the same for every group with a
    candidate in the batch; ``"catalogue"``: proportional to the group's number of items in
    the catalogue (``groups_v``), among the groups with a candidate in the batch (Singh &
    Joachims's demographic parity). Group 0 (unknown) gets none."""
    if target == "relevance":
        merit = jnp.where(known_bc, rel_bc, 0.0)
    else:
        merit = known_bc.astype(jnp.float32)
    merit_g = jnp.zeros(num_groups, jnp.float32).at[group_bc.ravel()].add(merit.ravel())
    if target != "relevance":
        merit_g = (merit_g > 0).astype(jnp.float32)
    if target == "catalogue":
        assert groups_v is not None
        size_g = jnp.zeros(num_groups, jnp.float32).at[groups_v[1:]].add(1.0).at[0].set(0.0)
        merit_g = merit_g * size_g
    total = merit_g.sum()
    return jnp.where(total > 0, merit_g / jnp.where(total > 0, total, 1.0), 0.0)


@registered(registry.rerankers, "exposure")
@dataclasses.dataclass(frozen=True, kw_only=True)
class Exposure(RerankerPlugin):
    """Amortised fairness of exposure between provider groups, over the learners of a batch.

    The group-level criterion of Singh & Joachims ("Fairness of Exposure in Rankings", KDD
    2018): each group's exposure should be proportional to its merit, the relevance of its
    items (``target = "relevance"``, their disparate-treatment constraint, which makes a
    group's total exposure proportional to its total relevance), or the same for every group
    (``target = "equal"``), or proportional to its number of items in the catalogue (``target =
    "catalogue"``, their demographic parity, which ``exposure_disparity`` measures); amortised,
    as Biega,
    Gummadi & Weikum amortise attention over a series of rankings ("Equity of Attention",
    SIGIR 2018), over all the lists of the batch rather than within each list.

    Exposure of rank ``r`` is ``1 / log2(1 + r)``. The targets ``tau_g`` are the groups'
    shares of the relevance (or of the groups) over the candidates of the whole batch. The
    greedy algorithm fills the lists position by position; at each position it visits the
    learners in batch order, and learner b takes the open candidate of highest
    ``(1 - lambda_) * rel(i) + lambda_ * (tau_g(i) - share_g(i))``, ``share_g`` being the
    group's share of all exposure given so far in the batch (0 before any), then that
    candidate's group gains the exposure of the position. ``rel``: each list's scores min-max
    scaled to ``[0, 1]``. Items of group 0 (unknown) neither gain nor owe exposure. The
    result depends on the other learners of the batch and on their order
    (``across_learners``). ``lambda_ = 0``: relevance only.
    """

    needs: ClassVar[frozenset[str]] = frozenset({"groups"})
    across_learners: ClassVar[bool] = True

    lambda_: float = 0.5
    target: Literal["relevance", "equal", "catalogue"] = "relevance"

    def __post_init__(self) -> None:
        check_unit("lambda_", self.lambda_)

    def __call__(
        self, ids_bc: jax.Array, scores_bc: jax.Array, ctx: RerankContext, *, k: int
    ) -> tuple[jax.Array, jax.Array]:
        check_k(k, ids_bc.shape[-1], "exposure")
        groups_v = context_field(ctx, "groups", "exposure").astype(jnp.int32)
        num_groups = groups_v.shape[0]  # group ids lie in [0, V)
        group_bc = groups_v[ids_bc]
        valid = valid_candidates(ids_bc, scores_bc)
        rel = relevance(scores_bc, valid, normalize=True)
        known = valid & (group_bc > 0)
        tau_g = target_shares(group_bc, rel, known, self.target, num_groups, groups_v)
        weights_k = position_weights(k)
        lam = self.lambda_

        def learner(carry, row):
            exposure_g, total, w = carry
            rel_c, group_c, known_c, open_c, unused_c = row
            share_c = exposure_g[group_c] / jnp.where(total > 0, total, 1.0)
            deficit_c = jnp.where(group_c > 0, tau_g[group_c] - share_c, 0.0)
            gain_c = (1.0 - lam) * rel_c + lam * deficit_c
            idx = pick(gain_c[None], open_c[None], unused_c[None])[0]
            add = jnp.where(known_c[idx], w, 0.0)
            return (exposure_g.at[group_c[idx]].add(add), total + add, w), idx

        def position(carry, t):
            exposure_g, total, taken = carry
            rows = (rel, group_bc, known, valid & ~taken, ~taken)
            (exposure_g, total, _), idx_b = jax.lax.scan(
                learner, (exposure_g, total, weights_k[t]), rows
            )
            taken = taken | (jnp.arange(taken.shape[-1])[None, :] == idx_b[:, None])
            return (exposure_g, total, taken), idx_b

        start = (jnp.zeros(num_groups, jnp.float32), jnp.float32(0.0), jnp.zeros(valid.shape, bool))
        _, order_kb = jax.lax.scan(position, start, jnp.arange(k))
        return gather(ids_bc, scores_bc, valid, order_kb.T)
