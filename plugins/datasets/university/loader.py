"""University computer-science courses with simulated learners.

The catalogue (654 courses of 11 U.S. universities, 861 prerequisite edges) is bundled with
rectk: CPR-Recover data of Liang et al., EAAI 2017, under CC BY-NC-SA 4.0 (see
``data/LICENSE.md``). No public record of learners taking these courses exists, so the
interactions come from :class:`~rectk_plugins.datasets.university.simulator.LearnerSimulator`
(see ``docs/simulator.md``).
"""

from __future__ import annotations

import importlib.resources

from rectk.data.types import Dataset, ItemAttributes

from .catalogue_io import read_course_catalogue
from .courses import course_group
from .simulator import LearnerSimulator
from .simulator_config import SimulatorConfig

__all__ = ["load_university_courses"]

_PACKAGE = "rectk_plugins.datasets.university"
_FOLDER = "data"


def load_university_courses(
    *, num_learners: int = 3000, seed: int = 0, min_courses: int = 6, max_courses: int = 20
) -> Dataset:
    """The bundled course catalogue with ``num_learners`` simulated learner histories.

    Args:
      num_learners: learners to simulate (users ``learner_0001``, ...).
      seed: seeds the simulation; the same arguments give byte-identical interactions.
      min_courses: fewest courses a learner takes.
      max_courses: most courses a learner takes.

    Returns:
      ``Dataset(name="university_courses", ...)`` whose interactions use the catalogue's
      item order (dense item ``i`` is row ``i`` of ``cs_courses.csv``) and whose catalogue holds
      titles, descriptions and prerequisite pairs.

    Raises:
      RecipeError: an argument is out of range (for example ``min_courses > max_courses``).
    """
    config = SimulatorConfig(
        num_learners=num_learners, seed=seed, min_courses=min_courses, max_courses=max_courses
    )
    folder = importlib.resources.files(_PACKAGE).joinpath(_FOLDER)
    with (
        importlib.resources.as_file(folder.joinpath("cs_courses.csv")) as courses,
        importlib.resources.as_file(folder.joinpath("cs_edges.csv")) as edges,
    ):
        catalogue = read_course_catalogue(courses, edges)
        source = f"{courses} + {edges.name} (CC BY-NC-SA 4.0, Liang et al. 2017)"
    simulator = LearnerSimulator(catalogue, config)
    interactions = simulator.simulate()
    # Providers are the universities; topics, the simulator's own: NMF over the TF-IDF of the
    # course texts (docs/simulator.md).
    attributes = ItemAttributes(
        groups=tuple(course_group(c) for c in catalogue.item_ids),
        topics=simulator.topic_vt[1:].astype("float32"),
    )
    return Dataset(
        name="university_courses",
        interactions=interactions,
        catalogue=catalogue,
        attributes=attributes,
        source=f"{source}; learners simulated by rectk_plugins.datasets.university (seed={seed})",
    )
