"""Knowledge-tracing (KT) data: each learner's answers in time order, their folds, and the
cuts pyKT's evaluation protocol makes.

One row per answered question: its question, its concepts (a question may have several) and
the response (1 correct, 0 not). A multi-concept question stays one row, so an answer can never
sit in the context of its own prediction, whatever concept is asked about. Learners' rows are in
CSR form, like ``rectk.data.split.Sequences``; ids are dense (0 is padding) with raw-id
vocabularies, and each learner carries a fold: ``0..K-1`` cross-validation folds, ``TEST_FOLD``
the held-out test learners.

pyKT's protocol on top of it (``docs/data.md``, "Knowledge-tracing files"): a learner's answers
are cut into consecutive chunks of ``PYKT_MAXLEN`` (a last chunk shorter than ``PYKT_MIN_LEN``
is dropped), and every answer but a chunk's first is predicted from the chunk's answers before
it (``targets(..., "chunks")``); the "window" test view predicts every answer but a learner's
first from up to ``PYKT_MAXLEN - 1`` answers before it (``targets(..., "windows")``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from rectk.errors import DataError

PYKT_MAXLEN = 200  # pyKT's sequence length (split_datasets.py, ``maxlen``)
PYKT_MIN_LEN = 3  # pyKT drops a last chunk shorter than this (``min_seq_len``)
TEST_FOLD = -1  # pyKT's fold of the test learners
NO_FOLD = -2  # the fold of the padding learner 0


@dataclasses.dataclass(frozen=True)
class Cuts:
    """Stretches of the rows of a ``KTData``: learner ``learner[n]``'s rows
    ``start[n] : start[n] + length[n]`` (global row indices)."""

    learner: np.ndarray  # int32 [S]
    start: np.ndarray  # int64 [S]
    length: np.ndarray  # int64 [S]

    def __len__(self) -> int:
        return int(self.learner.shape[0])


@dataclasses.dataclass(frozen=True)
class Targets:
    """Answers to predict: row ``row[n]`` from the same learner's rows ``start[n] : row[n]``."""

    learner: np.ndarray  # int32 [T]
    row: np.ndarray  # int64 [T], global row of the answer predicted
    start: np.ndarray  # int64 [T], first global row of its context (start <= row)

    def __len__(self) -> int:
        return int(self.row.shape[0])


@dataclasses.dataclass(frozen=True)
class FoldSplit:
    """Dense learner ids of a cross-validation split: train on the folds but ``valid``'s."""

    train: np.ndarray  # int32
    valid: np.ndarray  # int32
    test: np.ndarray  # int32


@dataclasses.dataclass(frozen=True, kw_only=True)
class KTData:
    """Learners' answers in time order, CSR by learner (a frozen container, NumPy only).

    Attributes:
      ptr: int64 [U + 2]; learner ``u`` (1..U) owns rows ``ptr[u]:ptr[u + 1]``; learner 0 is
        padding and owns none.
      question: int32 [N], dense question id in 1..Q.
      concepts: int32 [N, K], dense concept ids in 1..C, 0 filling a row with fewer than K.
      response: int8 [N], 1 correct, 0 not.
      fold: int8 [U + 1]; ``fold[u]`` is 0..K-1 (cross-validation) or ``TEST_FOLD``;
        ``fold[0]`` is ``NO_FOLD``.
      learner_ids, question_ids, concept_ids: raw ids; ``question_ids[q - 1]`` is dense ``q``'s.
      has_questions: False when the files name concepts only: then, as in pyKT, the question
        is the concept (``question == concepts[:, 0]``, ``question_ids == concept_ids``).
      source: where the data came from, for messages.
    """

    ptr: np.ndarray
    question: np.ndarray
    concepts: np.ndarray
    response: np.ndarray
    fold: np.ndarray
    learner_ids: tuple[str, ...]
    question_ids: tuple[str, ...]
    concept_ids: tuple[str, ...]
    has_questions: bool
    source: str = ""

    def __len__(self) -> int:
        return int(self.response.shape[0])

    @property
    def num_learners(self) -> int:
        return len(self.learner_ids)

    @property
    def num_questions(self) -> int:
        return len(self.question_ids)

    @property
    def num_concepts(self) -> int:
        return len(self.concept_ids)

    @property
    def lengths(self) -> np.ndarray:
        """int64 [U + 1], answers per learner (0 for the padding learner)."""
        return np.diff(self.ptr)

    @property
    def learner(self) -> np.ndarray:
        """int32 [N], the dense learner of each row."""
        return np.repeat(np.arange(self.num_learners + 1, dtype=np.int32), self.lengths)

    def rows(self, u: int) -> slice:
        return slice(int(self.ptr[u]), int(self.ptr[u + 1]))

    def learners(self, *folds: int) -> np.ndarray:
        """int32, dense ids of the learners in any of ``folds``, ascending."""
        return np.flatnonzero(np.isin(self.fold, folds)).astype(np.int32)

    @property
    def folds(self) -> tuple[int, ...]:
        """The cross-validation folds present (``TEST_FOLD`` excluded), ascending."""
        return tuple(int(f) for f in np.unique(self.fold) if f >= 0)

    def split(self, valid_fold: int = 0) -> FoldSplit:
        """pyKT's split: train on every cross-validation fold but ``valid_fold``, validate on
        it, test on ``TEST_FOLD``."""
        if valid_fold not in self.folds:
            raise DataError(
                f"{self.source}: no learners in fold {valid_fold} (folds: "
                f"{', '.join(map(str, self.folds)) or 'none'}); pick one of those"
            )
        train = [f for f in self.folds if f != valid_fold]
        return FoldSplit(
            train=self.learners(*train),
            valid=self.learners(valid_fold),
            test=self.learners(TEST_FOLD),
        )

    def chunks(
        self,
        learners: np.ndarray | Sequence[int],
        maxlen: int = PYKT_MAXLEN,
        min_len: int = PYKT_MIN_LEN,
    ) -> Cuts:
        """The learners' answers cut as pyKT cuts them (``pykt_chunks``), in learner order."""
        learners = np.asarray(learners, np.int32)
        index, start, length = pykt_chunks(self.lengths[learners], maxlen, min_len)
        return Cuts(
            learner=learners[index],
            start=self.ptr[learners[index]] + start,
            length=length,
        )

    def targets(
        self,
        learners: np.ndarray | Sequence[int],
        view: str = "chunks",
        maxlen: int = PYKT_MAXLEN,
        min_len: int = PYKT_MIN_LEN,
    ) -> Targets:
        """The answers pyKT predicts for ``learners``, each with its context.

        ``view="chunks"`` (pyKT's ``test_sequences.csv``, also its training and validation
        rows): within each chunk, every answer but the first, from the chunk's answers before
        it. ``view="windows"`` (``test_window_sequences.csv``): every answer but a learner's
        first, from up to ``maxlen - 1`` answers before it.
        """
        if view == "chunks":
            cuts = self.chunks(learners, maxlen, min_len)
            n = cuts.length - 1
            offset = _ranges(n) + 1
            start = np.repeat(cuts.start, n)
            return Targets(learner=np.repeat(cuts.learner, n), row=start + offset, start=start)
        if view == "windows":
            learners = np.asarray(learners, np.int32)
            n = np.maximum(self.lengths[learners] - 1, 0)
            pos = _ranges(n) + 1  # position in the learner's sequence
            first = np.repeat(self.ptr[learners], n)
            return Targets(
                learner=np.repeat(learners, n),
                row=first + pos,
                start=first + np.maximum(pos - (maxlen - 1), 0),
            )
        raise DataError(f"unknown KT target view {view!r} (expected 'chunks' or 'windows')")


