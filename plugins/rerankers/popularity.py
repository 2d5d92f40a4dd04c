"""Popularity de-biasing: long-tail items into the lists, xQuAD-style."""

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
    check_unit,
    context_field,
    gather,
    greedy,
    relevance,
    row_take,
    valid_candidates,
)


def head_items(pop_v: jax.Array, head_share: float) -> jax.Array:
    """``[V]`` True for the short head: the most popular items that together take the first
    ``head_share`` of all training interactions (the item that crosses the line included;
    ties in popularity go to the lower id). Items never interacted with, and the padding id
    0, are in the long tail."""
    pop = jnp.maximum(pop_v.astype(jnp.float32), 0.0).at[0].set(0.0)
    order = jnp.argsort(-pop, stable=True)
    sorted_pop = pop[order]
    before = jnp.cumsum(sorted_pop) - sorted_pop
    head_sorted = (before < head_share * sorted_pop.sum()) & (sorted_pop > 0)
    return jnp.zeros(pop.shape, bool).at[order].set(head_sorted)


@registered(registry.rerankers, "xquad")
@dataclasses.dataclass(frozen=True, kw_only=True)
class XQuAD(RerankerPlugin):
    """Personalised long-tail promotion (Abdollahpouri, Burke & Mobasher, "Managing Popularity
    Bias in Recommender Systems with Personalized Re-ranking", FLAIRS 2019), after xQuAD
    (Santos, Macdonald & Ounis, WWW 2010).

    Items split into the short head H (``head_items``: the most popular items holding the
    first ``head_share`` of the training interactions) and the long tail T. Greedily takes
    ``argmax_v (1 - lambda_) rel(v) + lambda_ * sum_{c in {H, T}} P(c|u) 1[v in c] cov_c(S)``:
    ``P(c|u)`` is the share of the learner's history in c (1/2 each for an empty history);
    ``cov_c(S)`` is how little the list S so far covers c: ``variant = "binary"``, 1 while
    S holds no item of c, else 0 (xQuAD's product with ``P(i|c) = 1[i in c]``);
    ``"smooth"``, ``1 - |S & c| / |S|`` (1 for an empty list), the paper's smooth variant.
    ``rel``: the model's scores (min-max scaled per list with ``normalize``), their
    ``P(v|u)``. ``lambda_ = 0``: relevance only.
    """

    needs: ClassVar[frozenset[str]] = frozenset({"popularity"})

    lambda_: float = 0.5
    head_share: float = 0.2
    variant: Literal["binary", "smooth"] = "smooth"
    normalize: bool = True

    def __post_init__(self) -> None:
        check_unit("lambda_", self.lambda_)
        check_unit("head_share", self.head_share)

    def __call__(
        self, ids_bc: jax.Array, scores_bc: jax.Array, ctx: RerankContext, *, k: int
    ) -> tuple[jax.Array, jax.Array]:
        check_k(k, ids_bc.shape[-1], "xquad")
        head_v = head_items(context_field(ctx, "popularity", "xquad"), self.head_share)
        real_bh = ctx.history_bh > 0
        n_head = jnp.sum(real_bh & head_v[ctx.history_bh], axis=-1).astype(jnp.float32)
        n_hist = jnp.sum(real_bh, axis=-1).astype(jnp.float32)
        p_head_b = jnp.where(n_hist > 0, n_head / jnp.maximum(n_hist, 1.0), 0.5)
        head_bc = head_v[ids_bc]
        valid = valid_candidates(ids_bc, scores_bc)
        rel = relevance(scores_bc, valid, normalize=self.normalize)
        lam, binary = self.lambda_, self.variant == "binary"

        def gain(state, taken_bc, t):
            del taken_bc, t
            heads_b, n_b = state
            if binary:
                cov_head = (heads_b == 0).astype(jnp.float32)
                cov_tail = (n_b - heads_b == 0).astype(jnp.float32)
            else:
                denom = jnp.maximum(n_b, 1.0)
                cov_head, cov_tail = 1.0 - heads_b / denom, 1.0 - (n_b - heads_b) / denom
            div_head = p_head_b * cov_head
            div_tail = (1.0 - p_head_b) * cov_tail
            div_bc = jnp.where(head_bc, div_head[:, None], div_tail[:, None])
            return (1.0 - lam) * rel + lam * div_bc

        def update(state, idx_b, ok_b, t):
            del t
            heads_b, n_b = state
            return heads_b + (ok_b & row_take(head_bc, idx_b)), n_b + ok_b

        zeros = jnp.zeros(ids_bc.shape[:1], jnp.float32)
        order, _ = greedy(k, valid, (zeros, zeros), gain, update)
        return gather(ids_bc, scores_bc, valid, order)
