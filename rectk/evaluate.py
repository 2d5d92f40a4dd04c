"""Evaluation over an ``EvalSet``: fixed-shape batches placed on the mesh, ranks, metrics."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import numpy as np

from rectk.data.pipeline import eval_batches, seen_length
from rectk.data.split import EvalSet
from rectk.ranking import metrics_from_ranks


def item_chunk(requested: int, num_items: int) -> int:
    """The item chunk: as requested, but no larger than the catalogue (rounded up to 128)."""
    return max(128, min(requested, -(-(num_items + 1) // 128) * 128))


class Evaluator:
    """Ranks every target of ``examples`` among all items; identical for any batch size.

    ``trim``: the model accepts input windows shorter than ``max_len`` (left-trimmed of padding)
    with unchanged results, so each batch's window is only as wide as its longest history needs
    (see ``eval_batches``); on Amazon Beauty that is under a fifth of the positions.
    """

    def __init__(
        self,
        examples: EvalSet,
        *,
        max_len: int,
        batch_size: int,
        mask_seen: bool,
        ks: Sequence[int],
        metrics: Sequence[str] = ("recall", "ndcg", "mrr"),
        sharding=None,
        multiple: int = 1,
        trim: bool = False,
    ):
        batch_size = -(-batch_size // multiple) * multiple
        seen_len = seen_length(examples) if mask_seen else 1
        self.batches = eval_batches(
            examples, max_len=max_len, batch_size=batch_size, seen_len=seen_len, trim=trim
        )
        if not mask_seen:
            for b in self.batches:
                b["seen"][:] = 0
        self.ks = tuple(ks)
        self.metric_names = tuple(metrics)
        self.sharding = sharding
        self.size = len(examples)

    def _put(self, batch: dict) -> dict:
        arrays = {k: v for k, v in batch.items() if k not in ("valid", "index")}
        if self.sharding is None:
            return arrays
        n, i = jax.process_count(), jax.process_index()
        return {
            k: jax.make_array_from_process_local_data(
                self.sharding, np.array_split(v, n)[i], v.shape
            )
            for k, v in arrays.items()
        }

    @staticmethod
    def _fetch(x: jax.Array) -> np.ndarray:
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(jax.device_get(x))

    def ranks(self, rank_fn: Callable[[dict], jax.Array]) -> np.ndarray:
        """The rank of every example's target, in example order."""
        out = np.zeros(self.size, np.int64)
        # Dispatch every batch before reading any result back, so the device never waits for
        # the host to fetch one batch and place the next (the ranks are one int per row).
        pending = [rank_fn(self._put(batch)) for batch in self.batches]
        for batch, ranks in zip(self.batches, pending, strict=True):
            r = self._fetch(ranks)
            out[batch["index"][batch["valid"]]] = r[batch["valid"]]
        return out

    def metrics(self, rank_fn: Callable[[dict], jax.Array]) -> dict[str, float]:
        return metrics_from_ranks(self.ranks(rank_fn), self.ks, self.metric_names)
