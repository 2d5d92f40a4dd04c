"""OULAD (Open University Learning Analytics Dataset, Kuzilek et al. 2017): course outcomes.

Not a registered data set: OULAD's question here is a learner's final result in a course, not
the next item of a history, so it has no ``Interactions`` for a ``DatasetPlugin.load()`` to
return. :func:`read_oulad` reads ``courses.csv``, ``assessments.csv``, ``studentAssessment.csv``
and ``studentInfo.csv`` as published; ``rectk.outcome`` predicts the result from them. The data
is not bundled with rectk: pass the folder's path.

One row per enrolment (student, module, presentation) in ``studentInfo.csv``; its assessment
sequence is every assessment of its module presentation, in order of the day it is due, each
with the student's submission where ``studentAssessment.csv`` has one. A score is missing
(NaN) for two reasons the container keeps apart: the assessment was not submitted
(``submitted`` False), or it was submitted without a score (an empty or ``?`` score field).
An exam without a date in ``assessments.csv`` is due on the presentation's last day, as the
data set's documentation says.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from rectk.data import readers
from rectk.errors import DataError

__all__ = ["ASSESSMENT_TYPES", "OUTCOMES", "Oulad", "read_oulad"]

ASSESSMENT_TYPES = ("TMA", "CMA", "Exam")
# Ordered worst to best: an outcome index >= 2 is a pass.
OUTCOMES = ("Withdrawn", "Fail", "Pass", "Distinction")
_MISSING_SCORE = ("", "?")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Oulad:
    """OULAD's enrolments (E of them), their final results and assessment sequences.

    Enrolment ``e``'s assessments are rows ``offsets[e]:offsets[e + 1]`` of the per-assessment
    arrays (A rows in all), ordered by due day (then assessment id).

    Attributes:
      module, presentation: str ``[E]``, the enrolment's ``code_module`` and
        ``code_presentation`` (``"2014J"``).
      student: int64 ``[E]``, ``id_student``.
      outcome: int8 ``[E]``, index into :data:`OUTCOMES` of ``final_result``.
      course_length: int32 ``[E]``, the presentation's length in days (``courses.csv``).
      offsets: int64 ``[E + 1]``.
      assessment: int64 ``[A]``, ``id_assessment``.
      kind: int8 ``[A]``, index into :data:`ASSESSMENT_TYPES`.
      weight: float32 ``[A]``, the assessment's weight in percent.
      due: int32 ``[A]``, the day it is due, counted from the presentation's start.
      submitted: bool ``[A]``, whether the student submitted it.
      day: float32 ``[A]``, the day it was submitted; NaN where not submitted.
      score: float32 ``[A]``, 0-100; NaN where not submitted or submitted without a score.
      banked: bool ``[A]``, a result carried over from an earlier presentation.
      notes: what reading noticed, one line each.
    """

    module: np.ndarray
    presentation: np.ndarray
    student: np.ndarray
    outcome: np.ndarray
    course_length: np.ndarray
    offsets: np.ndarray
    assessment: np.ndarray
    kind: np.ndarray
    weight: np.ndarray
    due: np.ndarray
    submitted: np.ndarray
    day: np.ndarray
    score: np.ndarray
    banked: np.ndarray
    notes: tuple[str, ...] = ()

    @property
    def num_enrolments(self) -> int:
        return len(self.student)

    @property
    def lengths(self) -> np.ndarray:
        """int64 ``[E]``: the number of assessments of each enrolment."""
        return np.diff(self.offsets)

    @property
    def passed(self) -> np.ndarray:
        """bool ``[E]``: Pass or Distinction (against Fail or Withdrawn)."""
        return self.outcome >= OUTCOMES.index("Pass")

    @property
    def enrolment_of(self) -> np.ndarray:
        """int64 ``[A]``: the enrolment each assessment row belongs to."""
        return np.repeat(np.arange(self.num_enrolments), self.lengths)


def _table(path: Path, what: str, columns: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    """``(line, {column: field})`` of each data row, every row as wide as the header."""
    rows = readers.csv_rows(readers.check_file(path, what), what)
    first = next(rows, None)
    if first is None:
        raise DataError(f"{path}: the file is empty (expected a header naming {columns})")
    line, header = first
    names = [h.strip() for h in header]
    missing = [c for c in columns if c not in names]
    if missing:
        raise DataError(
            f"{path}, line {line}: no column {missing[0]!r} (columns: {', '.join(names)})"
        )
    for n, row in rows:
        if len(row) != len(names):
            raise DataError(
                f"{path}, line {n}: expected {len(names)} columns as the header names "
                f"({', '.join(names)}), found {len(row)}: {row!r}"
            )
        yield n, {c: row[names.index(c)].strip() for c in columns}


def _int(row: dict, column: str, path: Path, line: int) -> int:
    try:
        return int(row[column])
    except ValueError:
        raise DataError(
            f"{path}, line {line}, column {column!r}: {row[column]!r} is not an integer"
        ) from None


def _float(row: dict, column: str, path: Path, line: int, low: float, high: float) -> float:
    text = row[column]
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:  # also NaN, inf and text
        raise DataError(
            f"{path}, line {line}, column {column!r}: {text!r} is not a number from {low:g} "
            f"to {high:g}"
        )
    return value


def _choice(row: dict, column: str, path: Path, line: int, allowed: tuple[str, ...]) -> int:
    if row[column] not in allowed:
        raise DataError(
            f"{path}, line {line}, column {column!r}: {row[column]!r} is not one of "
            f"{', '.join(allowed)}"
        )
    return allowed.index(row[column])


def _courses(root: Path) -> dict[tuple[str, str], int]:
    path = root / "courses.csv"
    cols = ("code_module", "code_presentation", "module_presentation_length")
    length: dict[tuple[str, str], int] = {}
    for n, row in _table(path, "OULAD courses.csv", cols):
        key = (row["code_module"], row["code_presentation"])
        if key in length:
            raise DataError(f"{path}, line {n}: presentation {key} is listed twice")
        length[key] = _int(row, "module_presentation_length", path, n)
    return length


def _assessments(root: Path, length: dict) -> dict[int, tuple]:
    """id -> (module, presentation, kind, weight, due)."""
    path = root / "assessments.csv"
    cols = ("code_module", "code_presentation", "id_assessment", "assessment_type", "date")
    out: dict[int, tuple] = {}
    for n, row in _table(path, "OULAD assessments.csv", (*cols, "weight")):
        key = (row["code_module"], row["code_presentation"])
        if key not in length:
            raise DataError(f"{path}, line {n}: presentation {key} is not in courses.csv")
        aid = _int(row, "id_assessment", path, n)
        if aid in out:
            raise DataError(f"{path}, line {n}, column 'id_assessment': {aid} is listed twice")
        kind = _choice(row, "assessment_type", path, n, ASSESSMENT_TYPES)
        due = length[key] if row["date"] == "" else _int(row, "date", path, n)
        weight = _float(row, "weight", path, n, 0.0, 100.0)
        out[aid] = (*key, kind, weight, due)
    return out


def _submissions(root: Path, assessments: dict) -> dict[tuple[int, int], tuple]:
    """(id_assessment, id_student) -> (day, score, banked, line)."""
    path = root / "studentAssessment.csv"
    cols = ("id_assessment", "id_student", "date_submitted", "is_banked", "score")
    out: dict[tuple[int, int], tuple] = {}
    for n, row in _table(path, "OULAD studentAssessment.csv", cols):
        aid = _int(row, "id_assessment", path, n)
        if aid not in assessments:
            raise DataError(
                f"{path}, line {n}, column 'id_assessment': {aid} is not in assessments.csv"
            )
        key = (aid, _int(row, "id_student", path, n))
        if key in out:
            raise DataError(f"{path}, line {n}: student {key[1]} submits {aid} twice")
        day = _int(row, "date_submitted", path, n)
        banked = _choice(row, "is_banked", path, n, ("0", "1"))
        score = (
            float("nan")
            if row["score"] in _MISSING_SCORE
            else _float(row, "score", path, n, 0.0, 100.0)
        )
        out[key] = (day, score, banked, n)
    return out


def read_oulad(folder: str | Path) -> Oulad:
    """Reads an OULAD folder (the four CSV files named above; the others are not needed).

    Raises:
      DataError: the folder or a file is missing, or a row is malformed, names an unknown
        presentation or assessment, or repeats one (the message names the file, line and
        column).
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DataError(f"OULAD folder not found: {root.resolve()}")
    length = _courses(root)
    assessments = _assessments(root, length)
    submissions = _submissions(root, assessments)
    schedule: dict[tuple[str, str], list[int]] = {key: [] for key in length}
    for aid, (mod, pres, *_) in sorted(assessments.items(), key=lambda kv: (kv[1][4], kv[0])):
        schedule[(mod, pres)].append(aid)

    path = root / "studentInfo.csv"
    cols = ("code_module", "code_presentation", "id_student", "final_result")
    enrolments: list[tuple[str, str, int, int]] = []
    seen: set[tuple[str, str, int]] = set()
    for n, row in _table(path, "OULAD studentInfo.csv", cols):
        key = (row["code_module"], row["code_presentation"])
        if key not in length:
            raise DataError(f"{path}, line {n}: presentation {key} is not in courses.csv")
        student = _int(row, "id_student", path, n)
        if (*key, student) in seen:
            raise DataError(f"{path}, line {n}: student {student} is enrolled in {key} twice")
        seen.add((*key, student))
        enrolments.append((*key, student, _choice(row, "final_result", path, n, OUTCOMES)))

    rows: list[tuple] = []
    offsets = [0]
    used = 0
    for mod, pres, student, _ in enrolments:
        for aid in schedule[(mod, pres)]:
            sub = submissions.get((aid, student))
            _, _, kind, weight, due = assessments[aid]
            if sub is None:
                rows.append((aid, kind, weight, due, False, np.nan, np.nan, False))
            else:
                used += 1
                rows.append((aid, kind, weight, due, True, sub[0], sub[1], bool(sub[2])))
        offsets.append(len(rows))
    if used != len(submissions):
        orphan = min(
            (line, aid, s)
            for (aid, s), (_, _, _, line) in submissions.items()
            if (*assessments[aid][:2], s) not in seen
        )
        raise DataError(
            f"{root / 'studentAssessment.csv'}, line {orphan[0]}: student {orphan[2]} submits "
            f"assessment {orphan[1]} of {assessments[orphan[1]][:2]}, a presentation "
            "studentInfo.csv does not enrol them in"
        )
    cols_a = list(zip(*rows, strict=True)) if rows else [()] * 8
    notes = []
    unscored = sum(1 for r in rows if r[4] and np.isnan(r[6]))
    if unscored:
        notes.append(f"studentAssessment.csv: {unscored} submissions without a score (NaN)")
    return Oulad(
        module=np.array([e[0] for e in enrolments], dtype=str),
        presentation=np.array([e[1] for e in enrolments], dtype=str),
        student=np.array([e[2] for e in enrolments], np.int64),
        outcome=np.array([e[3] for e in enrolments], np.int8),
        course_length=np.array([length[e[:2]] for e in enrolments], np.int32),
        offsets=np.array(offsets, np.int64),
        assessment=np.array(cols_a[0], np.int64),
        kind=np.array(cols_a[1], np.int8),
        weight=np.array(cols_a[2], np.float32),
        due=np.array(cols_a[3], np.int32),
        submitted=np.array(cols_a[4], bool),
        day=np.array(cols_a[5], np.float32),
        score=np.array(cols_a[6], np.float32),
        banked=np.array(cols_a[7], bool),
        notes=tuple(notes),
    )
