"""Input pipelines (grain): training windows and padded evaluation batches."""

from __future__ import annotations

import grain
import numpy as np

from rectk.data.split import EvalSet, Sequences


def left_pad(seq: np.ndarray, length: int) -> np.ndarray:
    """The last ``length`` items of ``seq``, left-padded with 0 (the most recent item last).

    >>> left_pad(np.array([1, 2, 3]), 5).tolist()
    [0, 0, 1, 2, 3]
    """
    out = np.zeros(length, np.int32)
    seq = seq[-length:]
    if len(seq):
        out[length - len(seq) :] = seq
    return out


def training_windows(train: Sequences, max_len: int, stride: int = 0) -> np.ndarray:
    """(user, end) pairs covering every (prefix -> next item) target exactly once.

    A window ending at ``end`` holds the ``max_len`` targets before ``end`` and trains those at
    positions ``[max(1, end - stride), end)``; the others are context only. ``stride`` 0 means
    ``max_len`` (windows do not overlap); smaller strides give each target more of its history
    (at least ``max_len - stride`` items, or all of it) at the cost of more windows; ``stride``
    1 is one window per prefix.

    >>> seqs = Sequences(np.array([0, 0, 5]), np.arange(1, 6, dtype=np.int32))
    >>> training_windows(seqs, 3).tolist(), training_windows(seqs, 3, stride=2).tolist()
    ([[1, 5], [1, 2]], [[1, 5], [1, 3]])
    """
    stride = stride or max_len
    if not 1 <= stride <= max_len:
        raise ValueError(f"stride must lie in [1, max_len = {max_len}], got {stride}")
    rows = []
    for u in np.flatnonzero(train.lengths >= 2):
        n = int(train.lengths[u])
        ends = np.arange(n, 1, -stride)
        rows.append(np.stack([np.full(len(ends), u), ends], axis=1))
    if not rows:
        return np.zeros((0, 2), np.int64)
    return np.concatenate(rows).astype(np.int64)


class _MakeWindow(grain.transforms.Map):
    def __init__(self, train: Sequences, max_len: int, stride: int = 0):
        self.train, self.max_len, self.stride = train, max_len, stride or max_len

    def map(self, pair):
        u, end = int(pair[0]), int(pair[1])
        seq = self.train.row(u)[:end]
        target = left_pad(seq[1:], self.max_len)
        target[: self.max_len - self.stride] = 0  # context only: trained by another window
        return {"user": np.int32(u), "input": left_pad(seq[:-1], self.max_len), "target": target}


def pad_batch(batch: dict, size: int) -> dict:
    """Pads a short final batch with all-zero rows (zero targets carry no weight)."""
    n = next(iter(batch.values())).shape[0]
    if n == size:
        return batch
    return {
        k: np.concatenate([v, np.zeros((size - n, *v.shape[1:]), v.dtype)])
        for k, v in batch.items()
    }


def train_dataset(
    train: Sequences,
    *,
    max_len: int,
    batch_size: int,
    epochs: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    transform: grain.transforms.RandomMap | None = None,
    stride: int = 0,
) -> grain.MapDataset:
    """Seeded, reshuffled-every-epoch batches of training windows for this process.

    Each epoch is one pass over every training target; the last batch of an epoch is padded.
    ``transform`` (a task's, e.g. masking items) maps each window with a generator seeded by
    ``seed`` and the element's index, so it is reproducible and resumes exactly. ``stride``:
    see ``training_windows`` (targets of a window's context positions are 0).
    """
    windows = training_windows(train, max_len, stride)
    ds = grain.MapDataset.source(windows)
    ds = ds[process_index::process_count]
    local = batch_size // process_count
    ds = ds.shuffle(seed=seed).map(_MakeWindow(train, max_len, stride))
    if transform is not None:
        ds = ds.random_map(transform, seed=seed)
    return ds.batch(local, drop_remainder=False).map(lambda b: pad_batch(b, local)).repeat(epochs)


def eval_batches(
    examples: EvalSet, *, max_len: int, batch_size: int, seen_len: int, trim: bool = False
) -> list[dict[str, np.ndarray]]:
    """Evaluation batches: inputs, targets, and seen items to mask, longest histories first.

    Examples are ordered by history length (longest first, ties in order), so each batch's
    ``seen`` needs only as many columns as its own longest history: the smallest power of two
    from 64 up that covers it, at most ``seen_len`` (0 = none). ``trim``: the ``input`` window
    is cut the same way, to the smallest power of two from 8 up covering the batch's longest
    history plus one slot (at most ``max_len``); its leading columns would hold padding only. A
    few shapes, each compiled once, replace one shape padded to the longest learner.
    ``index`` is each row's example number, ``valid`` marks real rows (the last batch is padded).
    """
    out: list[dict[str, np.ndarray]] = []
    n = len(examples)
    lengths = examples.hist.lengths[:n] if n else np.zeros(0, np.int64)
    order = np.argsort(-lengths, kind="stable")
    for lo in range(0, n, batch_size):
        rows = order[lo : lo + batch_size]
        longest = int(lengths[rows].max())
        width = min(max_len, _pow2_at_least(longest + 1, 8)) if trim else max_len
        seen_w = min(seen_len, _pow2_at_least(longest, 64))
        inp = np.zeros((batch_size, width), np.int32)
        seen = np.zeros((batch_size, seen_w), np.int32)
        for r, i in enumerate(rows):
            h = examples.hist.row(i)
            inp[r] = left_pad(h, width)
            seen[r] = left_pad(h, seen_w)
        index = np.full(batch_size, -1, np.int64)
        index[: len(rows)] = rows
        target = np.zeros(batch_size, np.int32)
        target[: len(rows)] = examples.target[rows]
        user = np.zeros(batch_size, np.int32)
        user[: len(rows)] = examples.user[rows]
        valid: np.ndarray = index >= 0
        out.append(
            {
                "user": user,
                "input": inp,
                "target": target,
                "seen": seen,
                "index": index,
                "valid": valid,
            }
        )
    return out


def _pow2_at_least(n: int, low: int) -> int:
    """The smallest power of two that is at least ``n`` and at least ``low``."""
    return max(low, 1 << max(0, int(n) - 1).bit_length())


def seen_length(examples: EvalSet, multiple: int = 64) -> int:
    """History length covering every example, rounded up (one compiled shape)."""
    longest = int(examples.hist.lengths.max(initial=1))
    return max(multiple, -(-longest // multiple) * multiple)
