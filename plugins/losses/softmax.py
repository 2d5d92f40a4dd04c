"""Softmax cross-entropy: over every item, or over sampled negatives with logQ correction."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from rectk import registry
from rectk.contracts import LossPlugin
from rectk.recipe import registered

from .common import negative_scores, target_scores, weighted_mean
from .sampling import Sampler, sample_negatives


def _full_ce_rows(head, user_nd, table_vd, target_n) -> jax.Array:
    """Per-row full-softmax cross-entropy ``[N]`` (padding item excluded)."""
    scores_nv = head(user_nd, table_vd).astype(jnp.float32)
    scores_nv = scores_nv.at[:, 0].set(-jnp.inf)
    logz_n = jax.nn.logsumexp(scores_nv, axis=-1)
    pos_n = jnp.take_along_axis(scores_nv, target_n[:, None], axis=-1)[:, 0]
    return logz_n - pos_n


@registered(registry.losses, "softmax_ce")
@dataclasses.dataclass(frozen=True, kw_only=True)
class SoftmaxCE(LossPlugin):
    """Full-softmax cross-entropy over every item (the padding item excluded).

    ``chunk_rows``: rows are scored ``chunk_rows`` at a time, real rows first, and chunks of
    padding only are skipped, so short histories in long windows cost little and no
    ``[N, V]`` matrix larger than ``chunk_rows x V`` is built. 0 (the default) picks the
    power of two, between 128 and 8192, nearest below ``2**23 / V`` rows (about 32 MiB of
    float32 scores a chunk), small enough to stay in a CPU's caches (measured by
    ``benchmarks/ce_chunks.py``; docs/notes/2026-11-29-ce-chunks.md).
    Each chunk is rematerialised in the backward pass, which then also holds one chunk's
    scores at a time.
    """

    chunk_rows: int = 0

    def __post_init__(self):
        if self.chunk_rows < 0:
            raise ValueError("loss.chunk_rows must be >= 0 (0 = chosen from the item count)")

    def rows_per_chunk(self, vocab_size: int) -> int:
        """The chunk size used with ``vocab_size`` items (``chunk_rows``, or the automatic one)."""
        if self.chunk_rows:
            return self.chunk_rows
        rows = 2**23 // max(1, vocab_size)
        return int(min(8192, max(128, 1 << max(0, rows.bit_length() - 1))))

    def __call__(self, *, head, user_nd, table_vd, target_n, weight_n, key):
        del key
        n = user_nd.shape[0]
        c = self.rows_per_chunk(table_vd.shape[0])
        if n <= c:
            return weighted_mean(_full_ce_rows(head, user_nd, table_vd, target_n), weight_n)
        order = jnp.argsort(weight_n <= 0, stable=True)  # real rows first
        pad = (-n) % c

        def chunks(x):
            x = jnp.take(x, order, axis=0)
            x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
            return x.reshape(-1, c, *x.shape[1:])

        # Rematerialised: the backward pass recomputes a chunk's scores instead of the scan
        # stacking every chunk's [C, V] residuals (the whole N x V matrix this avoids).
        @jax.checkpoint
        def chunk_sum(args):
            u_cd, t_c, w_c = args

            def compute():
                ce_c = _full_ce_rows(head, u_cd, table_vd, t_c)
                return jnp.sum(jnp.where(w_c > 0, ce_c, 0.0) * w_c)

            return jax.lax.cond(jnp.any(w_c > 0), compute, lambda: jnp.zeros((), jnp.float32))

        total = jax.lax.map(chunk_sum, (chunks(user_nd), chunks(target_n), chunks(weight_n)))
        return jnp.sum(total) / jnp.maximum(jnp.sum(weight_n), 1.0)


def sampled_softmax(
    pos_n: jax.Array,
    neg_nk: jax.Array,
    hit_nk: jax.Array,
    log_count_k: jax.Array | None,
    weight_n: jax.Array,
) -> jax.Array:
    """Cross-entropy of the target against sampled negatives.

    ``-pos + log(exp(pos) + sum_k exp(neg_k - log_count_k))`` over negatives that are not the
    row's target (``hit_nk`` False): with ``log_count_k`` (logQ correction) the sum estimates
    the full softmax's normaliser without bias; ``None`` leaves the scores uncorrected.
    """
    pos_n, neg_nk = pos_n.astype(jnp.float32), neg_nk.astype(jnp.float32)
    if log_count_k is not None:
        neg_nk = neg_nk - log_count_k[None, :]
    neg_nk = jnp.where(hit_nk, -jnp.inf, neg_nk)
    logz_n = jax.nn.logsumexp(jnp.concatenate([pos_n[:, None], neg_nk], axis=1), axis=1)
    return weighted_mean(logz_n - pos_n, weight_n)


@registered(registry.losses, "sampled_softmax")
@dataclasses.dataclass(frozen=True, kw_only=True)
class SampledSoftmax(LossPlugin):
    """Softmax cross-entropy over the target and ``num_negatives`` sampled items shared by the
    batch, with the logQ correction (Bengio & Senecal 2008; Yi et al. 2019).

    ``sampler``: ``uniform``; ``popularity`` (training counts + 1); ``in_batch`` (other rows'
    targets); ``mixed`` (a ``mix`` share in-batch, the rest uniform). Negatives equal to a
    row's target are dropped from that row. ``logq_correction = false`` trains on the raw
    scores (biased towards the sampler's favourite items; for comparison).
    """

    num_negatives: int = 100
    sampler: Sampler = "uniform"
    mix: float = 0.5
    logq_correction: bool = True

    def __post_init__(self):
        if self.num_negatives < 1:
            raise ValueError("loss.num_negatives must be at least 1")
        if not 0.0 <= self.mix <= 1.0:
            raise ValueError("loss.mix must lie in [0, 1]")

    def prepare(self, *, item_counts: np.ndarray) -> LossPlugin:
        """This loss with the training count of every item id bound (popularity sampler)."""
        if self.sampler != "popularity":
            return self
        return _WithItemCounts(self, np.asarray(item_counts, np.float32))

    def __call__(self, *, head, user_nd, table_vd, target_n, weight_n, key, item_counts=None):
        negatives_k, log_count_k = self.draw(
            key, table_vd.shape[0], target_n, weight_n, item_counts=item_counts
        )
        return self.with_negatives(
            head=head,
            user_nd=user_nd,
            table_vd=table_vd,
            target_n=target_n,
            weight_n=weight_n,
            negatives=negatives_k,
            log_count=log_count_k,
        )

    def draw(
        self, key, vocab_size: int, target_n, weight_n, *, item_counts=None
    ) -> tuple[jax.Array, jax.Array]:
        """``(negatives [K], log expected counts [K])`` over ``vocab_size`` item ids: the
        draws of one step, before any item vector is computed."""
        return sample_negatives(
            self.sampler,
            key,
            num=self.num_negatives,
            vocab_size=vocab_size,
            target_n=target_n,
            weight_n=weight_n,
            item_counts=item_counts,
            mix=self.mix,
        )

    def with_negatives(
        self, *, head, user_nd, table_vd, target_n, weight_n, negatives, log_count
    ) -> jax.Array:
        """The loss on given negatives ``[K]`` and their log expected counts ``[K]``."""
        neg_nk = negative_scores(head, user_nd, table_vd, negatives)
        return sampled_softmax(
            target_scores(head, user_nd, table_vd, target_n),
            neg_nk,
            negatives[None, :] == target_n[:, None],
            log_count if self.logq_correction else None,
            weight_n,
        )


@dataclasses.dataclass(frozen=True, eq=False)
class _WithItemCounts(LossPlugin):
    """A sampled softmax with the training item counts bound (what ``prepare`` returns for
    the popularity sampler)."""

    loss: SampledSoftmax
    item_counts: np.ndarray

    def draw(self, key, vocab_size: int, target_n, weight_n) -> tuple[jax.Array, jax.Array]:
        return self.loss.draw(key, vocab_size, target_n, weight_n, item_counts=self.item_counts)

    def with_negatives(self, **kwargs) -> jax.Array:
        return self.loss.with_negatives(**kwargs)

    def __call__(self, *, head, user_nd, table_vd, target_n, weight_n, key) -> jax.Array:
        return self.loss(
            head=head,
            user_nd=user_nd,
            table_vd=table_vd,
            target_n=target_n,
            weight_n=weight_n,
            key=key,
            item_counts=self.item_counts,
        )
