"""Calibration: a list whose topic mix matches the learner's history (Steck, RecSys 2018)."""

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
    relevance,
    row_take,
    valid_candidates,
)


def history_topics(topics_vt: jax.Array, history_bh: jax.Array) -> jax.Array:
    """``p(g|u)``, ``[B, T]``: the mean topic distribution of each learner's history items
    (padding excluded; zeros for an empty history)."""
    real = (history_bh > 0).astype(jnp.float32)
    total_bt = jnp.einsum("bh,bht->bt", real, topics_vt[history_bh].astype(jnp.float32))
    return total_bt / jnp.maximum(real.sum(-1, keepdims=True), 1.0)


def kl_smoothed(p_bt: jax.Array, q_bct: jax.Array, alpha: float) -> jax.Array:
    """``[B, C]``: ``KL(p || (1 - alpha) q + alpha p)``, with ``0 log 0 = 0``."""
    p = p_bt[:, None, :]
    q_tilde = (1.0 - alpha) * q_bct + alpha * p
    pos = p > 0
    ratio = jnp.where(pos, p, 1.0) / jnp.where(pos, q_tilde, 1.0)
    return jnp.sum(jnp.where(pos, p * jnp.log(ratio), 0.0), axis=-1)


@registered(registry.rerankers, "calibration")
@dataclasses.dataclass(frozen=True, kw_only=True)
class Calibration(RerankerPlugin):
    """Calibrated recommendations (Steck, "Calibrated Recommendations", RecSys 2018).

    Greedily maximises ``(1 - lambda_) * sum_{i in I} rel(i) - lambda_ * KL(p || q~(I))``
    over lists I: ``p`` is the learner's topic distribution (the mean of the history items'
    topic distributions), ``q(I)`` the mean of the list's, smoothed as ``q~ = (1 - alpha) q +
    alpha p`` so that the divergence stays finite (Steck's ``alpha = 0.01``). Each step adds
    the candidate of highest objective, the greedy algorithm of the paper. ``rel``: the
    model's scores (min-max scaled per list with ``normalize``). A learner with no history
    (or none with topics) gets ``p = 0``: the list is ranked by relevance.
    """

    needs: ClassVar[frozenset[str]] = frozenset({"topics"})

    lambda_: float = 0.5
    alpha: float = 0.01
    normalize: bool = True

    def __post_init__(self) -> None:
        check_unit("lambda_", self.lambda_)
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"alpha must lie in (0, 1], got {self.alpha!r}")

    def __call__(
        self, ids_bc: jax.Array, scores_bc: jax.Array, ctx: RerankContext, *, k: int
    ) -> tuple[jax.Array, jax.Array]:
        check_k(k, ids_bc.shape[-1], "calibration")
        topics_vt = context_field(ctx, "topics", "calibration").astype(jnp.float32)
        p_bt = history_topics(topics_vt, ctx.history_bh)
        cand_bct = topics_vt[ids_bc]
        valid = valid_candidates(ids_bc, scores_bc)
        rel = relevance(scores_bc, valid, normalize=self.normalize)
        lam, alpha = self.lambda_, self.alpha

        def gain(state, taken_bc, t):
            del taken_bc, t
            sum_bt, n_b = state
            q_bct = (sum_bt[:, None, :] + cand_bct) / (n_b + 1.0)[:, None, None]
            return (1.0 - lam) * rel - lam * kl_smoothed(p_bt, q_bct, alpha)

        def update(state, idx_b, ok_b, t):
            del t
            sum_bt, n_b = state
            add = jnp.where(ok_b[:, None], row_take(cand_bct, idx_b), 0.0)
            return sum_bt + add, n_b + ok_b

        state = (jnp.zeros_like(p_bt), jnp.zeros(ids_bc.shape[:1], jnp.float32))
        order, _ = greedy(k, valid, state, gain, update)
        return gather(ids_bc, scores_bc, valid, order)
