"""Learning resources for a topic, a course or a learner's history, by text similarity.

A :class:`ResourceIndex` holds one unit-length text embedding per resource (``emb_rd``);
a query is a text (a topic's name, a course's title and description) or a history of texts
(the mean of their unit embeddings), scored by cosine similarity. The text encoder is passed
in as ``embed(texts) -> [N, D]``, so any encoder serves (rectk's own is
``rectk_plugins.text.embedder.text_embedder``).

>>> emb_rd = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
>>> index = ResourceIndex.build(("a", "b", "c"), ("A", "B", "C"), emb_rd)
>>> [r["id"] for r in index.top_k(np.array([1.0, 0.2]), k=2)]
['a', 'c']
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rectk.errors import RectkError

__all__ = ["Embed", "ResourceIndex", "history_vector", "recall_ndcg_at_k", "unit"]

Embed = Callable[[Sequence[str]], np.ndarray]  # texts -> float32 [N, D]


def unit(x_nd: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), as float32."""
    x_nd = np.asarray(x_nd, np.float32)
    norm_n1 = np.linalg.norm(x_nd, axis=-1, keepdims=True)
    return x_nd / np.maximum(norm_n1, 1e-12)


def history_vector(emb_hd: np.ndarray) -> np.ndarray:
    """One query from a history of H texts: the mean of their unit embeddings, unit length.

    >>> [round(float(v), 3) for v in history_vector(np.array([[2.0, 0.0], [0.0, 1.0]]))]
    [0.707, 0.707]
    """
    if len(emb_hd) == 0:
        raise RectkError("a history query needs at least one text")
    return unit(unit(emb_hd).mean(0, keepdims=True))[0]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ResourceIndex:
    """Resources and their unit text embeddings ``emb_rd`` ``[R, D]``."""

    ids: tuple[str, ...]
    titles: tuple[str, ...]
    emb_rd: np.ndarray

    @classmethod
    def build(cls, ids: Sequence[str], titles: Sequence[str], emb_rd: np.ndarray) -> ResourceIndex:
        """An index over precomputed embeddings (normalised here)."""
        if not (len(ids) == len(titles) == len(emb_rd)):
            raise RectkError(
                f"{len(ids)} ids, {len(titles)} titles and {len(emb_rd)} embeddings: "
                "one of each per resource"
            )
        return cls(ids=tuple(ids), titles=tuple(titles), emb_rd=unit(emb_rd))

    @classmethod
    def from_texts(
        cls, ids: Sequence[str], titles: Sequence[str], embed: Embed, texts: Sequence[str] = ()
    ) -> ResourceIndex:
        """An index embedding ``texts`` (default: the titles) with ``embed``."""
        return cls.build(ids, titles, embed(list(texts or titles)))

    def save(self, path: str | Path) -> None:
        """Writes the index to ``path`` (``.npz``) atomically: a reader never sees half a file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as f:
            np.savez(f, ids=np.array(self.ids), titles=np.array(self.titles), emb_rd=self.emb_rd)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> ResourceIndex:
        """An index written by :meth:`save`."""
        with np.load(path) as z:
            return cls(
                ids=tuple(z["ids"].tolist()),
                titles=tuple(z["titles"].tolist()),
                emb_rd=z["emb_rd"].astype(np.float32),
            )

    @classmethod
    def cached(
        cls, path: str | Path, ids: Sequence[str], titles: Sequence[str], embed: Embed
    ) -> ResourceIndex:
        """The index saved at ``path`` if it holds exactly these resources, else a new one
        (embedding the titles) saved there. ``path`` should name the encoder too."""
        path = Path(path)
        if path.is_file():
            try:
                index = cls.load(path)
            except (OSError, ValueError, KeyError):
                index = None  # damaged or foreign: rebuild
            if index is not None and index.ids == tuple(ids) and index.titles == tuple(titles):
                return index
        index = cls.from_texts(ids, titles, embed)
        index.save(path)
        return index

    def scores(self, query_qd: np.ndarray) -> np.ndarray:
        """Cosine similarity of each query to each resource, ``[Q, R]``."""
        return unit(np.atleast_2d(query_qd)) @ self.emb_rd.T

    def top_k(self, query_d: np.ndarray, *, k: int = 10) -> list[dict]:
        """The ``k`` nearest resources to one query: ``[{"id", "title", "score"}, ...]``."""
        if k < 1:
            raise RectkError(f"k must be at least 1, got {k}")
        scores_r = self.scores(query_d)[0]
        k = min(k, len(scores_r))
        top = np.argpartition(-scores_r, k - 1)[:k]
        top = top[np.lexsort((top, -scores_r[top]))]  # by score, then index
        return [
            {"id": self.ids[i], "title": self.titles[i], "score": float(scores_r[i])} for i in top
        ]

    def for_text(self, embed: Embed, text: str, *, k: int = 10) -> list[dict]:
        """Resources for a free text: a topic's name, or a course's title and description."""
        return self.top_k(embed([text])[0], k=k)

    def for_history(self, embed: Embed, texts: Sequence[str], *, k: int = 10) -> list[dict]:
        """Resources for a learner's history of course texts (mean of their embeddings)."""
        return self.top_k(history_vector(embed(list(texts))), k=k)


def recall_ndcg_at_k(
    scores_qr: np.ndarray, relevant_qr: np.ndarray, *, k: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Recall@k and NDCG@k per query, with several relevant resources per query.

    Ties count against the query: a relevant resource ranks below every resource scored
    equal to it. Recall is the share of the relevant resources in the top k; NDCG's ideal
    list puts ``min(k, #relevant)`` relevant ones first.

    >>> s = np.array([[0.9, 0.8, 0.1, 0.5]])
    >>> r, n = recall_ndcg_at_k(s, np.array([[True, False, False, True]]), k=2)
    >>> r.tolist(), n.round(3).tolist()
    ([0.5], [0.613])
    """
    scores_qr = np.asarray(scores_qr, np.float64)
    relevant_qr = np.asarray(relevant_qr, bool)
    # rank of each resource: how many score higher, plus the relevant ones' ties against them
    order_qr = np.lexsort((relevant_qr, -scores_qr), axis=-1)  # relevant after equal scores
    top_qk = order_qr[:, :k]
    hit_qk = np.take_along_axis(relevant_qr, top_qk, axis=-1)
    n_q = relevant_qr.sum(-1)
    gain_k = 1.0 / np.log2(np.arange(2, k + 2))
    dcg_q = (hit_qk * gain_k).sum(-1)
    ideal_q = np.array([gain_k[: min(k, int(n))].sum() for n in n_q])
    safe_q = np.maximum(n_q, 1)
    return hit_qk.sum(-1) / safe_q, np.where(ideal_q > 0, dcg_q / np.maximum(ideal_q, 1e-12), 0)
