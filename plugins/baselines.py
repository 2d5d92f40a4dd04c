"""Baselines: non-neural scorers evaluated beside the model on the same targets
(``eval.baselines``). Each gives one fixed score per item id, ``[V]``; row 0 is never ranked."""

from __future__ import annotations

import dataclasses

import numpy as np

from rectk import registry
from rectk.contracts import BaselinePlugin
from rectk.recipe import registered


@registered(registry.baselines, "popularity")
@dataclasses.dataclass(frozen=True, kw_only=True)
class Popularity(BaselinePlugin):
    """Most popular first: ``log(1 + training count)`` of each item."""

    def item_scores(self, *, train_items: np.ndarray, vocab_size: int, seed: int) -> np.ndarray:
        del seed
        counts = np.bincount(train_items, minlength=vocab_size)[:vocab_size].astype(np.float32)
        return np.log1p(counts)


@registered(registry.baselines, "random")
@dataclasses.dataclass(frozen=True, kw_only=True)
class Random(BaselinePlugin):
    """A random order of the items, drawn with the run's ``seed``."""

    def item_scores(self, *, train_items: np.ndarray, vocab_size: int, seed: int) -> np.ndarray:
        del train_items
        return np.random.default_rng(seed).random(vocab_size).astype(np.float32)
