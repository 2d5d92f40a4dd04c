"""Course features read from a catalogue alone: university (group), level 1..5 and topics.

``docs/simulator.md`` ("Courses") explains each; the learner simulator builds its choice
model on them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["course_group", "course_levels", "parse_course_level", "topic_memberships"]


def course_group(course_id: str) -> str:
    """The university prefix of a course id (``"mit_6.006"`` -> ``"mit"``), else ``""``."""
    head, sep, _ = course_id.partition("_")
    return head if sep else ""


def _course_number(course_id: str) -> str | None:
    """The digits of the course number in an id (``"cmu_15-221"`` -> ``"221"``), or None."""
    number = course_id.partition("_")[2] or course_id
    tokens = re.split(r"[\s\-.:/]+", number.split(",")[0].strip())
    digits = re.match(r"\d+", tokens[-1]) if tokens else None
    return digits.group() if digits else None


def parse_course_level(course_id: str) -> int | None:
    """A coarse level 1..5 from the course number in an id, or None when there is none.

    The number is the last token of the id (after the university prefix, the first of
    comma-separated cross-listings, split at spaces, ``-``, ``.``, ``:`` and ``/``); it must
    start with a digit. Numbers of three or more digits give their leading digit (``15-221`` ->
    2, ``CS:3110`` -> 3, ``CS 50300`` -> 5), shorter ones are introductory (1); the result is
    clipped to 1..5.

    >>> [parse_course_level(c) for c in ("cmu_15-221", "mit_6.641", "mit_6.0001", "mit_6.UR")]
    [2, 5, 1, None]
    """
    run = _course_number(course_id)
    return None if run is None else _level_of_number(run)


def _level_of_number(run: str) -> int:
    """Leading digit of a 3+ digit course number, else 1; clipped to 1..5."""
    leading = int(run[0]) if len(run) >= 3 else 1
    return min(max(leading, 1), 5)


def course_levels(item_ids: Sequence[str], *, max_share: float = 0.75) -> np.ndarray:
    """Levels 1..5 (int [N]) of courses, by university (the id prefix).

    Each course gets :func:`parse_course_level`. Where that leaves a university without
    spread (one level holds more than ``max_share`` of its numbered courses, as for Caltech,
    whose 1-digit and 1xx courses all read as level 1, or a list of graduate courses only),
    the university's courses are ranked by number and cut into five equal levels instead. A
    course without a number gets its university's median level (3 if none has a number).

    >>> course_levels(["a_101", "a_250", "a_480", "a_UR", "b_1", "b_2", "b_3", "b_4", "b_5"]).tolist()
    [1, 2, 4, 2, 1, 2, 3, 4, 5]
    """
    groups = [course_group(c) for c in item_ids]
    numbers = [_course_number(c) for c in item_ids]
    levels = np.zeros(len(item_ids), np.int64)
    for g in sorted(set(groups)):
        members = [i for i, h in enumerate(groups) if h == g]
        known = {i: n for i in members if (n := numbers[i]) is not None}
        level = {i: _level_of_number(n) for i, n in known.items()}
        counts = np.bincount(list(level.values()), minlength=6)
        if len(known) >= 5 and counts.max() > max_share * len(known):
            values = np.array([int(n) for n in known.values()])
            below = np.searchsorted(np.sort(values), values, side="left")
            level = {
                i: 1 + min(4, 5 * int(r) // len(known)) for i, r in zip(known, below, strict=True)
            }
        fallback = int(np.median(list(level.values())) + 0.5) if level else 3
        for i in members:
            levels[i] = level.get(i, fallback)
    return levels


_STOP_TEXT = """a about above after all also an and any are as at be been before being both but by can
    course courses cover covered covers credit department do does each either emphasis etc for
    from given has have hours how however i ii in include included includes including into is it
    its may more most must new no not of offered on one only or other others over permission
    prerequisite prerequisites project projects provide provides required requires see semester
    several should so some student students studies study such taught than that the their them
    then there these they this those through to topic topics two under understanding units up
    upon use used uses using various well what when which while who will with within work"""
_STOP_WORDS = frozenset(_STOP_TEXT.split())
_TOKEN = re.compile(r"[a-z][a-z0-9+#]+")


class _Sparse(NamedTuple):
    """A sparse [N, W] matrix as row-sorted triplets."""

    row: np.ndarray
    col: np.ndarray
    val: np.ndarray
    shape: tuple[int, int]


def _tfidf(texts: Sequence[str]) -> _Sparse:
    """Row-normalised TF-IDF [N, W] over words found in 2+ texts and at most half of them."""
    docs = [[w for w in _TOKEN.findall(t.lower()) if w not in _STOP_WORDS] for t in texts]
    df: dict[str, int] = {}
    for doc in docs:
        for w in set(doc):
            df[w] = df.get(w, 0) + 1
    n = len(docs)
    vocab = sorted(w for w, c in df.items() if 2 <= c <= max(2, n // 2))
    col = {w: j for j, w in enumerate(vocab)}
    idf_w = np.log((1.0 + n) / (1.0 + np.array([df[w] for w in vocab], np.float64))) + 1.0
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for i, doc in enumerate(docs):
        counts: dict[int, int] = {}
        for w in doc:
            j = col.get(w)
            if j is not None:
                counts[j] = counts.get(j, 0) + 1
        js = sorted(counts)
        weights = np.log1p(np.array([counts[j] for j in js], np.float64)) * idf_w[js]
        norm = float(np.linalg.norm(weights))
        rows += [i] * len(js)
        cols += js
        vals += (weights / norm).tolist() if norm > 0 else []
    return _Sparse(
        np.array(rows, np.int64), np.array(cols, np.int64), np.array(vals), (n, len(vocab))
    )


def _segment_sum(values_ek: np.ndarray, segment_e: np.ndarray, size: int) -> np.ndarray:
    """Sum rows of ``values_ek`` by their sorted segment id into [size, K]."""
    out_sk = np.zeros((size, values_ek.shape[1]))
    if segment_e.size:
        ids, starts = np.unique(segment_e, return_index=True)
        out_sk[ids] = np.add.reduceat(values_ek, starts, axis=0)
    return out_sk


def _nmf_topics(x: _Sparse, k: int, rng: np.random.Generator, iters: int = 150) -> np.ndarray:
    """Topic memberships [N, k] (rows sum to 1) by NMF of sparse ``x`` (multiplicative updates).

    Rows without any word get uniform memberships.
    """
    n, w = x.shape
    if w == 0 or k == 1:
        return np.full((n, k), 1.0 / k)
    eps = 1e-10
    by_col = np.argsort(x.col, kind="stable")
    col_c, row_c, val_c = x.col[by_col], x.row[by_col], x.val[by_col]
    scale = np.sqrt(x.val.sum() / (n * w) / k)
    w_nk = rng.random((n, k)) * scale + eps
    h_kw = rng.random((k, w)) * scale + eps
    for _ in range(iters):
        wx_wk = _segment_sum(w_nk[row_c] * val_c[:, None], col_c, w)  # (W^T X)^T
        h_kw *= wx_wk.T / ((w_nk.T @ w_nk) @ h_kw + eps)
        xh_nk = _segment_sum(h_kw.T[x.col] * x.val[:, None], x.row, n)  # X H^T
        w_nk *= xh_nk / (w_nk @ (h_kw @ h_kw.T) + eps)
    total = w_nk.sum(axis=1, keepdims=True)
    return np.where(total > 1e-8, w_nk / np.where(total > 0, total, 1.0), 1.0 / k)


def topic_memberships(
    texts: Sequence[str], num_topics: int, rng: np.random.Generator
) -> np.ndarray:
    """Topic memberships [N, num_topics] of ``texts`` (rows sum to 1): NMF over TF-IDF.

    Words count when found in at least two and at most half of the texts; a text without any
    such word gets uniform memberships. ``rng`` seeds the factorisation's random start.
    """
    return _nmf_topics(_tfidf(texts), num_topics, rng)
