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


# Batches whose windows are grouped together by width (the Hugging Face Trainer's
# ``group_by_length`` sorts "megabatches" of 50 batches by length).
GROUP_BATCHES = 50


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
    group_by_length: bool = False,
) -> grain.MapDataset:
    """Seeded, reshuffled-every-epoch batches of training windows for this process.

    Each epoch is one pass over every training target; the last batch of an epoch is padded.
    ``transform`` (a task's, e.g. masking items) maps each window with a generator seeded by
    ``seed`` and the element's index, so it is reproducible and resumes exactly. ``stride``:
    see ``training_windows`` (targets of a window's context positions are 0).
    ``group_by_length``: batches of windows of one width, cut to it, each with its
    ``loss_scale`` (see ``LengthGroupedBatches``).
    """
    windows = training_windows(train, max_len, stride)
    if group_by_length:
        grouped = LengthGroupedBatches(
            windows,
            _MakeWindow(train, max_len, stride),
            max_len=max_len,
            batch_size=batch_size,
            seed=seed,
            transform=transform,
            process_index=process_index,
            process_count=process_count,
        )
        return grouped.repeat(epochs)
    ds = (
        grain.MapDataset.source(windows).shuffle(seed=seed).map(_MakeWindow(train, max_len, stride))
    )
    if transform is not None:
        ds = ds.random_map(transform, seed=seed)
    return ProcessBatches(
        ds, batch_size=batch_size, process_index=process_index, process_count=process_count
    ).repeat(epochs)


