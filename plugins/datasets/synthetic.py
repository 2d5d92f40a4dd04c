"""A seeded synthetic catalogue of any size: power-law popularity, a learnable next item.

Made for scale (``benchmarks/scale.py``, docs/scale.md): a million items and a million
learners build in seconds, vectorised over learners with numpy.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rectk import registry
from rectk.contracts import DatasetPlugin
from rectk.data.types import Dataset, Interactions
from rectk.recipe import registered


def generate(
    *,
    num_items: int,
    num_learners: int,
    mean_length: float,
    zipf_exponent: float,
    branching: int,
    follow: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(user, item, position)`` int32 arrays of the synthetic log, ordered by learner then
    position (users and items 1-based).

    Item popularity follows a power law: a draw by popularity picks the item of rank ``r``
    with probability proportional to ``r ** -zipf_exponent`` (the successors' walk steepens
    the observed slope a little) (ranks are a seeded permutation of
    the ids). Each item has ``branching`` successors, drawn once by popularity. A learner's
    first item is drawn by popularity; each next one is, with probability ``follow``, one of
    the current item's successors (uniformly), else a fresh draw by popularity. A sequence
    model can learn the successors; popularity alone cannot. Lengths are ``2 + Poisson(
    mean_length - 2)``, so every learner has at least two items.

    >>> u, i, t = generate(num_items=50, num_learners=3, mean_length=4, zipf_exponent=1.0,
    ...                    branching=2, follow=0.8, seed=0)
    >>> bool(u.min() == 1 and u.max() == 3 and i.min() >= 1 and i.max() <= 50)
    True
    """
    rng = np.random.default_rng(seed)
    weight_r = np.arange(1, num_items + 1, dtype=np.float64) ** -float(zipf_exponent)
    cdf_r = np.cumsum(weight_r)
    cdf_r /= cdf_r[-1]
    item_of_rank = rng.permutation(num_items).astype(np.int32) + 1

    def popular(n: int) -> np.ndarray:
        ranks = np.searchsorted(cdf_r, rng.random(n), side="right")
        return item_of_rank[np.minimum(ranks, num_items - 1)]

    successors_vb = popular((num_items + 1) * branching).reshape(num_items + 1, branching)
    lengths_u = 2 + rng.poisson(max(mean_length - 2.0, 0.0), num_learners).astype(np.int64)
    items_ut = np.zeros((num_learners, int(lengths_u.max())), np.int32)
    items_ut[:, 0] = popular(num_learners)
    for t in range(1, items_ut.shape[1]):
        alive = np.flatnonzero(lengths_u > t)
        prev = items_ut[alive, t - 1]
        nxt = successors_vb[prev, rng.integers(0, branching, alive.size)]
        jump = rng.random(alive.size) >= follow
        nxt[jump] = popular(int(jump.sum()))
        items_ut[alive, t] = nxt
    valid_ut = np.arange(items_ut.shape[1])[None, :] < lengths_u[:, None]
    user = np.repeat(np.arange(1, num_learners + 1, dtype=np.int32), lengths_u)
    position = np.nonzero(valid_ut)[1].astype(np.int32)
    return user, items_ut[valid_ut], position


@registered(registry.datasets, "synthetic")
@dataclasses.dataclass(frozen=True, kw_only=True)
class Synthetic(DatasetPlugin):
    """A seeded synthetic catalogue of ``num_items`` items and ``num_learners`` learners
    (``generate``): Zipf popularity with exponent ``zipf_exponent``; each item has
    ``branching`` successors that the next item is, with probability ``follow``; sequences
    of ``mean_length`` items on average. Items are ``item_1`` ...; no catalogue text."""

    num_items: int = 1000
    num_learners: int = 1000
    mean_length: float = 10.0
    zipf_exponent: float = 1.0
    branching: int = 4
    follow: float = 0.7
    seed: int = 0

    def __post_init__(self):
        if self.num_items < 2 or self.num_learners < 1:
            raise ValueError("data.num_items must be at least 2 and data.num_learners at least 1")
        if self.mean_length < 2:
            raise ValueError("data.mean_length must be at least 2")
        if self.branching < 1 or not 0.0 <= self.follow <= 1.0:
            raise ValueError("data.branching must be at least 1 and data.follow lie in [0, 1]")
        if self.zipf_exponent < 0:
            raise ValueError("data.zipf_exponent must be >= 0 (0 = uniform popularity)")

    def load(self) -> Dataset:
        user, item, position = generate(
            num_items=self.num_items,
            num_learners=self.num_learners,
            mean_length=self.mean_length,
            zipf_exponent=self.zipf_exponent,
            branching=self.branching,
            follow=self.follow,
            seed=self.seed,
        )
        inter = Interactions(
            user=user,
            item=item,
            time=position.astype(np.float64),
            value=None,
            user_ids=tuple(f"learner_{u}" for u in range(1, self.num_learners + 1)),
            item_ids=tuple(f"item_{i}" for i in range(1, self.num_items + 1)),
        )
        return Dataset(name="synthetic", interactions=inter, source=f"synthetic seed {self.seed}")
