"""The item side information of a run, indexed by item id, for rerankers and list metrics.

Built once from the data set and the training split (``ItemSide.build``), written into the
run directory as ``items.npz`` (``save``/``load``), so that ``rectk recommend`` and
``rectk evaluate`` rerank without the original data.
"""

from __future__ import annotations

import dataclasses
import io
import zipfile
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from rectk.contracts import ALWAYS_PROVIDED, FinalLists, RerankContext, RerankerPlugin
from rectk.data.types import Dataset
from rectk.errors import RectkError
from rectk.rundir import atomic_write, damaged

FILE = "items.npz"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ItemSide:
    """Item side information, row 0 = padding (NumPy).

    Attributes:
      num_items: the catalogue's size (ids 1..num_items).
      group_names: group ``g >= 1`` is ``group_names[g - 1]``; () = no groups.
      group_v: int32 [V] group per item, 0 = unknown; None = no groups.
      topics_vt: float32 [V, T] topic distribution per item; None = no topics.
      pop_v: float32 [V] training interactions per item.
      prereq_vp: int32 [V, P] prerequisite ids per item, 0 = none; None = no graph.
    """

    num_items: int
    group_names: tuple[str, ...] = ()
    group_v: np.ndarray | None = None
    topics_vt: np.ndarray | None = None
    pop_v: np.ndarray
    prereq_vp: np.ndarray | None = None

    @classmethod
    def build(cls, data: Dataset, train_items: np.ndarray) -> ItemSide:
        """From a loaded data set and the training split's item ids (popularity)."""
        n = data.interactions.num_items
        v = n + 1
        pop_v = np.bincount(np.asarray(train_items), minlength=v)[:v].astype(np.float32)
        pop_v[0] = 0.0
        attrs = data.attributes
        names: tuple[str, ...] = ()
        group_v = topics_vt = prereq_vp = None
        if attrs is not None and attrs.groups:
            names = tuple(sorted({g for g in attrs.groups if g}))
            index = {g: i for i, g in enumerate(names, 1)}
            group_v = np.zeros(v, np.int32)
            group_v[1:] = [index.get(g, 0) for g in attrs.groups]
        if attrs is not None and attrs.topics is not None:
            topics = np.asarray(attrs.topics, np.float32)
            topics_vt = np.vstack([np.zeros((1, topics.shape[1]), np.float32), topics])
        cat = data.catalogue
        if cat is not None and len(cat.prerequisites):
            prereq_vp = prerequisite_table(cat.prerequisites, v)
        return cls(
            num_items=n,
            group_names=names,
            group_v=group_v,
            topics_vt=topics_vt,
            pop_v=pop_v,
            prereq_vp=prereq_vp,
        )

    def provides(self) -> frozenset[str]:
        """What this side information holds (keys of ``RERANK_NEEDS``)."""
        have = {
            "groups": self.group_v is not None,
            "topics": self.topics_vt is not None,
            "prerequisites": self.prereq_vp is not None,
        }
        return ALWAYS_PROVIDED | {k for k, ok in have.items() if ok}

    def bind(self, stages: tuple[RerankerPlugin, ...], chain: str) -> tuple[RerankerPlugin, ...]:
        """The chain's stages with group names resolved; a ``RectkError`` naming the stage
        where the run lacks what it reads."""
        out = []
        for i, stage in enumerate(stages):
            missing = stage.requires() - self.provides()
            where = f"rerank.chains.{chain}[{i}]"
            if missing:
                raise RectkError(
                    f"{where} needs item {', '.join(sorted(missing))}, which this run's data "
                    "set does not provide"
                )
            try:
                out.append(stage.with_group_names(self.group_names))
            except ValueError as err:
                raise RectkError(f"{where}: {err}") from None
        return tuple(out)

    def context(self, history_bh, item_emb_vd=None) -> RerankContext:
        """The ``RerankContext`` of a batch of histories (device arrays)."""

        def put(x):
            return None if x is None else jnp.asarray(x)

        return RerankContext(
            history_bh=jnp.asarray(history_bh),
            item_emb_vd=put(item_emb_vd),
            item_group_v=put(self.group_v),
            item_topics_vt=put(self.topics_vt),
            item_pop_v=put(self.pop_v),
            prereq_vp=put(self.prereq_vp),
        )

    def lists(self, ids_nk, target_n, history_nh, item_emb_vd=None) -> FinalLists:
        """``FinalLists`` of these lists, for list metrics (NumPy)."""
        return FinalLists(
            ids_nk=np.asarray(ids_nk),
            target_n=np.asarray(target_n),
            history_nh=np.asarray(history_nh),
            num_items=self.num_items,
            item_emb_vd=None if item_emb_vd is None else np.asarray(item_emb_vd, np.float32),
            item_group_v=self.group_v,
            item_topics_vt=self.topics_vt,
            item_pop_v=self.pop_v,
            prereq_vp=self.prereq_vp,
        )

    def save(self, folder: Path) -> None:
        """Writes ``items.npz`` into ``folder`` atomically (a temporary file, then a rename)."""
        arrays: dict[str, Any] = {"num_items": np.asarray(self.num_items), "pop_v": self.pop_v}
        for name in ("group_v", "topics_vt", "prereq_vp"):
            value = getattr(self, name)
            if value is not None:
                arrays[name] = value
        if self.group_names:
            arrays["group_names"] = np.asarray(self.group_names, dtype=str)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write(folder / FILE, buf.getvalue())

    @classmethod
    def load(cls, folder: Path) -> ItemSide | None:
        """The side information saved in ``folder``, or None for a run from before it was
        saved."""
        path = folder / FILE
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                got = {k: z[k] for k in z.files}
            return cls(
                num_items=int(got["num_items"]),
                group_names=tuple(str(g) for g in got.get("group_names", ())),
                group_v=got.get("group_v"),
                topics_vt=got.get("topics_vt"),
                pop_v=got["pop_v"],
                prereq_vp=got.get("prereq_vp"),
            )
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise damaged(path, f"not a complete NumPy archive: {err}") from None


def prerequisite_table(pairs_e2: np.ndarray, vocab_size: int) -> np.ndarray:
    """``[V, P]`` int32: row ``i`` lists item ``i``'s prerequisites (0-padded), from dense
    ``(course, prerequisite)`` pairs.

    >>> prerequisite_table(np.array([[2, 1], [3, 1], [3, 2]]), 4).tolist()
    [[0, 0], [0, 0], [1, 0], [1, 2]]
    """
    pairs = np.asarray(pairs_e2, np.int64).reshape(-1, 2)
    counts = np.bincount(pairs[:, 0], minlength=vocab_size)
    width = max(1, int(counts.max(initial=0)))
    out = np.zeros((vocab_size, width), np.int32)
    fill = np.zeros(vocab_size, np.int64)
    for course, pre in pairs:
        out[course, fill[course]] = pre
        fill[course] += 1
    return out
