"""Plain containers for interactions and item catalogues (numpy, no JAX)."""

from __future__ import annotations

import dataclasses
import hashlib

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
class Dataset:
    """What a dataset plugin returns."""

    name: str
    interactions: Interactions
    catalogue: Catalogue | None = None
    source: str = ""  # where it came from (files), for messages and the run record
