"""The learner simulator's configuration: every knob, its default, and its validation."""

from __future__ import annotations

import dataclasses

from rectk.errors import RecipeError

__all__ = ["SimulatorConfig"]


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
