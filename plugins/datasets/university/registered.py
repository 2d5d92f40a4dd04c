"""The bundled demo data: real university courses, simulated learners (offline)."""

from __future__ import annotations

import dataclasses

from rectk import registry
from rectk.contracts import DatasetPlugin
from rectk.data.types import Dataset
from rectk.recipe import registered

from .loader import load_university_courses


@registered(registry.datasets, "university_courses")
@dataclasses.dataclass(frozen=True, kw_only=True)
class UniversityCourses(DatasetPlugin):
    """654 real CS courses (title, description, 861 prerequisite edges; CC BY-NC-SA 4.0)
    bundled in the package, with learner histories from the seeded learner simulator
    (docs/simulator.md)."""

    num_learners: int = 3000
    seed: int = 0
    min_courses: int = 6
    max_courses: int = 20

    def __post_init__(self):
        if self.num_learners < 1:
            raise ValueError("data.num_learners must be at least 1")
        if not 1 <= self.min_courses <= self.max_courses:
            raise ValueError("need 1 <= data.min_courses <= data.max_courses")

    def provides(self) -> frozenset[str]:
        return frozenset({"groups", "topics", "prerequisites"})

    def load(self) -> Dataset:
        return load_university_courses(
            num_learners=self.num_learners,
            seed=self.seed,
            min_courses=self.min_courses,
            max_courses=self.max_courses,
        )
