"""Diversity: maximal marginal relevance (MMR) and a determinantal point process (DPP).

Both compare items by the cosine of their vectors: the model's item embeddings, or the items'
topic distributions (``similarity``). Both need only the similarities of each taken item to
the candidates, never the ``C x C`` matrix: ``k`` rows of ``C`` per learner.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

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
    unit_rows,
    valid_candidates,
)

Similarity = Literal["embeddings", "topics"]

# A DPP candidate whose conditional variance falls to this is in the span of the items taken
# (numerically singular): the fast greedy algorithm stops there, and the list is then filled
# by relevance.
DPP_EPS = 1e-6


def candidate_features(
    ctx: RerankContext, ids_bc: jax.Array, similarity: Similarity, who: str
) -> jax.Array:
    """``[B, C, F]``: the unit-length vectors of the candidates that cosines are taken of."""
    table = context_field(ctx, similarity, who)
    return unit_rows(table)[ids_bc]


class _BySimilarity(RerankerPlugin):
    """What MMR and DPP share: the ``similarity`` source they read, and their inputs."""

    similarity: Similarity
    normalize: bool

    def requires(self) -> frozenset[str]:
        return frozenset({self.similarity})

    def _inputs(
        self, ids_bc: jax.Array, scores_bc: jax.Array, ctx: RerankContext, k: int, who: str
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(feats_bcf, valid_bc, rel_bc)``, after checking ``k``."""
        check_k(k, ids_bc.shape[-1], who)
        feats_bcf = candidate_features(ctx, ids_bc, self.similarity, who)
        valid = valid_candidates(ids_bc, scores_bc)
        return feats_bcf, valid, relevance(scores_bc, valid, normalize=self.normalize)


@registered(registry.rerankers, "mmr")
@dataclasses.dataclass(frozen=True, kw_only=True)
class MMR(_BySimilarity):
    """Maximal marginal relevance (Carbonell & Goldstein, SIGIR 1998).

    Greedily takes ``argmax_i  lambda_ * rel(i) - (1 - lambda_) * max_{j in S} sim(i, j)``
    over the candidates not yet taken, S being the list so far (the max over an empty list is
    0). ``rel``: the model's scores (min-max scaled per list with ``normalize``); ``sim``: the
    cosine of the items' embeddings or topic distributions. ``lambda_ = 1`` ranks by
    relevance alone, ``0`` by novelty alone.
    """

    lambda_: float = 0.5
    similarity: Similarity = "embeddings"
    normalize: bool = True

    def __post_init__(self) -> None:
        check_unit("lambda_", self.lambda_)

    def __call__(
        self, ids_bc: jax.Array, scores_bc: jax.Array, ctx: RerankContext, *, k: int
    ) -> tuple[jax.Array, jax.Array]:
        feats_bcf, valid, rel = self._inputs(ids_bc, scores_bc, ctx, k, "mmr")
        lam = self.lambda_

        def gain(maxsim_bc, taken_bc, t):
            del taken_bc, t
            return lam * rel - (1.0 - lam) * maxsim_bc

        def update(maxsim_bc, idx_b, ok_b, t):
            del ok_b
            sim_bc = jnp.einsum("bf,bcf->bc", row_take(feats_bcf, idx_b), feats_bcf)
            return jnp.where(t == 0, sim_bc, jnp.maximum(maxsim_bc, sim_bc))

        order, _ = greedy(k, valid, jnp.zeros(rel.shape, jnp.float32), gain, update)
        return gather(ids_bc, scores_bc, valid, order)


@registered(registry.rerankers, "dpp")
@dataclasses.dataclass(frozen=True, kw_only=True)
class DPP(_BySimilarity):
    """A determinantal point process, by the fast greedy MAP inference of Chen, Zhang & Zhou
    ("Fast Greedy MAP Inference for Determinantal Point Process to Improve Recommendation
    Diversity", NeurIPS 2018).

    The kernel is their quality-diversity kernel ``L = diag(r) S diag(r)``: ``S_ij = (1 +
    <f_i, f_j>) / 2`` for unit vectors ``f`` (embeddings or topics), ``r_i = exp(alpha *
    rel(i))`` with ``alpha = theta / (2 (1 - theta))``, so that ``log det L_Y`` is
    ``theta / (1 - theta) * sum_{i in Y} rel(i) + log det S_Y``. Each step takes the candidate
    that most increases ``log det L_Y``, keeping an incremental Cholesky factor (their
    Algorithm 1): ``O(k^2 C)`` per list beyond the ``k C`` similarities. It works with ``S``
    and adds ``2 alpha rel`` in log space, which selects exactly what ``L`` would without
    overflowing ``exp``. Where every candidate left is numerically in the span of the list
    (variance below ``DPP_EPS``), where their algorithm stops, the list goes on by relevance.
    ``theta = 0``: diversity only; towards 1: relevance only.
    """

    theta: float = 0.5
    similarity: Similarity = "embeddings"
    normalize: bool = True

    def __post_init__(self) -> None:
        check_unit("theta", self.theta, closed=False)

    def __call__(
        self, ids_bc: jax.Array, scores_bc: jax.Array, ctx: RerankContext, *, k: int
    ) -> tuple[jax.Array, jax.Array]:
        feats_bcf, valid, rel = self._inputs(ids_bc, scores_bc, ctx, k, "dpp")
        quality = (self.theta / (1.0 - self.theta)) * rel  # 2 alpha rel = log r^2
        batch, num = ids_bc.shape
        # S_ii = (1 + |f_i|^2) / 2: exactly 1 for an item with a vector, 1/2 for one without.
        d2_bc = jnp.where(jnp.any(feats_bcf != 0, axis=-1), 1.0, 0.5)
        cis_bkc = jnp.zeros((batch, k, num), jnp.float32)

        def gain(state, taken_bc, t):
            del t
            _, d2 = state
            diverse = d2 > DPP_EPS
            any_diverse = (diverse & valid & ~taken_bc).any(axis=-1, keepdims=True)
            logdet = jnp.where(diverse, quality + jnp.log(jnp.where(diverse, d2, 1.0)), -jnp.inf)
            return jnp.where(any_diverse, logdet, rel)

        def update(state, idx_b, ok_b, t):
            cis, d2 = state
            f_sel = row_take(feats_bcf, idx_b)
            s_sel = 0.5 * (1.0 + jnp.einsum("bf,bcf->bc", f_sel, feats_bcf))
            c_sel = jnp.take_along_axis(cis, idx_b[:, None, None], axis=2)[..., 0]  # [B, k]
            d2_sel = row_take(d2, idx_b)
            live = ok_b & (d2_sel > DPP_EPS)
            d_sel = jnp.sqrt(jnp.where(live, d2_sel, 1.0))
            e = (s_sel - jnp.einsum("bk,bkc->bc", c_sel, cis)) / d_sel[:, None]
            e = jnp.where(live[:, None], e, 0.0)
            cis = jax.lax.dynamic_update_slice_in_dim(cis, e[:, None, :], t, axis=1)
            return cis, d2 - e * e

        order, _ = greedy(k, valid, (cis_bkc, d2_bc), gain, update)
        return gather(ids_bc, scores_bc, valid, order)
