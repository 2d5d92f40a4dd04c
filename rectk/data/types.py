"""Plain containers for interactions and item catalogues (numpy, no JAX)."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np

PAD = 0  # item and user index 0 is padding; real ids start at 1.


@dataclasses.dataclass(frozen=True, kw_only=True)
class Interactions:
    """Interaction log with dense ids.

    Attributes:
      user: int32 [N], dense user index in 1..num_users.
      item: int32 [N], dense item index in 1..num_items.
      time: float64 [N], timestamp (or position for sequence files); ties keep file order.
      value: float32 [N] or None, rating / label / score.
      user_ids: raw user ids, ``user_ids[u - 1]`` is the raw id of dense user ``u``.
      item_ids: raw item ids, ``item_ids[i - 1]`` is the raw id of dense item ``i``.
    """

    user: np.ndarray
    item: np.ndarray
    time: np.ndarray
    value: np.ndarray | None
    user_ids: tuple[str, ...]
    item_ids: tuple[str, ...]

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def vocab_size(self) -> int:
        """Item vocabulary including the padding index 0."""
        return len(self.item_ids) + 1

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def exact_duplicates(self) -> np.ndarray:
        """bool [N]: True where an interaction repeats an earlier one exactly (same user, item
        and time); the first of each group is False.

        >>> log = Interactions(user=np.array([1, 1, 1]), item=np.array([1, 1, 1]),
        ...     time=np.array([5.0, 5.0, 6.0]), value=None, user_ids=("u",), item_ids=("i",))
        >>> log.exact_duplicates().tolist()
        [False, True, False]
        """
        n = len(self)
        order = np.lexsort((np.arange(n), self.time, self.item, self.user))
        u, i, t = self.user[order], self.item[order], self.time[order]
        same = (u[1:] == u[:-1]) & (i[1:] == i[:-1]) & (t[1:] == t[:-1])
        dup = np.zeros(n, bool)
        dup[order[1:][same]] = True
        return dup

    def select(self, keep: np.ndarray) -> Interactions:
        """The interactions where ``keep`` (bool [N]) is True; ids and their order unchanged."""
        return dataclasses.replace(
            self,
            user=self.user[keep],
            item=self.item[keep],
            time=self.time[keep],
            value=None if self.value is None else self.value[keep],
        )

    def fingerprint(self) -> str:
        """A short hash of the content: the data version recorded in every run."""
        h = hashlib.sha256()
        for arr in (self.user, self.item, self.time):
            h.update(np.ascontiguousarray(arr).tobytes())
        if self.value is not None:
            h.update(np.ascontiguousarray(self.value).tobytes())
        h.update("\x1f".join(self.user_ids).encode())
        h.update("\x1f".join(self.item_ids).encode())
        return h.hexdigest()[:16]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Catalogue:
    """Item side information, aligned with ``Interactions.item_ids``.

    Attributes:
      item_ids: raw ids, in dense order (dense index ``i`` is ``item_ids[i - 1]``).
      titles: one title per item ("" when unknown).
      descriptions: one text per item ("" when unknown).
      prerequisites: int32 [E, 2] dense pairs ``(course, prerequisite)``.
    """

    item_ids: tuple[str, ...]
    titles: tuple[str, ...]
    descriptions: tuple[str, ...]
    prerequisites: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros((0, 2), np.int32)
    )

    def text(self, index: int) -> str:
        """Title and description of dense item ``index`` as one string."""
        t, d = self.titles[index - 1], self.descriptions[index - 1]
        return f"{t}. {d}" if d else t


@dataclasses.dataclass(frozen=True, kw_only=True)
class ItemAttributes:
    """What rerankers and list metrics know of the items, aligned with
    ``Interactions.item_ids`` (row ``i - 1`` is dense item ``i``).

    Attributes:
      groups: the provider (group) of each item, "" where unknown; empty = no groups.
      topics: float32 [N, T] topic distribution per item (rows sum to 1, or 0 where unknown);
        None = no topics.
    """

    groups: tuple[str, ...] = ()
    topics: np.ndarray | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Dataset:
    """What a dataset plugin returns.

    Exact duplicate interactions (same user, item and time) are dropped here, keeping the first,
    whichever plugin built the data set, and a note says how many: a repeated event would
    otherwise be both a learner's evaluation target and the last item of their history.

    Attributes:
      notes: what loading skipped or changed, one line each (printed in the load summary).
    """

    name: str
    interactions: Interactions
    catalogue: Catalogue | None = None
    attributes: ItemAttributes | None = None  # providers and topics, where known
    source: str = ""  # where it came from (files), for messages and the run record
    notes: tuple[str, ...] = ()
    # learners' graded answers (knowledge tracing), where the files hold them: the
    # interactions are then (learner, question) pairs in answer order, valued 1 (right) or 0
    answers: Any = None  # rectk.data.kt.KTData | None

    def __post_init__(self):
        dup = self.interactions.exact_duplicates()
        n = int(dup.sum())
        if n:
            note = (
                f"{self.source or self.name}: dropped {n} exact duplicate interaction(s) "
                "(same user, item and time; the first of each kept)"
            )
            object.__setattr__(self, "interactions", self.interactions.select(~dup))
            object.__setattr__(self, "notes", (*self.notes, note))
