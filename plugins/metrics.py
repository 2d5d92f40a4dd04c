"""Ranking metrics: ``metric(ranks, k) -> per-target values`` from 0-based target ranks
(functions, ``rectk.contracts.Metric``).

With one held-out target per learner, Recall@k equals the hit rate HR@k.
"""

from __future__ import annotations

import numpy as np

from rectk import registry


@registry.metrics.register("recall")
def recall(ranks: np.ndarray, k: int) -> np.ndarray:
    return (ranks < k).astype(np.float64)


@registry.metrics.register("ndcg")
def ndcg(ranks: np.ndarray, k: int) -> np.ndarray:
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


@registry.metrics.register("mrr")
def mrr(ranks: np.ndarray, k: int) -> np.ndarray:
    return np.where(ranks < k, 1.0 / (ranks + 1.0), 0.0)