class ProcessBatches(grain.MapDataset):
    """This process's rows of each global batch of ``parent``'s elements, padded.

    Global batch ``b`` holds elements ``[b * batch_size, (b + 1) * batch_size)`` of an epoch
    (the last one short); process ``p`` of ``process_count`` reads only the ``p``-th of its
    ``batch_size // process_count`` row slices, so the processes' batches side by side are the
    batch one process reads, whatever the number of processes: a run's losses do not depend
    on it. A short slice is padded with all-zero rows (``pad_batch``). Each epoch of a
    repeated ``parent`` (a shuffle reshuffles it) gives the same number of batches.

    >>> ds = grain.MapDataset.source([{"x": np.int32(i)} for i in range(1, 6)])
    >>> [b["x"].tolist() for b in ProcessBatches(ds, batch_size=4, process_index=1,
    ...                                          process_count=2)]
    [[3, 4], [0, 0]]
    """

    def __init__(
        self,
        parent: grain.MapDataset,
        *,
        batch_size: int,
        process_index: int = 0,
        process_count: int = 1,
    ):
        super().__init__(parent)
        if batch_size % process_count:
            raise ValueError(
                f"the batch size {batch_size} must be a multiple of the {process_count} processes"
            )
        self.size, self.batch_size = len(parent), batch_size
        self.local = batch_size // process_count
        self.offset = process_index * self.local
        self.num_batches = -(-self.size // batch_size)

    def __len__(self) -> int:
        return self.num_batches

    def __str__(self) -> str:
        return f"ProcessBatches(batches={self.num_batches}, rows={self.local})"

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        epoch, b = divmod(int(index), self.num_batches)
        first = epoch * self.size  # a repeated parent's index of the epoch's first element
        lo = b * self.batch_size + self.offset
        out = [self._parent[first + r] for r in range(lo, min(lo + self.local, self.size))]
        if not out:  # this process's share of the epoch's short batch is empty
            out = [{k: np.zeros_like(v) for k, v in self._parent[first].items()}]
        return pad_batch({k: np.stack([e[k] for e in out]) for k in out[0]}, self.local)


class LengthGroupedBatches(grain.MapDataset):
    """Training batches of windows of one width, each cut on the left to that width.

    Short histories fill a ``max_len`` window mostly with padding, which every layer and the
    loss still compute. A window needs the smallest power of two from 8 up that holds it (at
    most ``max_len``): its width. Each epoch here shuffles all windows (seeded by ``seed`` and
    the epoch), orders each run of ``GROUP_BATCHES`` batches by width (keeping the shuffled
    order within a width: sorting by exact length would save no work and make batches of
    near-identical learners), cuts it into batches and shuffles the batches. A batch's windows
    are then cut on the left to its widest: a few shapes, each compiled once. The cut columns
    hold padding only, so for an encoder whose outputs do not depend on leading padding
    (``variable_length``) every target's loss is the one the full window gives. Each epoch
    still passes over every window once, in the same number of batches.

    Batches of short windows hold fewer targets, and a loss averages over its batch's targets,
    so each of their targets would weigh more than under uniform shuffling. Each batch therefore
    carries ``loss_scale`` (one value, repeated per row): the positions it trains over the
    epoch's mean per batch. The train step multiplies the loss it differentiates by it, so every
    target weighs the same, as in uniformly shuffled batches (exactly where a window's positions
    are its targets, as in next-item training; in expectation for the Cloze task).

    Other element kinds (knowledge tracing's answer chunks) give each element's ``lengths``
    (the width it needs) and ``scored`` (the positions it trains), and with ``align="left"``
    (content first, padding after) are cut on the right instead.

    Batches are planned globally: process ``p`` of ``process_count`` takes the ``p``-th slice
    of each global batch, and all processes cut it to the same width. ``transform`` maps each
    window with a generator seeded by ``seed``, the batch index and the row, so the batches are
    reproducible and resume exactly.

    >>> seqs = Sequences(np.array([0, 0, 2, 9]), np.arange(1, 12, dtype=np.int32))
    >>> ds = LengthGroupedBatches(training_windows(seqs, 16), _MakeWindow(seqs, 16),
    ...                           max_len=16, batch_size=1, seed=0)
    >>> sorted(ds[i]["input"].shape[1] for i in range(len(ds)))  # lengths 1 and 8: cut to 8
    [8, 8]
    """

    def __init__(
        self,
        windows: np.ndarray,
        make_window: grain.transforms.Map,
        *,
        max_len: int,
        batch_size: int,
        seed: int,
        transform: grain.transforms.RandomMap | None = None,
        process_index: int = 0,
        process_count: int = 1,
        lengths: np.ndarray | None = None,
        scored: np.ndarray | None = None,
        align: str = "right",
    ):
        super().__init__()
        self.windows, self.make_window, self.transform = windows, make_window, transform
        if lengths is None:
            # A window ending at ``end`` holds the targets of positions 1..end-1 (at most
            # max_len) and trains its last ``stride`` of them (or fewer, for a short history).
            lengths = windows[:, 1] - 1
            scored = np.minimum(lengths, make_window.stride)
        # The width a window needs; windows of one width share batches, in random order.
        self.widths = np.minimum(max_len, pow2_at_least(lengths, 8))
        self.scored = np.asarray(scored, np.float64)  # the positions each window trains
        # "right": content is right-aligned (left padding), cut on the left; "left": cut right
        self.align = align
        self.max_len, self.batch_size, self.seed = max_len, batch_size, seed
        self.local = batch_size // process_count
        self.offset = process_index * self.local
        self.num_batches = -(-len(windows) // batch_size)
        self.mean_scored = max(self.scored.sum() / max(self.num_batches, 1), 1.0)
        self._plan_epoch, self._plan = -1, (np.zeros(0, np.int64), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return self.num_batches

    def __str__(self) -> str:
        return f"LengthGroupedBatches(batches={self.num_batches})"

    def plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """The epoch's windows sorted in groups, and the order of their batches: batch ``b`` is
        ``order[k * batch_size : (k + 1) * batch_size]`` with ``k = batches[b]``."""
        if epoch != self._plan_epoch:
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(len(self.windows))
            group = GROUP_BATCHES * self.batch_size
            for lo in range(0, len(order), group):
                part = order[lo : lo + group]
                order[lo : lo + group] = part[np.argsort(-self.widths[part], kind="stable")]
            self._plan = (order, rng.permutation(self.num_batches))
            self._plan_epoch = epoch
        return self._plan

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        epoch, b = divmod(int(index), self.num_batches)
        order, batches = self.plan(epoch)
        lo = int(batches[b]) * self.batch_size
        rows = order[lo : lo + self.batch_size]
        width = int(self.widths[rows].max())
        out = []
        for r in range(self.offset, min(self.offset + self.local, len(rows))):
            element = self.make_window.map(self.windows[rows[r]])
            if self.transform is not None:
                rng = np.random.default_rng([self.seed, int(index), r])
                element = self.transform.random_map(element, rng)
            out.append(element)
        if not out:  # this process's share of the epoch's short batch is empty
            out = [{k: np.zeros_like(v) for k, v in self.make_window.map(self.windows[0]).items()}]
        batch = pad_batch({k: np.stack([e[k] for e in out]) for k in out[0]}, self.local)
        if self.align == "right":
            batch = {k: v[:, -width:] if v.ndim == 2 else v for k, v in batch.items()}
        else:
            batch = {k: v[:, :width] if v.ndim == 2 else v for k, v in batch.items()}
        scale = self.scored[rows].sum() / self.mean_scored
        batch["loss_scale"] = np.full(self.local, scale, np.float32)
        return batch


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
        width = min(max_len, int(pow2_at_least(longest + 1, 8))) if trim else max_len
        seen_w = min(seen_len, int(pow2_at_least(longest, 64)))
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


def pow2_at_least(n, low: int):
    """The smallest power of two that is at least ``n`` and at least ``low`` (of each element,
    for an array).

    >>> int(pow2_at_least(9, 8)), pow2_at_least(np.array([0, 8, 33]), 8).tolist()
    (16, [8, 8, 64])
    """
    bits = np.ceil(np.log2(np.maximum(n, 1))).astype(np.int64)
    return np.maximum(low, np.left_shift(1, bits))


def seen_length(examples: EvalSet, multiple: int = 64) -> int:
    """History length covering every example, rounded up (one compiled shape)."""
    return padded_length(int(examples.hist.lengths.max(initial=1)), multiple)


def padded_length(longest: int, multiple: int = 64) -> int:
    """A seen-item width covering ``longest`` items: a multiple of ``multiple``, at least
    one, so that few shapes compile."""
    return max(multiple, -(-longest // multiple) * multiple)
