"""Target difficulty: exercises a learner is likely, but not certain, to answer right."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

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
    row_take,
    valid_candidates,
)


def band_fit(p: jax.Array, low: float, high: float, tolerance: float) -> jax.Array:
    """``exp(-dist(p, [low, high]) / tolerance)``: 1 inside the band, falling by a factor e
    every ``tolerance`` of distance outside it; 0 where ``p`` is NaN (unknown).

    >>> [round(float(x), 3) for x in band_fit(jnp.array([0.75, 0.6, 1.0]), 0.7, 0.85, 0.1)]
    [1.0, 0.368, 0.223]
    """
    dist = jnp.maximum(jnp.maximum(low - p, p - high), 0.0)
    return jnp.where(jnp.isnan(p), 0.0, jnp.exp(-dist / tolerance))


def concept_weakness(success_bv: jax.Array, topics_vt: jax.Array) -> jax.Array:
    """``[B, T]`` how weak each learner is in each concept, 1 for the weakest, 0 for the
    strongest: ``1 - mastery``, min-max scaled per learner over the concepts with a known
    item. A concept's mastery is the mean predicted success of its items (weighted by the
    item's share in it; NaN success ignored); a concept without a known item gets 0."""
    known_bv = ~jnp.isnan(success_bv)
    p_bv = jnp.where(known_bv, success_bv, 0.0).astype(jnp.float32)
    topics = topics_vt.astype(jnp.float32)
    mass_bt = known_bv.astype(jnp.float32) @ topics
    mastery_bt = (p_bv @ topics) / jnp.maximum(mass_bt, 1e-9)
    has_bt = mass_bt > 0
    weak_bt = jnp.where(has_bt, 1.0 - mastery_bt, 0.0)
    lo = jnp.min(jnp.where(has_bt, weak_bt, jnp.inf), axis=-1, keepdims=True)
    hi = jnp.max(jnp.where(has_bt, weak_bt, -jnp.inf), axis=-1, keepdims=True)
    span = jnp.where(hi > lo, hi - lo, 1.0)
    return jnp.where(has_bt & (hi > lo), (weak_bt - lo) / span, 0.0)


@registered(registry.rerankers, "target_difficulty")
@dataclasses.dataclass(frozen=True, kw_only=True)
class TargetDifficulty(RerankerPlugin):
    """Next exercises at the right difficulty ("the 85% rule", Wilson et al., Nature
    Communications 2019), covering the learner's weakest concepts.

    Reads each candidate's predicted success probability ``p`` (``RerankContext.success_bv``,
    from a knowledge-tracing model) and greedily takes ``argmax_c fit(p_c) * (1 - coverage +
    coverage * need_c)``, ``need_c = sum_t topic_ct * weak_t / (1 + n_t)``: ``fit`` is 1
    inside the band ``[low, high]`` and ``exp(-distance / tolerance)`` outside it
    (``band_fit``); ``weak_t`` is the learner's weakness in concept t (``concept_weakness``: 1
    for the weakest concept, 0 for the strongest, from the mean predicted success of each
    concept's items); ``n_t`` how many of the list's exercises so far are of concept t (their
    topic mass), so that a second exercise of a concept is worth less and the list spreads
    over the weak concepts. The product keeps the band first: weakness reorders exercises of
    similar fit, and never makes one far outside the band win on its own. Concepts are the
    item topics (one-hot for exercises with one concept). Ties go to the earlier candidate.
    ``coverage = 0``: the band alone (topics not read). The scores of the list are the
    incoming scores.
    """

    needs: ClassVar[frozenset[str]] = frozenset({"success"})

    low: float = 0.7
    high: float = 0.85
    tolerance: float = 0.1
    coverage: float = 0.3

    def __post_init__(self) -> None:
        check_unit("low", self.low)
        check_unit("high", self.high)
        check_unit("coverage", self.coverage)
        if not self.tolerance > 0:
            raise ValueError(f"tolerance must be positive, got {self.tolerance!r}")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")

    def requires(self) -> frozenset[str]:
        return self.needs | ({"topics"} if self.coverage > 0 else set())

    def __call__(
        self, ids_bc: jax.Array, scores_bc: jax.Array, ctx: RerankContext, *, k: int
    ) -> tuple[jax.Array, jax.Array]:
        check_k(k, ids_bc.shape[-1], "target_difficulty")
        success_bv = context_field(ctx, "success", "target_difficulty").astype(jnp.float32)
        p_bc = jnp.take_along_axis(success_bv, ids_bc, axis=1)
        valid = valid_candidates(ids_bc, scores_bc)
        fit_bc = jnp.where(valid, band_fit(p_bc, self.low, self.high, self.tolerance), 0.0)
        cov = self.coverage
        if cov == 0:
            zeros = jnp.zeros(ids_bc.shape[:1], jnp.float32)
            order, _ = greedy(k, valid, zeros, lambda s, t, i: fit_bc, lambda s, i, o, t: s)
            return gather(ids_bc, scores_bc, valid, order)

        topics_vt = context_field(ctx, "topics", "target_difficulty").astype(jnp.float32)
        weak_bt = concept_weakness(success_bv, topics_vt)
        cand_bct = topics_vt[ids_bc]

        def gain(n_bt, taken_bc, t):
            del taken_bc, t
            need_bc = jnp.einsum("bct,bt->bc", cand_bct, weak_bt / (1.0 + n_bt))
            return fit_bc * (1.0 - cov + cov * need_bc)

        def update(n_bt, idx_b, ok_b, t):
            del t
            return n_bt + jnp.where(ok_b[:, None], row_take(cand_bct, idx_b), 0.0)

        order, _ = greedy(k, valid, jnp.zeros_like(weak_bt), gain, update)
        return gather(ids_bc, scores_bc, valid, order)
