"""MOOCCube course enrolments (XuetangX; Yu et al., ACL 2020) as prepared by KGAN."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import numpy as np

from rectk import registry
from rectk.contracts import DatasetPlugin
from rectk.data import readers
from rectk.data.types import Dataset
from rectk.errors import DataError
from rectk.recipe import registered


def read_enrolments(path: str | Path) -> tuple[list[str], list[str]]:
    """(learner, course) pairs of the rows labelled 1, in file order.

    The file has ``user<TAB>course<TAB>label`` lines; label 0 rows are KGAN's sampled
    non-enrolments and are dropped.
    """
    p = readers.check_file(path, "MOOCCube ratings file")
    users: list[str] = []
    courses: list[str] = []
    with p.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3 or parts[2] not in ("0", "1"):
                raise DataError(
                    f"{p}, line {line_no}: expected 'user<TAB>course<TAB>label' with label 0 "
                    f"or 1, found {line.strip()!r}"
                )
            if parts[2] == "1":
                users.append(parts[0])
                courses.append(parts[1])
    return users, courses


@registered(registry.datasets, "mooccube")
@dataclasses.dataclass(frozen=True, kw_only=True)
class MOOCCube(DatasetPlugin):
    """MOOCCube enrolments: 7,157 learners, 215 courses, 32,086 enrolments (label-1 rows of
    KGAN's ``ratings_final.txt``; its label-0 rows are sampled negatives and are dropped).

    The file has no timestamps, and its order is not time (a learner's courses appear in no
    consistent order). So by default (``order = "random"``) each learner's enrolments are put
    in a random order drawn with ``seed`` and that order is the time: the ``leave_last_out``
    split then holds out one *random* course per learner for test and another for validation
    (seeded random leave-one-out), the protocol of untimed enrolment data. Sequence encoders
    see the history as an unordered set in random order; results measure set-based course
    recommendation, not next-course prediction. ``order = "file"`` takes file order as time
    instead (only for comparison with work that did so). ``temporal`` splits are meaningless
    here in either case.
    """

    path: str
    order: Literal["random", "file"] = "random"
    seed: int = 0

    def load(self) -> Dataset:
        users, courses = read_enrolments(self.path)
        times = None
        if self.order == "random":
            times = np.random.default_rng(self.seed).permutation(len(users)).astype(np.float64)
        inter = readers.build_interactions(users, courses, times, None, source=self.path)
        return Dataset(name="mooccube", interactions=inter, source=self.path)
