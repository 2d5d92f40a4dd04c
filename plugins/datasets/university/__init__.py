"""The ``university_courses`` data set: real university courses, simulated learners.

Everything specific to it lives here, outside the core: the reader of the CPR-Recover catalogue
format (:mod:`.catalogue_io`), the seeded learner simulator (:mod:`.simulator_config`,
:mod:`.courses`, :mod:`.simulator`), the likelihood of choices and learning paths under the
simulator's model (:mod:`.likelihood`), the loader (:mod:`.loader`) and the recipe plugin
(:mod:`.registered`). The bundled catalogue is in ``data/`` (CC BY-NC-SA 4.0, see
``data/LICENSE.md``); ``docs/simulator.md`` tells the simulator's generative story.
"""

from .catalogue_io import PrerequisiteEdges, read_course_catalogue, read_prerequisites, split_title
from .courses import course_group, course_levels, parse_course_level
from .likelihood import choice_probabilities, path_log_probability
from .loader import load_university_courses
from .registered import UniversityCourses
from .simulator import LearnerSimulator, LearnerState
from .simulator_config import SimulatorConfig

__all__ = [
    "LearnerSimulator",
    "LearnerState",
    "PrerequisiteEdges",
    "SimulatorConfig",
    "UniversityCourses",
    "choice_probabilities",
    "course_group",
    "course_levels",
    "load_university_courses",
    "parse_course_level",
    "path_log_probability",
    "read_course_catalogue",
    "read_prerequisites",
    "split_title",
]
