"""A finished knowledge-tracing run, loaded from its directory alone: success probabilities
for any question after any history, and per-concept mastery.

The run directory holds what this needs beside the weights: ``answers.npz`` (each learner's
answers, the concept of each question, the question and concept ids) written at training
start. A learner's mastery of a concept is the model's predicted probability of answering that
concept's questions right next, given the learner's answers so far (averaged over the
concept's questions).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import zipfile
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from rectk import recipe as recipe_lib
from rectk.config import RunConfig
from rectk.data.kt import KTData
from rectk.data.pipeline import pow2_at_least
from rectk.errors import DataError, RectkError
from rectk.predict import best_weights
from rectk.rundir import RunDir, atomic_write, damaged

ANSWERS = "answers.npz"


def save_answers(rd: RunDir, kt: KTData) -> None:
    """Writes ``answers.npz``: learners' answers (CSR), each question's first concept, ids,
    each learner's fold (``fold[u]``; the test learners' is ``TEST_FOLD``), and whether the
    data set names questions apart from concepts."""
    concept_of = np.zeros(kt.num_questions + 1, np.int32)
    concept_of[kt.question[::-1]] = kt.concepts[::-1, 0]  # each question's first row wins
    buf = io.BytesIO()
    np.savez(
        buf,
        ptr=kt.ptr,
        question=kt.question,
        response=kt.response,
        concept_of=concept_of,
        learner_ids=np.asarray(kt.learner_ids),
        question_ids=np.asarray(kt.question_ids),
        concept_ids=np.asarray(kt.concept_ids),
        fold=np.asarray(kt.fold),
        has_questions=np.asarray(kt.has_questions),
    )
    atomic_write(rd.path / ANSWERS, buf.getvalue())


@dataclasses.dataclass(frozen=True, kw_only=True)
class KTRun:
    """A knowledge-tracing run: its recipe, best weights, ids and learners' answers."""

    cfg: RunConfig
    graphdef: Any
    weights: Any
    step: int
    ptr: np.ndarray
    question: np.ndarray
    response: np.ndarray
    concept_of: np.ndarray  # int32 [Q + 1], each question's (first) concept
    learner_ids: tuple[str, ...]
    question_ids: tuple[str, ...]
    concept_ids: tuple[str, ...]
    fold: np.ndarray | None = None  # int8 [U + 1] learners' folds (None: a run saved before)
    _predict: Any = None  # jitted (weights, batch) -> probabilities (kt.train.probabilities)

    @property
    def maxlen(self) -> int:
        return int(self.cfg.task.maxlen)

    def learner(self, learner_id: str) -> tuple[np.ndarray, np.ndarray]:
        """``(questions, responses)`` of a known learner, in answer order (dense ids)."""
        try:
            u = self.learner_ids.index(str(learner_id)) + 1
        except ValueError:
            shown = ", ".join(self.learner_ids[:5])
            raise DataError(
                f"unknown learner {learner_id!r}; this run knows {len(self.learner_ids)} "
                f"learners (e.g. {shown})"
            ) from None
        rows = slice(int(self.ptr[u]), int(self.ptr[u + 1]))
        return self.question[rows].astype(np.int32), self.response[rows].astype(np.int32)

    def questions(self, raw: list[str]) -> np.ndarray:
        """Dense ids of raw question ids; an unknown one is a ``DataError`` naming it."""
        index = {q: i + 1 for i, q in enumerate(self.question_ids)}
        bad = [q for q in raw if str(q) not in index]
        if bad:
            raise DataError(f"unknown question id(s) {', '.join(map(repr, bad[:5]))}")
        return np.asarray([index[str(q)] for q in raw], np.int32)

    def success(
        self, questions: np.ndarray, responses: np.ndarray, candidates: np.ndarray | None = None
    ) -> np.ndarray:
        """The probability of answering each candidate question right next, after the
        answers ``(questions, responses)`` (their last ``maxlen - 1`` are read); candidates
        default to every question (dense ids 1..Q, returned in that order)."""
        if candidates is None:
            candidates = np.arange(1, len(self.question_ids) + 1, dtype=np.int32)
        hist_q = np.asarray(questions, np.int32)[-(self.maxlen - 1) :]
        hist_r = np.asarray(responses, np.int32)[-(self.maxlen - 1) :]
        n, h = len(candidates), len(hist_q)
        width = min(self.maxlen, int(pow2_at_least(h + 1, 8)))
        rows = int(pow2_at_least(n, 8))
        q = np.zeros((rows, width), np.int32)
        r = np.zeros((rows, width), np.int32)
        q[:, :h], r[:, :h] = hist_q, hist_r
        q[:n, h] = candidates
        mask = np.zeros((rows, width), bool)
        mask[:n, : h + 1] = True
        mask[n:, :1] = True  # padding rows: one harmless answer each
        q[n:, 0] = np.where(q[n:, 0] > 0, q[n:, 0], 1)
        return np.asarray(self.probabilities(q, r, mask))[:n, h]

    def probabilities(self, q: np.ndarray, r: np.ndarray, mask: np.ndarray) -> jax.Array:
        """Success probabilities ``[B, L]`` of rows of dense question ids and responses
        (answers left-aligned, ``mask`` marking them), each question's concept looked up."""
        batch = {"question": q, "concept": self.concept_of[q] * (q > 0), "response": r}
        return self._predict(self.weights, {**batch, "mask": mask})

    def mastery(self, questions: np.ndarray, responses: np.ndarray) -> dict[str, np.ndarray]:
        """Per concept (dense 1..C): the mean predicted success over its questions after the
        answers given, and how many of them the learner answered (and got right)."""
        p_q = self.success(questions, responses)  # [Q], questions 1..Q
        c_q = self.concept_of[1:]
        n_c = len(self.concept_ids) + 1
        per = np.bincount(c_q, p_q, minlength=n_c) / np.maximum(np.bincount(c_q, minlength=n_c), 1)
        c_hist = self.concept_of[np.asarray(questions, np.int64)]
        return {
            "mastery": per[1:],
            "answered": np.bincount(c_hist, minlength=n_c)[1:],
            "right": np.bincount(c_hist, np.asarray(responses, np.float64), minlength=n_c)[1:],
        }


