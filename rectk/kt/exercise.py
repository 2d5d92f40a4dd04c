"""Exercise recommendation from a knowledge-tracing run: the next exercises a learner should
practise, at the right difficulty and in the concepts they are weakest in.

The run predicts the learner's success on every question after their answers
(``KTRun.success``); the ``target_difficulty`` reranker (``rectk_plugins.rerankers``) picks
the questions whose probability is closest to the target band, balanced against covering the
weakest concepts (docs/exercises.md).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from rectk.contracts import RerankContext
from rectk.kt.predict import KTRun
from rectk.rerank.chain import rerank

BAND = (0.7, 0.85)


class Exercises(NamedTuple):
    """Recommended exercises, best first (dense question ids ``1..Q``).

    Attributes:
      question: int32 ``[K]`` the questions.
      success: float ``[K]`` their predicted success probabilities.
      concept: int32 ``[K]`` their concepts (dense ``1..C``).
    """

    question: np.ndarray
    success: np.ndarray
    concept: np.ndarray


def concept_topics(concept_of: np.ndarray, num_concepts: int) -> np.ndarray:
    """float32 ``[Q + 1, C + 1]``: each question's concept one-hot (the padding question 0 and
    a question without a concept are rows of zeros)."""
    topics = np.zeros((len(concept_of), num_concepts + 1), np.float32)
    rows = np.flatnonzero(concept_of > 0)
    topics[rows, concept_of[rows]] = 1.0
    return topics


def select_exercises(
    success_q: np.ndarray,
    concept_of: np.ndarray,
    num_concepts: int,
    k: int,
    *,
    band: tuple[float, float] = BAND,
    coverage: float = 0.3,
    allowed_q: np.ndarray | None = None,
) -> np.ndarray:
    """The ``k`` questions the ``target_difficulty`` reranker picks, best first (dense ids).

    Args:
      success_q: ``[Q]`` predicted success of questions ``1..Q`` (NaN: unknown).
      concept_of: ``[Q + 1]`` each question's concept.
      num_concepts: C.
      k: how many (at most the number of allowed questions).
      band: the target band of success probabilities.
      coverage: the weight of covering the weakest concepts (0: the band alone).
      allowed_q: ``[Q]`` bool, the questions that may be picked (default all with a known
        success).

    Candidates are every question (so that one compiled reranker serves every call),
    scored and ordered by ``-|p - mid-band|``: ties inside the band go to the middle.
    """
    from rectk import registry

    success_q = np.asarray(success_q, np.float32)
    allowed = ~np.isnan(success_q) if allowed_q is None else allowed_q & ~np.isnan(success_q)
    if k > int(allowed.sum()):
        raise ValueError(f"k = {k} exceeds the {int(allowed.sum())} questions that may be picked")
    mid = 0.5 * (band[0] + band[1])
    scores = np.where(allowed, -np.abs(success_q - mid), -np.inf).astype(np.float32)
    order = np.argsort(-scores, kind="stable")  # the reranker breaks ties by position
    ids, scores = (order + 1).astype(np.int32), scores[order]
    ctx = RerankContext(
        history_bh=jnp.zeros((1, 1), jnp.int32),
        item_topics_vt=jnp.asarray(concept_topics(concept_of, num_concepts)),
        success_bv=jnp.asarray(np.concatenate([[np.nan], success_q])[None], jnp.float32),
    )
    make: Any = registry.rerankers.get("target_difficulty")  # as outside code would find it
    stage = make(low=band[0], high=band[1], coverage=coverage)
    out, _ = rerank([stage], jnp.asarray(ids[None]), jnp.asarray(scores[None]), ctx, k)
    return np.asarray(out[0], np.int32)


def recommend_exercises(
    run: KTRun,
    questions: np.ndarray,
    responses: np.ndarray,
    k: int = 5,
    *,
    band: tuple[float, float] = BAND,
    coverage: float = 0.3,
    exclude: np.ndarray | None = None,
) -> Exercises:
    """The ``k`` next exercises for a learner with answers ``(questions, responses)``.

    Args:
      run: a finished knowledge-tracing run (``rectk.kt.predict.load_kt_run``).
      questions, responses: the learner's answers so far, oldest first (dense ids, 0/1).
      k: how many exercises.
      band: the target band of predicted success (default 0.7 to 0.85).
      coverage: the weight of the concepts the learner is weakest in (0: the band alone).
      exclude: dense question ids not to recommend (e.g. the ones just practised).
    """
    success_q = run.success(questions, responses)
    allowed = np.ones(len(success_q), bool)
    if exclude is not None and len(exclude):
        allowed[np.asarray(exclude, np.int64) - 1] = False
    picked = select_exercises(
        success_q,
        run.concept_of,
        len(run.concept_ids),
        k,
        band=band,
        coverage=coverage,
        allowed_q=allowed,
    )
    return Exercises(question=picked, success=success_q[picked - 1], concept=run.concept_of[picked])
