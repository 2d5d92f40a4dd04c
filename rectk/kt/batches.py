"""Knowledge-tracing batches: learners' answer stretches as padded ``[B, L]`` arrays.

A stretch of one learner's answers (``rectk.data.kt.Cuts``) becomes one row, left-aligned,
padding on the right: ``question``, ``concept`` (a question's first concept), ``response``,
``mask`` (real answers) and ``weight`` (the answers whose prediction counts: all but the
stretch's first, or only its last for a window read at one answer).
"""

from __future__ import annotations

import grain
import numpy as np

from rectk.data.kt import Cuts, KTData, Targets
from rectk.data.pipeline import LengthGroupedBatches, ProcessBatches, pad_batch, pow2_at_least

KEYS = ("question", "concept", "response", "mask", "weight")


def stretch_arrays(kt: KTData, cuts: Cuts, length: int, *, last_only: bool = False) -> dict:
    """``{key: [S, length]}`` for the stretches ``cuts`` (each at most ``length`` long).

    ``weight`` marks every answer of a stretch but its first, or with ``last_only`` its last
    answer alone.
    """
    n = len(cuts)
    pos_l = np.arange(length)
    mask = pos_l[None, :] < cuts.length[:, None]
    rows = np.where(mask, cuts.start[:, None] + pos_l[None, :], 0)
    if last_only:
        weight = pos_l[None, :] == (cuts.length[:, None] - 1)
    else:
        weight = mask & (pos_l[None, :] >= 1)
    out = {
        "question": np.where(mask, kt.question[rows], 0).astype(np.int32),
        "concept": np.where(mask, kt.concepts[rows, 0], 0).astype(np.int32),
        "response": np.where(mask, kt.response[rows], 0).astype(np.int32),
        "mask": mask,
        "weight": (weight & mask).astype(np.float32),
    }
    assert all(v.shape == (n, length) for v in out.values())
    return out


def window_cuts(kt: KTData, targets: Targets, length: int) -> tuple[Cuts, Cuts]:
    """The stretches that predict ``targets`` (pyKT's window view) with as few rows as a
    causal model allows: each learner's first ``length`` answers in one stretch (read at
    every target in it), then one stretch per later target, read at its end only.

    Returns ``(first, later)``: the first are read at all answers but the first; the later at
    their last answer.
    """
    first_row = kt.ptr[targets.learner]  # each target's learner's first answer
    early = targets.row - first_row < length  # predicted inside the learner's first stretch
    learners = np.unique(targets.learner[early])
    first = Cuts(
        learner=learners,
        start=kt.ptr[learners],
        length=np.minimum(kt.lengths[learners], length),
    )
    late = ~early
    later = Cuts(
        learner=targets.learner[late],
        start=targets.start[late],
        length=targets.row[late] - targets.start[late] + 1,
    )
    return first, later


class _Rows(grain.transforms.Map):
    def __init__(self, arrays: dict):
        self.arrays = arrays

    def map(self, index):
        return {k: v[int(index)] for k, v in self.arrays.items()}


def train_dataset(
    arrays: dict,
    *,
    batch_size: int,
    epochs: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    group_by_length: bool = False,
) -> grain.MapDataset:
    """Seeded batches of the training stretches, reshuffled every epoch, for this process;
    an epoch's last batch is padded with empty rows (weight 0).

    ``group_by_length``: batches of stretches of one width, cut to it (``rectk.data.pipeline.
    LengthGroupedBatches``), each with its ``loss_scale``. The models are causal with padding
    after the answers, so every answer's prediction is the one the full width gives.
    """
    n = next(iter(arrays.values())).shape[0]
    if group_by_length:
        length = arrays["mask"].sum(1)
        grouped = LengthGroupedBatches(
            np.arange(n),
            _Rows(arrays),
            max_len=arrays["mask"].shape[1],
            batch_size=batch_size,
            seed=seed,
            process_index=process_index,
            process_count=process_count,
            lengths=length,
            scored=arrays["weight"].sum(1),
            align="left",
        )
        return grouped.repeat(epochs)
    # one global shuffle; each process reads its rows of every global batch, so the losses
    # do not depend on the number of processes
    ds = grain.MapDataset.source(np.arange(n)).shuffle(seed=seed).map(_Rows(arrays))
    return ProcessBatches(
        ds, batch_size=batch_size, process_index=process_index, process_count=process_count
    ).repeat(epochs)


def eval_batches(arrays: dict, batch_size: int, *, max_tokens: int = 0, multiple: int = 1):
    """``(rows, batch)``: ``arrays`` in batches, longest stretches first, each cut to the
    smallest power of two from 8 up that holds its longest (a few shapes, each compiled once);
    ``rows`` are the batch's row numbers (the last batch of a width is padded with empty rows).

    ``max_tokens`` (0 = no limit) caps rows x width: wide batches get fewer rows (a multiple of
    ``multiple``, the data-parallel devices), so attention over 200 answers at a large
    ``batch_size`` does not exhaust memory.
    """
    length = arrays["mask"].sum(1)
    order = np.argsort(-length, kind="stable")
    full = arrays["mask"].shape[1]
    width_of = np.minimum(full, pow2_at_least(np.maximum(length[order], 1), 8))
    lo = 0
    while lo < len(order):
        width = int(width_of[lo])
        size = batch_size
        if max_tokens:
            size = max(multiple, min(batch_size, max_tokens // width) // multiple * multiple)
        same = int(np.searchsorted(-width_of, -width, side="right"))  # rows of this width
        rows = order[lo : min(lo + size, same)]
        batch = pad_batch({k: v[rows, :width] for k, v in arrays.items()}, size)
        lo += len(rows)
        yield rows, batch