def load_kt_run(path: str | Path) -> KTRun:
    """The knowledge-tracing run in ``path`` at its best validation step (else its latest)."""
    from rectk.kt.train import model_factory, probabilities

    rd = RunDir(path)
    record = rd.record()
    cfg: RunConfig = recipe_lib.load(rd.path / "recipe.toml").config
    if getattr(type(cfg.task), "plugin_name", "") != "knowledge_tracing":
        raise RectkError(
            f"{rd.path} is not a knowledge-tracing run (its task is not 'knowledge_tracing')"
        )
    f = rd.path / ANSWERS
    if not f.is_file():
        raise damaged(f, "missing")
    try:
        with np.load(f) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, EOFError) as err:
        raise damaged(f, f"not a complete NumPy archive: {err}") from None
    shape_only = _Shapes(
        len(arrays["question_ids"]),
        len(arrays["concept_ids"]),
        bool(arrays.get("has_questions", False)),  # absent from runs before it was kept
    )
    make = model_factory(cfg, shape_only)
    graphdef, params, rest = nnx.split(nnx.eval_shape(make), nnx.Param, ...)  # type: ignore[misc]
    step, _, weights = best_weights(rd, cfg, record, params, rest)

    return KTRun(
        cfg=cfg,
        graphdef=graphdef,
        weights=weights,
        step=step,
        ptr=arrays["ptr"],
        question=arrays["question"],
        response=arrays["response"],
        concept_of=arrays["concept_of"],
        learner_ids=tuple(str(x) for x in arrays["learner_ids"]),
        question_ids=tuple(str(x) for x in arrays["question_ids"]),
        concept_ids=tuple(str(x) for x in arrays["concept_ids"]),
        fold=arrays.get("fold"),
        _predict=jax.jit(functools.partial(probabilities, graphdef)),
    )


@dataclasses.dataclass(frozen=True)
class _Shapes:
    """The vocabulary sizes ``model_factory`` reads from a ``KTData``."""

    num_questions: int
    num_concepts: int
    has_questions: bool
