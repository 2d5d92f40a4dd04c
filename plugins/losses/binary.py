"""Losses on the target against a few uniformly sampled negatives: BPR, BCE and gBCE.

Negatives are drawn per row (``[N, K]``, as in the papers; scoring gathers ``N x K x D`` item
vectors) or, with ``shared = true``, once for the whole batch (``[K]``, far cheaper for large
``K``). A negative equal to the row's target is left out.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from rectk import registry
from rectk.contracts import LossPlugin
from rectk.recipe import registered

from .common import negative_scores, target_scores, weighted_mean


def bpr(pos_n, neg_nk, valid_nk, weight_n) -> jax.Array:
    """Bayesian personalised ranking: ``-log sigmoid(pos - neg)``, mean over valid negatives."""
    terms_nk = -jax.nn.log_sigmoid(pos_n[:, None] - neg_nk)
    per_row_n = jnp.sum(jnp.where(valid_nk, terms_nk, 0.0), 1) / jnp.maximum(valid_nk.sum(1), 1)
    return weighted_mean(per_row_n, weight_n)


def binary_ce(pos_n, neg_nk, valid_nk, weight_n, beta: float = 1.0) -> jax.Array:
    """``-beta log sigmoid(pos) - sum_k log(1 - sigmoid(neg_k))`` over valid negatives
    (``beta = 1``: BCE; ``beta < 1``: gBCE)."""
    neg_n = jnp.sum(jnp.where(valid_nk, -jax.nn.log_sigmoid(-neg_nk), 0.0), axis=1)
    return weighted_mean(-beta * jax.nn.log_sigmoid(pos_n) + neg_n, weight_n)


def gbce_beta(num_negatives: int, num_items: int, t: float) -> float:
    """gSASRec's ``beta = alpha (t (1 - 1/alpha) + 1/alpha)``, ``alpha = K / (num_items - 1)``
    the negative sampling rate (``t = 0``: BCE; ``t = 1``: ``beta = alpha``).

    >>> round(gbce_beta(1, 101, 0.0), 6), round(gbce_beta(1, 101, 1.0), 6)
    (1.0, 0.01)
    """
    alpha = num_negatives / max(num_items - 1, 1)
    return alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)


@dataclasses.dataclass(frozen=True, kw_only=True)
class _UniformNegatives(LossPlugin):
    """Draws uniform negatives with ``key`` and scores them; subclasses give ``_loss``."""

    num_negatives: int = 1
    shared: bool = False

    def __post_init__(self):
        if self.num_negatives < 1:
            raise ValueError("loss.num_negatives must be at least 1")

    def __call__(self, *, head, user_nd, table_vd, target_n, weight_n, key):
        shape = (self.num_negatives,) if self.shared else (target_n.shape[0], self.num_negatives)
        negatives = jax.random.randint(key, shape, 1, table_vd.shape[0])
        return self.with_negatives(
            head=head,
            user_nd=user_nd,
            table_vd=table_vd,
            target_n=target_n,
            weight_n=weight_n,
            negatives=negatives,
        )

    def with_negatives(self, *, head, user_nd, table_vd, target_n, weight_n, negatives):
        """The loss on given negatives, ``[K]`` (shared) or ``[N, K]``."""
        pos_n = target_scores(head, user_nd, table_vd, target_n).astype(jnp.float32)
        neg_nk = negative_scores(head, user_nd, table_vd, negatives).astype(jnp.float32)
        valid_nk = jnp.broadcast_to(negatives != target_n[:, None], neg_nk.shape)
        return self._loss(pos_n, neg_nk, valid_nk, weight_n, num_items=table_vd.shape[0] - 1)

    def _loss(self, pos_n, neg_nk, valid_nk, weight_n, *, num_items):
        raise NotImplementedError


@registered(registry.losses, "bpr")
@dataclasses.dataclass(frozen=True, kw_only=True)
class BPR(_UniformNegatives):
    """BPR (Rendle et al. 2009) against ``num_negatives`` uniform negatives per target."""

    def _loss(self, pos_n, neg_nk, valid_nk, weight_n, *, num_items):
        return bpr(pos_n, neg_nk, valid_nk, weight_n)


@registered(registry.losses, "bce")
@dataclasses.dataclass(frozen=True, kw_only=True)
class BCE(_UniformNegatives):
    """Binary cross-entropy: the target is positive, ``num_negatives`` uniform items negative
    (SASRec's original loss with one negative per position)."""

    def _loss(self, pos_n, neg_nk, valid_nk, weight_n, *, num_items):
        return binary_ce(pos_n, neg_nk, valid_nk, weight_n)


@registered(registry.losses, "gbce")
@dataclasses.dataclass(frozen=True, kw_only=True)
class GBCE(_UniformNegatives):
    """Generalised BCE (Petrov & Macdonald 2023, gSASRec): the positive term scaled by
    ``beta`` (:func:`gbce_beta`, from ``t`` and the sampling rate) to undo the overconfidence
    that negative sampling teaches.

    ``t``: calibration, 0 = BCE, 1 = fully calibrated; the paper's 0.75 with 256 negatives.
    (gSASRec's code also divides by ``K + 1``, a constant factor left out here.)
    """

    num_negatives: int = 256
    t: float = 0.75

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.t <= 1.0:
            raise ValueError("loss.t must lie in [0, 1]")

    def _loss(self, pos_n, neg_nk, valid_nk, weight_n, *, num_items):
        beta = gbce_beta(self.num_negatives, num_items, self.t)
        return binary_ce(pos_n, neg_nk, valid_nk, weight_n, beta=beta)
