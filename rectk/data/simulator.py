"""A seeded simulator of learners taking courses from a catalogue (numpy, no JAX).

No public data shows real learners taking the courses of a public catalogue, so rectk makes
histories with a documented generative story (``docs/simulator.md``): each learner has a home
university, topic interests and a level; at each step they choose, by a softmax, among the
courses not yet taken whose prerequisites they have, preferring their interests, the topics of
their last courses, courses at or just above their level, and popular courses.

The per-step choice distribution is public (:meth:`LearnerSimulator.choice_probabilities`), so
later work can score learning paths under the same model that made the data.

>>> from rectk.data.types import Catalogue
>>> cat = Catalogue(item_ids=("u_1-101", "u_1-201"), titles=("Intro", "Next"),
...                 descriptions=("", ""), prerequisites=np.array([[2, 1]], np.int32))
>>> cfg = SimulatorConfig(num_learners=2, min_courses=2, max_courses=2, num_topics=1,
...                       prerequisite_strictness=1.0)
>>> sim = LearnerSimulator(cat, cfg)
>>> sim.simulate().item.tolist()   # course 2 needs course 1
[1, 2, 1, 2]
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from rectk.data.types import Catalogue, Interactions
from rectk.errors import RecipeError

__all__ = [
    "LearnerSimulator",
    "LearnerState",
    "SimulatorConfig",
    "course_group",
    "course_levels",
    "parse_course_level",
]

_DAY = 86_400

# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class SimulatorConfig:
    """Every knob of the learner simulator; ``docs/simulator.md`` explains each one.

    Attributes:
      num_learners: learners to simulate.
      min_courses: fewest courses a learner takes (uniform in ``[min_courses, max_courses]``).
      max_courses: most courses a learner takes.
      num_topics: topics found in the course texts (NMF over TF-IDF).
      temperature: divides the utility before the softmax; higher is more random.
      interest_weight: weight of ``num_topics * interest . topic`` (1 on average).
      continuity_weight: weight of the cosine between a course's topics and the
        recency-weighted topics of the courses just taken.
      level_weight: weight of ``-|level - (current level + level_step)|``.
      popularity_weight: weight of the standardised popularity of a course.
      interest_concentration: Dirichlet concentration of each topic in a learner's interests
        (small: a few topics dominate).
      recency_decay: how much of the previous topic profile survives each course (0: only the
        last course counts).
      level_step: how far above their current level learners like to go.
      level_rate: how far the current level moves toward the level of each course taken.
      start_level_probs: probabilities of starting at level 1, 2, 3, ... (up to 5 numbers).
      popularity_noise: standard deviation of the random part of popularity (the rest is
        ``log(1 + number of courses that require it)``).
      prerequisite_strictness: probability that a step respects missing prerequisites; with
        probability ``1 - strictness`` the learner chooses among all untaken courses.
      other_group_prob: probability that a step chooses outside the home university.
      start_time: Unix time (seconds) of the earliest possible first course.
      start_spread_days: first courses are spread uniformly over this many days.
      step_days: least number of days between two courses of a learner.
      step_jitter_days: a uniform extra of up to this many days is added to each gap.
      seed: seeds every random choice (same config, same output, byte for byte).
    """

    num_learners: int = 3000
    min_courses: int = 6
    max_courses: int = 20
    num_topics: int = 14
    temperature: float = 1.0
    interest_weight: float = 1.0
    continuity_weight: float = 3.0
    level_weight: float = 1.0
    popularity_weight: float = 1.0
    interest_concentration: float = 0.3
    recency_decay: float = 0.3
    level_step: float = 0.5
    level_rate: float = 0.5
    start_level_probs: tuple[float, ...] = (0.6, 0.3, 0.1)
    popularity_noise: float = 0.5
    prerequisite_strictness: float = 0.9
    other_group_prob: float = 0.1
    start_time: int = 1_483_920_000  # 2017-01-09 00:00 UTC
    start_spread_days: int = 730
    step_days: float = 7.0
    step_jitter_days: float = 21.0
    seed: int = 0

    def __post_init__(self) -> None:
        def need(ok: bool, key: str, expected: str) -> None:
            if not ok:
                raise RecipeError(
                    f"simulator config: {key} = {getattr(self, key)!r}; expected {expected}"
                )

        need(self.num_learners >= 1, "num_learners", "an integer >= 1")
        need(self.min_courses >= 1, "min_courses", "an integer >= 1")
        need(self.max_courses >= self.min_courses, "max_courses", "an integer >= min_courses")
        need(self.num_topics >= 1, "num_topics", "an integer >= 1")
        need(self.temperature > 0, "temperature", "a number > 0")
        need(self.interest_concentration > 0, "interest_concentration", "a number > 0")
        need(0 <= self.recency_decay < 1, "recency_decay", "a number in [0, 1)")
        need(0 < self.level_rate <= 1, "level_rate", "a number in (0, 1]")
        need(
            1 <= len(self.start_level_probs) <= 5
            and min(self.start_level_probs) >= 0
            and sum(self.start_level_probs) > 0,
            "start_level_probs",
            "1 to 5 non-negative numbers (levels 1, 2, ...) with a positive sum",
        )
        need(self.popularity_noise >= 0, "popularity_noise", "a number >= 0")
        need(0 <= self.prerequisite_strictness <= 1, "prerequisite_strictness", "in [0, 1]")
        need(0 <= self.other_group_prob <= 1, "other_group_prob", "a number in [0, 1]")
        need(self.start_spread_days >= 0, "start_spread_days", "a number >= 0")
        need(self.step_days > 0, "step_days", "a number > 0")
        need(self.step_jitter_days >= 0, "step_jitter_days", "a number >= 0")


# ----------------------------------------------------------------------------------------------
# Course features: group, level, topics
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Learner state
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class LearnerState:
    """What drives a batch of B learners' next choice (B may be 1).

    Attributes:
      group_b: int [B], dense home group (index into ``LearnerSimulator.groups``).
      interest_bt: float [B, T], interests over topics (rows sum to 1).
      level_b: float [B], current level on the 1..5 scale.
      recent_bt: float [B, T], recency-weighted topics of the courses taken (zeros at first).
    """

    group_b: np.ndarray
    interest_bt: np.ndarray
    level_b: np.ndarray
    recent_bt: np.ndarray

    def __len__(self) -> int:
        return int(self.group_b.shape[0])

    def take(self, rows: np.ndarray) -> LearnerState:
        """The learners at ``rows`` (an index or boolean array)."""
        return LearnerState(
            group_b=self.group_b[rows],
            interest_bt=self.interest_bt[rows],
            level_b=self.level_b[rows],
            recent_bt=self.recent_bt[rows],
        )


# ----------------------------------------------------------------------------------------------
# Simulator
# ----------------------------------------------------------------------------------------------


class LearnerSimulator:
    """Simulates learners choosing courses one at a time from a :class:`Catalogue`.

    Attributes (all aligned with dense item indices, entry 0 is padding):
      groups: group names; ``group_v[i]`` indexes it.
      group_v: int [V], university of each course (-1 for padding).
      level_v: float [V], level 1..5 of each course.
      topic_vt: float [V, T], topic memberships (rows sum to 1).
      popularity_v: float [V], standardised popularity.
      num_prereq_v: int [V], number of prerequisites of each course.
    """

    def __init__(self, catalogue: Catalogue, config: SimulatorConfig):
        self.catalogue = catalogue
        self.config = config
        n = len(catalogue.item_ids)
        if n == 0:
            raise RecipeError("simulator: the catalogue has no courses")
        self.num_items = n
        seeds = np.random.SeedSequence(config.seed).spawn(5)
        self._topic_seed, self._pop_seed, self._profile_seed, self._choice_seed, self._time_seed = (
            seeds
        )

        # Groups and levels.
        names = [course_group(c) for c in catalogue.item_ids]
        self.groups: tuple[str, ...] = tuple(sorted(set(names)))
        gidx = {g: j for j, g in enumerate(self.groups)}
        self.group_v = np.array([-1] + [gidx[g] for g in names], np.int64)
        levels = course_levels(catalogue.item_ids).tolist()
        self.level_v = np.array([0, *levels], np.float64)

        # Topics from title and description (title counted twice).
        texts = [
            f"{t} {t} {d}" for t, d in zip(catalogue.titles, catalogue.descriptions, strict=True)
        ]
        topic_rng = np.random.default_rng(self._topic_seed)
        topics_nt = _nmf_topics(_tfidf(texts), config.num_topics, topic_rng)
        self.topic_vt = np.vstack([np.zeros((1, config.num_topics)), topics_nt])
        norm = np.linalg.norm(self.topic_vt, axis=1, keepdims=True)
        self._unit_topic_vt = self.topic_vt / np.where(norm > 0, norm, 1.0)

        # Prerequisites: for each number of prerequisites d, the courses [C_d] and their
        # prerequisites [C_d, d].
        pairs = np.asarray(catalogue.prerequisites, np.int64).reshape(-1, 2)
        if pairs.size and (pairs.min() < 1 or pairs.max() > n):
            raise RecipeError(f"simulator: prerequisite indices must lie in 1..{n}")
        pairs = np.unique(pairs[pairs[:, 0] != pairs[:, 1]], axis=0)  # sorted by course
        self.num_prereq_v = np.bincount(pairs[:, 0], minlength=n + 1).astype(np.int64)
        self._prereq_tables: list[tuple[np.ndarray, np.ndarray]] = []
        for d in sorted(set(self.num_prereq_v[self.num_prereq_v > 0].tolist())):
            courses_c = np.flatnonzero(self.num_prereq_v == d)
            table_cd = pairs[np.isin(pairs[:, 0], courses_c), 1].reshape(-1, d)
            self._prereq_tables.append((courses_c, table_cd))

        # Popularity: courses many others build on are taken more, plus noise.
        dependents_v = np.bincount(pairs[:, 1], minlength=n + 1)[1:].astype(np.float64)
        noise = np.random.default_rng(self._pop_seed).normal(size=n) * config.popularity_noise
        raw = np.log1p(dependents_v) + noise
        std = raw.std()
        self.popularity_v = np.concatenate([[0.0], (raw - raw.mean()) / (std if std > 0 else 1.0)])

        # Every utility term is linear in per-course features [K, V]: topics, unit topics,
        # one-hot level 1..5 and popularity, so utilities are one matrix product.
        self._level_grid = np.arange(1.0, 6.0)
        level_onehot_vl = self.level_v[:, None] == self._level_grid[None, :]
        self._features_kv = np.concatenate(
            [self.topic_vt, self._unit_topic_vt, level_onehot_vl, self.popularity_v[:, None]],
            axis=1,
        ).T.copy()
        self._group_items = [np.flatnonzero(self.group_v == g) for g in range(len(self.groups))]

    # ------------------------------------------------------------------------------------------
    # Learners and their state
    # ------------------------------------------------------------------------------------------

    def initial_states(self) -> tuple[LearnerState, np.ndarray]:
        """The ``num_learners`` learners :meth:`simulate` uses, before their first course.

        Returns:
          ``(state, num_courses_b)``: the batched initial state and how many courses each
          learner will take.
        """
        cfg = self.config
        rng = np.random.default_rng(self._profile_seed)
        b = cfg.num_learners
        size_g = np.bincount(self.group_v[1:], minlength=len(self.groups)).astype(np.float64)
        group_b = rng.choice(len(self.groups), size=b, p=size_g / size_g.sum())
        interest_bt = rng.dirichlet(np.full(cfg.num_topics, cfg.interest_concentration), size=b)
        probs = np.asarray(cfg.start_level_probs, np.float64)
        level_b = 1.0 + rng.choice(len(probs), size=b, p=probs / probs.sum())
        num_courses_b = rng.integers(cfg.min_courses, cfg.max_courses + 1, size=b)
        state = LearnerState(
            group_b=group_b.astype(np.int64),
            interest_bt=interest_bt,
            level_b=level_b,
            recent_bt=np.zeros((b, cfg.num_topics)),
        )
        return state, num_courses_b

    def initial_state(
        self, *, group: str, interest: np.ndarray | None = None, level: float = 1.0
    ) -> LearnerState:
        """One new learner (B = 1) of university ``group``; uniform interests by default."""
        if group not in self.groups:
            raise RecipeError(f"simulator: unknown group {group!r}; known: {list(self.groups)}")
        t = self.config.num_topics
        interest_t = np.full(t, 1.0 / t) if interest is None else np.asarray(interest, float)
        if interest_t.shape != (t,) or interest_t.min() < 0 or interest_t.sum() <= 0:
            raise RecipeError(f"simulator: interest must be {t} non-negative numbers")
        return LearnerState(
            group_b=np.array([self.groups.index(group)], np.int64),
            interest_bt=(interest_t / interest_t.sum())[None],
            level_b=np.array([float(level)]),
            recent_bt=np.zeros((1, t)),
        )

    def advance(self, state: LearnerState, item_b: np.ndarray) -> LearnerState:
        """The state after each learner takes course ``item_b`` (dense index, [B])."""
        item_b = np.asarray(item_b, np.int64).reshape(len(state))
        cfg = self.config
        level_b = state.level_b + cfg.level_rate * (self.level_v[item_b] - state.level_b)
        recent_bt = cfg.recency_decay * state.recent_bt + self._unit_topic_vt[item_b]
        return dataclasses.replace(state, level_b=level_b, recent_bt=recent_bt)

    # ------------------------------------------------------------------------------------------
    # The choice model
    # ------------------------------------------------------------------------------------------

    def utilities(self, state: LearnerState) -> np.ndarray:
        """Utility [B, V] of every course for every learner (before temperature and masks).

        ``interest_weight * T * interest . topic + continuity_weight * cos(recent, topic)
        - level_weight * |level - (current level + level_step)| + popularity_weight *
        popularity``.
        """
        return self._coefficients(state, 1.0) @ self._features_kv

    def _coefficients(self, state: LearnerState, scale: float) -> np.ndarray:
        """Per-learner coefficients [B, K] of the course features, times ``scale``."""
        cfg = self.config
        rnorm = np.linalg.norm(state.recent_bt, axis=1, keepdims=True)
        target_b = state.level_b + cfg.level_step
        return scale * np.concatenate(
            [
                (cfg.interest_weight * cfg.num_topics) * state.interest_bt,
                cfg.continuity_weight * state.recent_bt / np.where(rnorm > 0, rnorm, 1.0),
                -cfg.level_weight * np.abs(self._level_grid[None, :] - target_b[:, None]),
                np.full((len(state), 1), cfg.popularity_weight),
            ],
            axis=1,
        )

    def prerequisites_met(self, taken_bv: np.ndarray) -> np.ndarray:
        """bool [B, V]: all prerequisites of the course are in ``taken_bv`` (bool [B, V])."""
        met_bv = np.ones(taken_bv.shape, bool)
        for courses_c, table_cd in self._prereq_tables:
            met_bv[:, courses_c] = taken_bv[:, table_cd].all(axis=2)
        return met_bv

    def choice_probabilities(self, state: LearnerState, taken: np.ndarray) -> np.ndarray:
        """Probability that each learner takes each course next.

        The choice is a mixture of softmaxes of ``utilities / temperature`` over four candidate
        sets: {home university, other universities} x {prerequisites met, all untaken}, weighted
        ``(1 - other_group_prob, other_group_prob)`` x ``(strictness, 1 - strictness)``. An
        empty set passes its weight to the others; a learner with no untaken course gets zeros.

        Args:
          state: the learners' state (B learners).
          taken: bool [V] or [B, V] (``V = num_items + 1``), courses already taken; index 0 is
            padding and never chosen.

        Returns:
          float [B, V], or [V] when ``taken`` is 1-D and B = 1: rows sum to 1, or are all
          zero.
        """
        cfg = self.config
        taken = np.asarray(taken, bool)
        b = len(state)
        single = taken.ndim == 1 and b == 1
        if taken.ndim not in (1, 2) or taken.shape[-1] != self.num_items + 1:
            raise ValueError(
                f"taken has shape {taken.shape}; expected [{self.num_items + 1}] or "
                f"[{b}, {self.num_items + 1}] (num_items + 1, index 0 is padding)"
            )
        taken_bv = np.broadcast_to(np.atleast_2d(taken), (b, self.num_items + 1))
        open_bv = ~taken_bv
        open_bv[:, 0] = False
        met_bv = open_bv & self.prerequisites_met(taken_bv)
        home_bv = self.group_v[None, :] == state.group_b[:, None]
        g, s = cfg.other_group_prob, cfg.prerequisite_strictness
        # Sets: away & open, away & met, home & open, home & met; category = 2 * home + met.
        weight_4 = np.array([g * (1 - s), g * s, (1 - g) * (1 - s), (1 - g) * s])
        rows4_b = 4 * np.arange(b, dtype=np.intp)

        logits_bv = self._coefficients(state, 1.0 / cfg.temperature) @ self._features_kv
        np.copyto(logits_bv, -np.inf, where=~open_bv)
        top_b = logits_bv.max(axis=1)
        top_b[~np.isfinite(top_b)] = 0.0
        logits_bv -= top_b[:, None]
        e_bv = np.exp(logits_bv, out=logits_bv)  # zero where not open

        groups = [
            (np.flatnonzero(state.group_b == g), self._group_items[g])
            for g in np.unique(state.group_b)
        ]

        def split(x_bv: np.ndarray, total_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """Sums of each row over the away and the home courses."""
            home_b = np.zeros(b)
            for rows_r, cols_c in groups:
                home_b[rows_r] = x_bv[rows_r[:, None], cols_c[None, :]].sum(axis=1)
            return total_b - home_b, home_b

        open_away_b, open_home_b = split(open_bv, np.count_nonzero(open_bv, axis=1))
        met_away_b, met_home_b = split(met_bv, np.count_nonzero(met_bv, axis=1))
        e_away_b, e_home_b = split(e_bv, e_bv.sum(axis=1))
        e_met_bv = e_bv * met_bv
        em_away_b, em_home_b = split(e_met_bv, e_met_bv.sum(axis=1))
        count_b4 = np.stack([open_away_b, met_away_b, open_home_b, met_home_b], axis=1)
        total_b4 = np.stack([e_away_b, em_away_b, e_home_b, em_home_b], axis=1)
        nonempty_b4 = count_b4 > 0.5
        lost_b = (nonempty_b4 & (total_b4 < 1e-150)).any(axis=1)

        share_b4 = weight_4 * nonempty_b4
        share_b4 /= np.maximum(share_b4.sum(axis=1, keepdims=True), 1e-300)
        coef_b4 = share_b4 / np.where(total_b4 > 0, total_b4, 1.0)
        coef_b4[:, 1] += coef_b4[:, 0]  # a course with its prerequisites met is in both sets
        coef_b4[:, 3] += coef_b4[:, 2]
        # Flat index of (learner, category) with category = 2 * home + met.
        category_bv = home_bv.view(np.int8) * np.int8(2)
        category_bv += met_bv.view(np.int8)
        index_bv = rows4_b[:, None] + category_bv
        probs_bv = e_bv
        probs_bv *= np.take(coef_b4.ravel(), index_bv)
        if lost_b.any():  # a whole set (nearly) underflowed: redo those rows exactly
            lost = np.flatnonzero(lost_b)
            exact = self._coefficients(state.take(lost), 1.0 / cfg.temperature)
            sets = (~home_bv & open_bv, ~home_bv & met_bv, home_bv & open_bv, home_bv & met_bv)
            probs_bv[lost] = _mixture(exact @ self._features_kv, [m[lost] for m in sets], weight_4)
        return probs_bv[0] if single else probs_bv

    def path_log_probability(self, state: LearnerState, path: Sequence[int]) -> float:
        """Log-probability that one learner (B = 1) takes the courses of ``path`` in order."""
        taken_v = np.zeros(self.num_items + 1, bool)
        total = 0.0
        for item in path:
            p = float(self.choice_probabilities(state, taken_v)[int(item)])
            if p <= 0:
                return float("-inf")
            total += float(np.log(p))
            taken_v[int(item)] = True
            state = self.advance(state, np.array([item]))
        return total

    # ------------------------------------------------------------------------------------------
    # Simulation
    # ------------------------------------------------------------------------------------------

    def simulate(self) -> Interactions:
        """Simulate ``num_learners`` histories; same config, byte-identical result.

        Returns:
          :class:`Interactions` sorted by learner then time; users ``learner_0001``...,
          ``item_ids`` equal to the catalogue's; ``time`` in integer Unix seconds; no values.
          A learner whose candidate sets all empty stops early.
        """
        cfg = self.config
        state, num_courses_b = self.initial_states()
        b, v = len(state), self.num_items + 1
        choice_rng = np.random.default_rng(self._choice_seed)
        time_rng = np.random.default_rng(self._time_seed)
        start_b = cfg.start_time + time_rng.integers(0, cfg.start_spread_days * _DAY + 1, size=b)
        gaps_bs = np.round(
            (cfg.step_days + cfg.step_jitter_days * time_rng.random((b, cfg.max_courses))) * _DAY
        ).astype(np.int64)
        time_bs = start_b[:, None] + np.cumsum(gaps_bs, axis=1) - gaps_bs[:, :1]

        taken_bv = np.zeros((b, v), bool)
        item_bs = np.zeros((b, cfg.max_courses), np.int64)
        alive_b = np.ones(b, bool)
        for step in range(cfg.max_courses):
            rows = np.flatnonzero(alive_b & (num_courses_b > step))
            if rows.size == 0:
                break
            sub = state.take(rows)
            probs_rv = self.choice_probabilities(sub, taken_bv[rows])
            cum_rv = np.cumsum(probs_rv, axis=1)
            u_r = choice_rng.random(rows.size) * cum_rv[:, -1]
            pick_r = (cum_rv <= u_r[:, None]).sum(axis=1)
            last_r = v - 1 - np.argmax(probs_rv[:, ::-1] > 0, axis=1)
            pick_r = np.minimum(pick_r, last_r)
            ok_r = cum_rv[:, -1] > 0
            alive_b[rows[~ok_r]] = False
            rows, pick_r, sub = rows[ok_r], pick_r[ok_r], sub.take(ok_r)
            item_bs[rows, step] = pick_r
            taken_bv[rows, pick_r] = True
            moved = self.advance(sub, pick_r)
            state = _scatter(state, rows, moved)

        user_b, step_b = np.nonzero(item_bs)
        width = max(4, len(str(b)))
        return Interactions(
            user=(user_b + 1).astype(np.int32),
            item=item_bs[user_b, step_b].astype(np.int32),
            time=time_bs[user_b, step_b].astype(np.float64),
            value=None,
            user_ids=tuple(f"learner_{u + 1:0{width}d}" for u in range(b)),
            item_ids=tuple(self.catalogue.item_ids),
        )


def _mixture(logits_rv: np.ndarray, sets: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """Mixture of softmaxes of ``logits_rv`` over boolean masks ``sets`` (slow, exact)."""
    probs_rv = np.zeros(logits_rv.shape)
    weight_r = np.zeros(logits_rv.shape[0])
    for w, mask_rv in zip(weights, sets, strict=True):
        nonempty_r = mask_rv.any(axis=1)
        if w <= 0 or not nonempty_r.any():
            continue
        masked_rv = np.where(mask_rv, logits_rv, -np.inf)
        top_r = np.where(nonempty_r, masked_rv.max(axis=1), 0.0)
        e_rv = np.exp(masked_rv - top_r[:, None])
        total_r = e_rv.sum(axis=1)
        probs_rv += e_rv * (w * nonempty_r / np.where(total_r > 0, total_r, 1.0))[:, None]
        weight_r += w * nonempty_r
    return probs_rv / np.where(weight_r > 0, weight_r, 1.0)[:, None]


def _scatter(state: LearnerState, rows: np.ndarray, part: LearnerState) -> LearnerState:
    """``state`` with the learners at ``rows`` replaced by ``part`` (arrays are copied)."""
    level_b, recent_bt = state.level_b.copy(), state.recent_bt.copy()
    level_b[rows], recent_bt[rows] = part.level_b, part.recent_bt
    return dataclasses.replace(state, level_b=level_b, recent_bt=recent_bt)
