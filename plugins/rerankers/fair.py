"""FA*IR: ranked group fairness for a protected group (Zehlike et al., CIKM 2017).

The table of the minimum number of protected candidates every prefix must hold is computed
once on the host (NumPy and ``math``; no SciPy), the ranking itself runs jitted.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from rectk import registry
from rectk.contracts import RerankContext, RerankerPlugin
from rectk.recipe import registered

from .greedy import check_k, context_field, gather, greedy, valid_candidates

__all__ = ["FAIR", "adjusted_mtable", "fail_probability", "mtable"]


def _binomial_cdf(n: int, p: float) -> np.ndarray:
    """``F(m; n, p)`` for ``m = 0..n`` (log-space terms, so any ``n`` is safe)."""
    m = np.arange(n + 1)
    log_pmf = (
        np.array([math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in m])
        + m * math.log(p)
        + (n - m) * math.log1p(-p)
    )
    return np.cumsum(np.exp(log_pmf))


@functools.lru_cache(maxsize=256)
def mtable(k: int, p: float, alpha: float) -> tuple[int, ...]:
    """``m(1..k)``: the fewest protected candidates a prefix of length ``i`` may hold and
    still pass the ranked group fairness test at significance ``alpha`` (the paper's
    ``m_{alpha,p}(i) = F^-1(alpha; i, p)``, the binomial inverse CDF: the smallest ``m``
    with ``F(m; i, p) >= alpha``). Unadjusted for the ``k`` tests of a ranking.

    >>> mtable(12, 0.5, 0.1)  # the paper's table, row p = 0.5
    (0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 4)
    """
    if alpha <= 0.0:
        return (0,) * k
    return tuple(int(np.argmax(_binomial_cdf(i, p) >= alpha - 1e-12)) for i in range(1, k + 1))


def fail_probability(table: tuple[int, ...], p: float) -> float:
    """The probability that a fair ranking (each position protected with probability ``p``,
    independently) fails ``table`` at some prefix: exact, by dynamic programming over the
    number of protected candidates among the rankings that have passed so far."""
    alive = np.zeros(len(table) + 1)
    alive[0] = 1.0
    for m in table:
        nxt = alive * (1.0 - p)
        nxt[1:] += alive[:-1] * p
        nxt[:m] = 0.0
        alive = nxt
    return float(1.0 - alive.sum())


@functools.lru_cache(maxsize=256)
def adjusted_mtable(k: int, p: float, alpha: float) -> tuple[int, ...]:
    """The table with the paper's multiple-testing adjustment (their Algorithm 2): a
    corrected significance ``alpha_c <= alpha`` found by bisection, so that a fair ranking
    fails *any* of the ``k`` prefix tests with probability as close to ``alpha`` as the
    discrete tables allow. Of the two tables adjacent to that probability, the closer is
    kept (the lower on a tie), as the authors' implementation does.
    """
    top = mtable(k, p, alpha)
    if fail_probability(top, p) <= alpha:
        return top
    lo, hi = 0.0, alpha  # fail(mtable(lo)) <= alpha < fail(mtable(hi))
    for _ in range(64):
        mid = 0.5 * (lo + hi)
        if fail_probability(mtable(k, p, mid), p) <= alpha:
            lo = mid
        else:
            hi = mid
    low, high = mtable(k, p, lo), mtable(k, p, hi)
    f_low, f_high = fail_probability(low, p), fail_probability(high, p)
    return low if abs(f_low - alpha) <= abs(f_high - alpha) else high


@registered(registry.rerankers, "fair")
@dataclasses.dataclass(frozen=True, kw_only=True)
class FAIR(RerankerPlugin):
    """FA*IR (Zehlike, Bonchi, Castillo, Hajian, Megahed & Baeza-Yates, "FA*IR: A Fair Top-k
    Ranking Algorithm", CIKM 2017).

    The protected group: the items whose provider group is in ``protected_groups``, group ids
    (``>= 1``) or, in a recipe, the data set's group names (``["psu", "uiuc"]``, resolved by
    ``with_group_names`` when the run's side information is known). Every
    prefix of length ``i`` of the list must hold at least ``m(i)`` protected items, the
    binomial inverse CDF at significance ``alpha`` for a minimum proportion ``p``, with the
    paper's multiple-testing adjustment of ``alpha`` where ``adjust`` (``adjusted_mtable``).
    The ranking is their Algorithm 1: at position ``i``, the best protected candidate if the
    list holds fewer than ``m(i)`` protected items, otherwise the better of the best
    protected and the best unprotected one, by model score. Where a list runs out of
    protected candidates, it goes on by score.
    """

    needs: ClassVar[frozenset[str]] = frozenset({"groups"})

    protected_groups: tuple[int | str, ...]
    p: float = 0.5
    alpha: float = 0.1
    adjust: bool = True

    def __post_init__(self) -> None:
        ok = all(
            (isinstance(g, str) and g) or (isinstance(g, int) and g >= 1)
            for g in self.protected_groups
        )
        if not self.protected_groups or not ok:
            raise ValueError(
                f"protected_groups must list at least one group (a name, or an id >= 1), got "
                f"{self.protected_groups!r}"
            )
        if not 0.0 < self.p < 1.0:
            raise ValueError(f"p must lie in (0, 1), got {self.p!r}")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must lie in (0, 1), got {self.alpha!r}")

    def with_group_names(self, names: tuple[str, ...]) -> FAIR:
        ids = {name: g for g, name in enumerate(names, 1)}
        unknown = [g for g in self.protected_groups if isinstance(g, str) and g not in ids]
        if unknown:
            shown = ", ".join(repr(n) for n in names[:20]) + (", ..." if len(names) > 20 else "")
            raise ValueError(
                f"protected_groups: unknown group {unknown[0]!r}; the data set's groups: "
                f"{shown or '(none)'}"
            )
        resolved = tuple(ids[g] if isinstance(g, str) else g for g in self.protected_groups)
        return dataclasses.replace(self, protected_groups=resolved)

    def table(self, k: int) -> tuple[int, ...]:
        """``m(1..k)`` as this configuration uses it."""
        make = adjusted_mtable if self.adjust else mtable
        return make(k, float(self.p), float(self.alpha))

    def __call__(
        self, ids_bc: jax.Array, scores_bc: jax.Array, ctx: RerankContext, *, k: int
    ) -> tuple[jax.Array, jax.Array]:
        check_k(k, ids_bc.shape[-1], "fair")
        groups_v = context_field(ctx, "groups", "fair")
        if not all(isinstance(g, int) for g in self.protected_groups):
            raise ValueError(
                "fair: protected_groups names groups; resolve them to ids with "
                "with_group_names(the data set's group names) first"
            )
        protected_bc = jnp.isin(groups_v[ids_bc], jnp.asarray(self.protected_groups))
        m_k = jnp.asarray(self.table(k), jnp.int32)
        valid = valid_candidates(ids_bc, scores_bc)
        protected_bc = protected_bc & valid
        scores = scores_bc.astype(jnp.float32)

        def gain(count_b, taken_bc, t):
            need = (count_b < m_k[t]) & (protected_bc & ~taken_bc).any(axis=-1)
            return jnp.where(need[:, None] & ~protected_bc, -jnp.inf, scores)

        def update(count_b, idx_b, ok_b, t):
            del ok_b, t
            return count_b + jnp.take_along_axis(protected_bc, idx_b[:, None], 1)[:, 0]

        order, _ = greedy(k, valid, jnp.zeros(ids_bc.shape[:1], jnp.int32), gain, update)
        return gather(ids_bc, scores_bc, valid, order)
