"""Train / validation / test splits of an interaction log.

Every evaluation example is one target item with the learner's full history before it
(``hist``, in time order), kept in CSR form so long histories cost no padding. The history holds
only interactions strictly before the target in (time, file order), and exact duplicates (same
user, item and time) are dropped first, keeping the first: a repeated event can never be both a
target and part of its own history.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rectk.data.types import Interactions
from rectk.errors import DataError


@dataclasses.dataclass(frozen=True)
class Sequences:
    """Per-user item sequences in CSR form: user ``u``'s items are ``items[ptr[u]:ptr[u+1]]``."""

    ptr: np.ndarray  # int64 [U + 2]; row 0 (padding user) is empty
    items: np.ndarray  # int32

    def row(self, u: int) -> np.ndarray:
        return self.items[self.ptr[u] : self.ptr[u + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.ptr)


@dataclasses.dataclass(frozen=True)
class EvalSet:
    """Evaluation examples: ``user[n]`` must rank ``target[n]`` given ``hist`` row ``n``."""

    user: np.ndarray  # int32 [N]
    target: np.ndarray  # int32 [N]
    hist: Sequences  # row n = items before the target, time order

    def __len__(self) -> int:
        return int(self.user.shape[0])


@dataclasses.dataclass(frozen=True)
class Split:
    train: Sequences  # per dense user, the training items in time order
    valid: EvalSet
    test: EvalSet
    history: Sequences  # per dense user, every interaction in time order (for recommending)
    cold_items: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int32))
    cold: EvalSet | None = None  # first held-out (new) item of each learner who took one


def _csr(rows: np.ndarray, items: np.ndarray, num_rows: int) -> Sequences:
    """Sequences from row ids sorted ascending (ties in the wanted order)."""
    counts = np.bincount(rows, minlength=num_rows + 1)[: num_rows + 1]
    ptr = np.zeros(num_rows + 2, np.int64)
    np.cumsum(counts, out=ptr[1:])
    return Sequences(ptr=ptr, items=items.astype(np.int32))


def _eval_set(order_item: np.ndarray, order_user: np.ndarray, start: np.ndarray, idx) -> EvalSet:
    """Examples for targets at sorted positions ``idx``; history = the user's earlier items."""
    idx = np.asarray(idx, np.int64)
    begin = start[order_user[idx]]
    lengths = idx - begin
    ptr = np.zeros(len(idx) + 1, np.int64)
    np.cumsum(lengths, out=ptr[1:])
    offsets = np.arange(ptr[-1]) - np.repeat(ptr[:-1], lengths)
    hist_items = order_item[np.repeat(begin, lengths) + offsets]
    return EvalSet(
        user=order_user[idx].astype(np.int32),
        target=order_item[idx].astype(np.int32),
        hist=Sequences(ptr=ptr, items=hist_items.astype(np.int32)),
    )


def split(
    data: Interactions,
    kind: str,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    *,
    cold_items: float = 0.0,
    seed: int = 0,
) -> Split:
    """Splits ``data`` by ``kind`` ("leave_last_out" or "temporal").

    With ``cold_items`` > 0, that share of the items (chosen with ``seed``) is held out
    entirely: none of their interactions train, validate or test the warm split. The ``cold``
    evaluation set then holds, for each learner who took a held-out item, the first one they
    took, with everything they did before it (warm items only) as history.

    Exact duplicate interactions are dropped first (``Dataset`` already drops and reports
    them; this guards logs built by hand).
    """
    dup = data.exact_duplicates()
    if dup.any():
        data = data.select(~dup)
    if cold_items > 0:
        return _split_cold(data, kind, valid_fraction, test_fraction, cold_items, seed)
    order = np.lexsort((np.arange(len(data)), data.time, data.user))
    user, item, time = data.user[order], data.item[order], data.time[order]
    num_users = data.num_users
    history = _csr(user, item, num_users)
    start = history.ptr[:-1]  # start[u] = first sorted position of user u
    pos = np.arange(len(user)) - start[user]
    n_of = history.lengths[user]
    if kind == "leave_last_out":
        eligible = n_of >= 3
        test_idx = np.flatnonzero(eligible & (pos == n_of - 1))
        valid_idx = np.flatnonzero(eligible & (pos == n_of - 2))
        train_mask = ~eligible | (pos < n_of - 2)
    elif kind == "temporal":
        if not 0 < valid_fraction + test_fraction < 1:
            raise DataError("split: valid_fraction + test_fraction must lie in (0, 1)")
        t_valid = np.quantile(time, 1 - valid_fraction - test_fraction)
        t_test = np.quantile(time, 1 - test_fraction)
        train_mask = time < t_valid
        valid_idx = np.flatnonzero((time >= t_valid) & (time < t_test) & (pos > 0))
        test_idx = np.flatnonzero((time >= t_test) & (pos > 0))
    else:
        raise DataError(f"split: unknown type {kind!r} (expected leave_last_out or temporal)")
    train = _csr(user[train_mask], item[train_mask], num_users)
    valid = _eval_set(item, user, start, valid_idx)
    test = _eval_set(item, user, start, test_idx)
    if len(test) == 0 or len(valid) == 0:
        raise DataError(
            f"split {kind!r} left no {'test' if len(test) == 0 else 'validation'} examples: "
            f"{num_users} users, {len(data)} interactions (leave_last_out needs users with "
            "at least 3 interactions)"
        )
    if int((train.lengths >= 2).sum()) == 0:
        raise DataError(f"split {kind!r} left no user with 2 or more training interactions")
    return Split(train=train, valid=valid, test=test, history=history)


def _split_cold(data, kind, valid_fraction, test_fraction, fraction, seed) -> Split:
    if not 0.0 < fraction < 1.0:
        raise DataError(f"split.cold_items must lie in (0, 1), got {fraction}")
    taken = np.unique(data.item)
    rng = np.random.default_rng(seed)
    n_cold = max(1, round(fraction * len(taken)))
    cold = np.sort(rng.choice(taken, size=n_cold, replace=False)).astype(np.int32)
    is_cold = np.isin(data.item, cold)
    warm = dataclasses.replace(
        data,
        user=data.user[~is_cold],
        item=data.item[~is_cold],
        time=data.time[~is_cold],
        value=None if data.value is None else data.value[~is_cold],
    )
    base = split(warm, kind, valid_fraction, test_fraction)
    # The first cold item of each learner, with the warm items before it as history.
    order = np.lexsort((np.arange(len(data)), data.time, data.user))
    user, item, flag = data.user[order], data.item[order], is_cold[order]
    first = np.flatnonzero(flag)  # sorted by learner, then time
    seen_users: set[int] = set()
    rows, hists = [], []
    starts = {int(u): int(i) for i, u in reversed(list(enumerate(user)))}
    for i in first:
        u = int(user[i])
        if u in seen_users:
            continue
        seen_users.add(u)
        before = slice(starts[u], i)
        h = item[before][~flag[before]]
        if len(h):
            rows.append((u, int(item[i])))
            hists.append(h)
    if not rows:
        raise DataError("split.cold_items: no learner took a held-out item after a warm one")
    ptr = np.zeros(len(rows) + 1, np.int64)
    np.cumsum([len(h) for h in hists], out=ptr[1:])
    cold_set = EvalSet(
        user=np.array([r[0] for r in rows], np.int32),
        target=np.array([r[1] for r in rows], np.int32),
        hist=Sequences(ptr=ptr, items=np.concatenate(hists).astype(np.int32)),
    )
    full = split(data, kind, valid_fraction, test_fraction)
    return dataclasses.replace(base, history=full.history, cold_items=cold, cold=cold_set)
