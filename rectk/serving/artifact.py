"""The small loader of an exported artefact (``rectk export``): jax, numpy and safetensors.

``Artifact(path)`` reads the folder ``rectk.serving.export`` wrote and answers top-k lists for
raw histories or known learners, in batches of any size; it needs neither the recipe, nor the
plugins, nor the training data.

>>> art = Artifact("export/quickstart")                       # doctest: +SKIP
>>> art.recommend(histories=[["cmu_15-112", "cmu_15-122"]], k=3)  # doctest: +SKIP
[[{'item': 'cmu_15-213', 'title': '...', 'score': 9.1}, ...]]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from rectk.compiler import inference_options
from rectk.errors import RectkError

FORMAT = "rectk-export/1"
_FILES = ("manifest.json", "predict.jaxexport", "weights.safetensors", "catalogue.json")


class RequestError(RectkError):
    """A request the artefact cannot answer (unknown ids, k out of range, ...): the caller's
    input, not the artefact, is wrong. ``status`` is the HTTP status a server answers with."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def _bucket(n: int) -> int:
    """The batch size ``n`` rows are padded to: the next power of two (one compiled shape per
    bucket)."""
    return 1 << max(0, (n - 1).bit_length())


class Artifact:
    """An exported run, ready to score (see the module)."""

    def __init__(self, path: str | Path):
        from safetensors.numpy import load_file

        self.path = Path(path)
        missing = [f for f in _FILES if not (self.path / f).is_file()]
        if missing:
            raise RectkError(
                f"{self.path} is not a rectk export (missing {', '.join(missing)}): "
                "write one with rectk export --run RUN --out DIR"
            )
        try:
            self.manifest = json.loads((self.path / "manifest.json").read_text())
            fmt = self.manifest.get("format")
            if fmt != FORMAT:
                raise RectkError(
                    f"{self.path}/manifest.json: format {fmt!r}, this rectk reads {FORMAT!r}"
                )
            catalogue = json.loads((self.path / "catalogue.json").read_text())
            self.exported = jax.export.deserialize(
                bytearray((self.path / "predict.jaxexport").read_bytes())
            )
            tensors = load_file(str(self.path / "weights.safetensors"))
        except RectkError:
            raise
        except Exception as err:  # truncated or foreign files: one message naming the folder
            raise RectkError(f"{self.path} is damaged ({type(err).__name__}: {err})") from None
        self.k_max = int(self.manifest["k_max"])
        self.max_len = int(self.manifest["max_len"])
        self.num_items = int(self.manifest["num_items"])
        self.seen_multiple = int(self.manifest.get("seen_multiple", 64))
        self.seen_len: int | None = self.manifest.get("seen_len")  # None: any length
        self.item_ids: list[str] = list(catalogue["item_ids"])
        self.titles: list[str] | None = catalogue.get("titles")
        self.item_index = {item: i + 1 for i, item in enumerate(self.item_ids)}
        names = self.manifest["arguments"]
        leaves = [tensors[f"{i:05d}"] for i in range(len(names))]
        probe = np.zeros((1, 1), np.int32)
        (arguments, _, _), _ = jax.tree.unflatten(self.exported.in_tree, [*leaves, probe, probe])
        self.arguments = jax.device_put(arguments)
        self.user_ids: tuple[str, ...] = ()
        self._user_index: dict[str, int] = {}
        learners = self.path / "learners.npz"
        if learners.is_file():
            with np.load(learners, allow_pickle=False) as z:
                self.user_ids = tuple(str(u) for u in z["user_ids"])
                self._ptr, self._items = z["ptr"], z["items"]
            self._user_index = {u: i for i, u in enumerate(self.user_ids)}
        options = inference_options(bool(self.manifest.get("library_dots", True)))
        self._call = jax.jit(self.exported.call, compiler_options=options)

    # ---- ids -------------------------------------------------------------------------------

    def history_of(self, user: str) -> np.ndarray:
        """A known learner's history (model item ids), or a ``RequestError`` (404)."""
        row = self._user_index.get(user)
        if row is None:
            raise RequestError(f"unknown learner {user!r}: not in this export's learners", 404)
        return self._items[self._ptr[row] : self._ptr[row + 1]]

    def encode(self, history: Sequence[str]) -> np.ndarray:
        """Raw item ids -> model ids; unknown ones are one ``RequestError`` naming them."""
        unknown = [h for h in history if h not in self.item_index]
        if unknown:
            shown = ", ".join(map(repr, unknown[:5])) + (", ..." if len(unknown) > 5 else "")
            raise RequestError(f"unknown item id(s) in the history: {shown}")
        return np.asarray([self.item_index[h] for h in history], np.int32)

    # ---- scoring ---------------------------------------------------------------------------

    def top_k(self, rows: Sequence[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores [n, k], model ids [n, k])`` for histories of model item ids (seen items
        masked; an empty slot has id 0 and score -inf). The batch is padded to a power of two
        and the seen items to a multiple of ``seen_multiple``, so few shapes compile."""
        if not 1 <= k <= self.k_max:
            raise RequestError(f"k must lie in 1..{self.k_max} (this export's k_max), got {k}")
        if not rows:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int32)
        n, b = len(rows), _bucket(len(rows))
        longest = max(1, *(len(r) for r in rows))
        h = -(-longest // self.seen_multiple) * self.seen_multiple
        if self.seen_len is not None:
            if longest > self.seen_len:
                raise RequestError(
                    f"a history of {longest} items exceeds this export's longest, {self.seen_len}",
                    413,
                )
            h = self.seen_len
        inputs = np.zeros((b, self.max_len), np.int32)
        seen = np.zeros((b, h), np.int32)
        for i, r in enumerate(rows):
            r = np.asarray(r, np.int32)
            tail = r[-self.max_len :]
            if len(tail):
                inputs[i, self.max_len - len(tail) :] = tail
                seen[i, h - len(r) :] = r
        scores, ids = self._call(self.arguments, inputs, seen)
        return np.asarray(scores)[:n, :k], np.asarray(ids)[:n, :k]

    def recommend(
        self,
        histories: Sequence[Sequence[str]] | None = None,
        *,
        users: Sequence[str] | None = None,
        k: int = 10,
    ) -> list[list[dict]]:
        """Per learner, the top-``k`` unseen items as ``{"item", "title", "score"}``."""
        if (histories is None) == (users is None):
            raise RequestError("give exactly one of histories or users")
        if users is not None:
            rows = [self.history_of(u) for u in users]
        else:
            rows = [self.encode(h) for h in histories or []]
        for r in rows:
            if len(r) == 0:
                raise RequestError("an empty history: at least one item is needed")
        scores, ids = self.top_k(rows, k)
        return [self.items(s, i) for s, i in zip(scores, ids, strict=True)]

    def items(self, scores_k: np.ndarray, ids_k: np.ndarray) -> list[dict]:
        """One list's ``{"item", "title", "score"}`` entries, empty slots dropped."""
        out = []
        for s, i in zip(scores_k, ids_k, strict=True):
            if not np.isfinite(s) or i <= 0:
                break
            out.append(
                {
                    "item": self.item_ids[int(i) - 1],
                    "title": self.titles[int(i) - 1] if self.titles else "",
                    "score": float(s),
                }
            )
        return out
