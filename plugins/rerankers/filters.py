"""Filters: prerequisites, items already seen, repeated items.

A filter keeps the candidates' order. What it removes becomes invalid (score -inf) and moves
behind every valid candidate, so a later stage, or the final list, never shows it before a
valid one.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp

from rectk import registry
from rectk.contracts import RerankContext, RerankerPlugin
from rectk.recipe import registered

from .greedy import (
    check_k,
    context_field,
    gather,
    greedy,
    in_rows,
    keep_in_order,
    valid_candidates,
)


def candidate_positions(ids_bc: jax.Array, valid_bc: jax.Array, query_bn: jax.Array) -> jax.Array:
    """``[B, N]``: the position of each queried id among the row's valid candidates (the
    first, if repeated), or -1 where it is not one."""
    num = ids_bc.shape[-1]
    keyed = jnp.where(valid_bc, ids_bc, -1)
    order = jnp.argsort(keyed, axis=-1, stable=True)
    sorted_ids = jnp.take_along_axis(keyed, order, axis=-1)
    at = jnp.minimum(jax.vmap(jnp.searchsorted)(sorted_ids, query_bn), num - 1)
    found = (jnp.take_along_axis(sorted_ids, at, axis=-1) == query_bn) & (query_bn > 0)
    return jnp.where(found, jnp.take_along_axis(order, at, axis=-1), -1)


@registered(registry.rerankers, "prerequisites")
@dataclasses.dataclass(frozen=True, kw_only=True)
class Prerequisites(RerankerPlugin):
    """Prerequisite-aware lists: a course is ready when every one of its prerequisites
    (``RerankContext.prereq_vp``, the catalogue's prerequisite graph) is in the learner's
    history, or, with ``earlier_in_list``, earlier in this list.

    ``mode = "remove"``: courses not ready are dropped (scored -inf, behind every valid
    candidate). ``mode = "demote"``: they move ``penalty`` places down (behind the candidate
    that many places below them), keeping their scores. Otherwise the input order is kept.
    With ``earlier_in_list`` the list is built greedily: each place takes the first
    candidate, in that order, that is ready given the history and the courses already
    placed (in demote mode, the lowest input position plus its penalty), so a course can
    follow its prerequisites into the list.
    """

    needs: ClassVar[frozenset[str]] = frozenset({"prerequisites"})

    mode: Literal["remove", "demote"] = "remove"
    penalty: int = 10
    earlier_in_list: bool = False

    def __post_init__(self) -> None:
        if self.penalty < 0:
            raise ValueError(f"penalty must be a number of places >= 0, got {self.penalty!r}")

    def __call__(
        self, ids_bc: jax.Array, scores_bc: jax.Array, ctx: RerankContext, *, k: int
    ) -> tuple[jax.Array, jax.Array]:
        check_k(k, ids_bc.shape[-1], "prerequisites")
        batch, num = ids_bc.shape
        req_bcp = context_field(ctx, "prerequisites", "prerequisites")[ids_bc]
        flat = req_bcp.reshape(batch, -1)
        met_bcp = (req_bcp <= 0) | in_rows(flat, ctx.history_bh).reshape(req_bcp.shape)
        valid = valid_candidates(ids_bc, scores_bc)
        pos_bc = jnp.broadcast_to(jnp.arange(num, dtype=jnp.float32), (batch, num))
        demote = self.mode == "demote"
        late = self.penalty + 0.5  # behind the candidate ``penalty`` places below

        if not self.earlier_in_list:
            ready = met_bcp.all(axis=-1)
            if not demote:
                return keep_in_order(ids_bc, scores_bc, valid & ready, k)
            key = pos_bc + jnp.where(ready, 0.0, late) + jnp.where(valid, 0.0, 4.0 * num)
            return gather(ids_bc, scores_bc, valid, jnp.argsort(key, axis=-1)[:, :k])

        loc_bcp = candidate_positions(ids_bc, valid, flat).reshape(req_bcp.shape)

        def ready_now(kept_bc):
            in_list = jnp.take_along_axis(kept_bc, jnp.maximum(loc_bcp, 0).reshape(batch, -1), 1)
            in_list = in_list.reshape(req_bcp.shape) & (loc_bcp >= 0)
            return (met_bcp | in_list).all(axis=-1)

        def gain(kept_bc, taken_bc, t):
            del taken_bc, t
            ready = ready_now(kept_bc)
            if demote:
                return -(pos_bc + jnp.where(ready, 0.0, late))
            return jnp.where(ready, -pos_bc, -jnp.inf)

        def update(kept_bc, idx_b, ok_b, t):
            del t
            hit = jnp.arange(num)[None, :] == idx_b[:, None]
            ready = jnp.take_along_axis(ready_now(kept_bc), idx_b[:, None], 1)[:, 0]
            placed = ok_b & (ready | demote)
            return kept_bc | (hit & placed[:, None])

        order, placed = greedy(k, valid, jnp.zeros(valid.shape, bool), gain, update)
        # In remove mode, a course taken only once no ready one was left is not placed.
        return gather(ids_bc, scores_bc, placed, order)


@registered(registry.rerankers, "filter_seen")
@dataclasses.dataclass(frozen=True, kw_only=True)
class FilterSeen(RerankerPlugin):
    """Drops the candidates already in the learner's history (scored -inf, moved behind
    every valid candidate); the others keep their order."""

    def __call__(
        self, ids_bc: jax.Array, scores_bc: jax.Array, ctx: RerankContext, *, k: int
    ) -> tuple[jax.Array, jax.Array]:
        check_k(k, ids_bc.shape[-1], "filter_seen")
        seen = in_rows(ids_bc, ctx.history_bh)
        return keep_in_order(ids_bc, scores_bc, valid_candidates(ids_bc, scores_bc) & ~seen, k)


@registered(registry.rerankers, "dedupe")
@dataclasses.dataclass(frozen=True, kw_only=True)
class Dedupe(RerankerPlugin):
    """Drops every repeat of an id after its first valid occurrence (scored -inf, moved
    behind every valid candidate); the others keep their order."""

    def __call__(
        self, ids_bc: jax.Array, scores_bc: jax.Array, ctx: RerankContext, *, k: int
    ) -> tuple[jax.Array, jax.Array]:
        del ctx
        check_k(k, ids_bc.shape[-1], "dedupe")
        valid = valid_candidates(ids_bc, scores_bc)
        num = ids_bc.shape[-1]
        # Invalid candidates get distinct negative keys, so they repeat nothing.
        keyed = jnp.where(valid, ids_bc, -1 - jnp.arange(num)[None, :])
        order = jnp.argsort(keyed, axis=-1, stable=True)
        sorted_ids = jnp.take_along_axis(keyed, order, axis=-1)
        repeat_sorted = jnp.concatenate(
            [jnp.zeros_like(sorted_ids[:, :1], bool), sorted_ids[:, 1:] == sorted_ids[:, :-1]], 1
        )
        repeat = (
            jnp.zeros_like(repeat_sorted)
            .at[jnp.arange(ids_bc.shape[0])[:, None], order]
            .set(repeat_sorted)
        )
        return keep_in_order(ids_bc, scores_bc, valid & ~repeat, k)
