"""A seeded simulator of learners taking courses from a catalogue (numpy, no JAX).

No public data shows real learners taking the courses of a public catalogue, so rectk makes
histories with a documented generative story (``docs/simulator.md``): each learner has a home
university, topic interests and a level; at each step they choose, by a softmax, among the
courses not yet taken whose prerequisites they have, preferring their interests, the topics of
their last courses, courses at or just above their level, and popular courses.

The per-step choice distribution is public (:meth:`LearnerSimulator.choice_probabilities`, in
:mod:`.likelihood`), so later work can score learning paths under the same model that made the
data. The knobs are in :mod:`.simulator_config`, the course features in :mod:`.courses`.

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
from collections.abc import Sequence

import numpy as np

from rectk.data.types import Catalogue, Interactions
from rectk.errors import RecipeError

from . import likelihood
from .courses import course_group, course_levels, topic_memberships
from .simulator_config import SimulatorConfig

__all__ = ["LearnerSimulator", "LearnerState"]

_DAY = 86_400

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
      group_items: per group, the dense indices of its courses.
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
        topics_nt = topic_memberships(texts, config.num_topics, topic_rng)
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
        self.group_items = [np.flatnonzero(self.group_v == g) for g in range(len(self.groups))]

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

    def logits(self, state: LearnerState) -> np.ndarray:
        """The choice model's logits [B, V]: :meth:`utilities` over ``temperature``."""
        return self._coefficients(state, 1.0 / self.config.temperature) @ self._features_kv

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
        """Probability [B, V] that each learner takes each course next.

        See :func:`rectk_plugins.datasets.university.likelihood.choice_probabilities`.
        """
        return likelihood.choice_probabilities(self, state, taken)

    def path_log_probability(self, state: LearnerState, path: Sequence[int]) -> float:
        """Log-probability that one learner (B = 1) takes the courses of ``path`` in order.

        See :func:`rectk_plugins.datasets.university.likelihood.path_log_probability`.
        """
        return likelihood.path_log_probability(self, state, path)

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


def _scatter(state: LearnerState, rows: np.ndarray, part: LearnerState) -> LearnerState:
    """``state`` with the learners at ``rows`` replaced by ``part`` (arrays are copied)."""
    level_b, recent_bt = state.level_b.copy(), state.recent_bt.copy()
    level_b[rows], recent_bt[rows] = part.level_b, part.recent_bt
    return dataclasses.replace(state, level_b=level_b, recent_bt=recent_bt)
