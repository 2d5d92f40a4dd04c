"""MOOCCube course enrolments (XuetangX; Yu et al., ACL 2020) as prepared by KGAN."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from rectk import registry
from rectk.contracts import DatasetPlugin
from rectk.data import readers
from rectk.data.types import Dataset, ItemAttributes
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
    for line_no, line in enumerate(readers.text_lines(p, "MOOCCube ratings file"), 1):
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
    here in either case. An enrolment listed twice is one enrolment: repeats are dropped before
    the order is drawn, with a note.
    """

    path: str
    order: Literal["random", "file"] = "random"
    seed: int = 0
    # KGAN's course knowledge graph (kg_final.txt): providers and topics for rerankers
    kg: str = ""

    def load(self) -> Dataset:
        users, courses = read_enrolments(self.path)
        pairs = dict.fromkeys(zip(users, courses, strict=True))  # first of each, file order
        notes: tuple[str, ...] = ()
        if len(pairs) < len(users):
            notes = (
                f"{self.path}: dropped {len(users) - len(pairs)} repeated enrolment(s) (the "
                "same learner and course; the file has no times, so a repeat is a duplicate)",
            )
            users, courses = [u for u, _ in pairs], [c for _, c in pairs]
        times = None
        if self.order == "random":
            times = np.random.default_rng(self.seed).permutation(len(users)).astype(np.float64)
        inter = readers.build_interactions(users, courses, times, None, source=self.path)
        attributes = read_course_graph(self.kg, inter.item_ids) if self.kg else None
        return Dataset(
            name="mooccube",
            interactions=inter,
            attributes=attributes,
            source=self.path,
            notes=notes,
        )

    def provides(self) -> frozenset[str]:
        return frozenset({"groups", "topics"}) if self.kg else frozenset()


# The relations of KGAN's course graph are numbered, not named. Every course has exactly one
# tail of relation 3 (70 values over 219 courses): we read it as the course's provider (its
# school). Relation 5 links courses to 1,094 concepts (16,821 triples): a course's topics.
PROVIDER_RELATION = "3"
CONCEPT_RELATION = "5"


def read_course_graph(path: str | Path, item_ids: Sequence[str]) -> ItemAttributes:
    """Providers and topic distributions of ``item_ids`` from KGAN's ``kg_final.txt``
    (``head<TAB>relation<TAB>tail``, heads are course ids): the provider is the tail of
    relation 3 (``"kg3:<tail>"``), the topics are uniform over the course's concepts
    (relation 5; zeros for a course without any)."""
    p = readers.check_file(path, "MOOCCube knowledge-graph file")
    provider: dict[str, str] = {}
    concepts: dict[str, list[str]] = {}
    with p.open(encoding="utf-8", errors="strict") as f:
        try:
            for line_no, line in enumerate(f, 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 3:
                    raise DataError(
                        f"{p}, line {line_no}: expected 'head<TAB>relation<TAB>tail', "
                        f"found {line.strip()[:80]!r}"
                    )
                head, rel, tail = parts
                if rel == PROVIDER_RELATION:
                    provider.setdefault(head, f"kg3:{tail}")
                elif rel == CONCEPT_RELATION:
                    concepts.setdefault(head, []).append(tail)
        except UnicodeDecodeError as err:
            raise DataError(f"{p}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    vocab = {c: j for j, c in enumerate(sorted({t for ts in concepts.values() for t in ts}))}
    topics = np.zeros((len(item_ids), max(len(vocab), 1)), np.float32)
    for i, course in enumerate(item_ids):
        tails = concepts.get(course, [])
        for t in tails:
            topics[i, vocab[t]] += 1.0 / len(tails)
    return ItemAttributes(groups=tuple(provider.get(c, "") for c in item_ids), topics=topics)