def _ranges(n: np.ndarray) -> np.ndarray:
    """``concat(arange(k) for k in n)``."""
    n = np.asarray(n, np.int64)
    ends = np.cumsum(n)
    return np.arange(int(ends[-1]) if len(n) else 0) - np.repeat(ends - n, n)


def pykt_chunks(
    lengths: np.ndarray | Sequence[int], maxlen: int = PYKT_MAXLEN, min_len: int = PYKT_MIN_LEN
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chunks of sequences of ``lengths`` as pyKT's ``generate_sequences`` makes them.

    Each sequence gives ``len // maxlen`` full chunks, then its rest if the rest holds at least
    ``min_len`` answers (a shorter rest, and a sequence shorter than ``min_len``, is dropped).

    Returns:
      ``(index, start, length)``: per chunk, the sequence it comes from, its offset in it and
      its length.

    >>> [a.tolist() for a in pykt_chunks([2, 3, 201, 203, 400])]
    [[1, 2, 3, 3, 4, 4], [0, 0, 0, 200, 0, 200], [3, 200, 200, 3, 200, 200]]
    """
    lengths = np.asarray(lengths, np.int64)
    if maxlen < 1 or min_len < 1:
        raise DataError(f"KT chunks: maxlen and min_len must be positive, got {maxlen}, {min_len}")
    full = lengths // maxlen
    rest = lengths - full * maxlen
    tail = rest >= min_len
    count = full + tail
    index = np.repeat(np.arange(len(lengths)), count)
    j = _ranges(count)  # chunk number within its sequence
    length = np.where(j < full[index], maxlen, rest[index])
    return index, j * maxlen, length


def build(
    *,
    lengths: Sequence[int] | np.ndarray,
    question: np.ndarray | None,
    concepts: np.ndarray,
    response: np.ndarray,
    fold: Sequence[int] | np.ndarray,
    learner_ids: Sequence[str],
    source: str,
) -> KTData:
    """A ``KTData`` from raw integer ids, learners in the order given.

    Args:
      lengths: answers per learner.
      question: int64 [N], raw question ids; None when the data names concepts only.
      concepts: int64 [N, K], raw concept ids, -1 filling rows with fewer than K.
      response: [N], 0 or 1.
      fold: per learner, 0..K-1 or ``TEST_FOLD``.
      learner_ids: raw learner ids, one per learner.

    Dense ids follow the raw integer ids in ascending order, so the same raw id gets the same
    dense id whatever file or learner it first appears in.
    """
    if len(learner_ids) == 0 or len(response) == 0:
        raise DataError(f"{source}: no answers found (the data set is empty)")
    ptr = np.zeros(len(lengths) + 2, np.int64)
    np.cumsum(np.asarray(lengths, np.int64), out=ptr[2:])
    concepts = np.asarray(concepts, np.int64).reshape(len(response), -1)
    concept_vocab = np.unique(concepts[concepts >= 0])
    dense_c = np.where(concepts >= 0, np.searchsorted(concept_vocab, concepts) + 1, 0)
    if question is None:
        question_vocab, dense_q = concept_vocab, dense_c[:, 0]
    else:
        question_vocab = np.unique(question)
        dense_q = np.searchsorted(question_vocab, question) + 1
    return KTData(
        ptr=ptr,
        question=dense_q.astype(np.int32),
        concepts=dense_c.astype(np.int32),
        response=np.asarray(response, np.int8),
        fold=np.concatenate([[NO_FOLD], np.asarray(fold, np.int8)]).astype(np.int8),
        learner_ids=tuple(learner_ids),
        question_ids=tuple(str(int(q)) for q in question_vocab),
        concept_ids=tuple(str(int(c)) for c in concept_vocab),
        has_questions=question is not None,
        source=source,
    )
