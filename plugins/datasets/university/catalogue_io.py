"""Read a course catalogue and its prerequisite graph from CSV files (numpy, no JAX).

The format is that of the CPR-Recover data (Liang et al., EAAI 2017):

* courses file, one course a row, no header: ``course_id,"Title. Description"``; the title is
  the text up to the first sentence break (". ");
* edges file, one edge a row, no header: ``course,prerequisite`` (the second course is a
  prerequisite of the first).

Dense item index ``i`` (1-based) is the row order of the courses file.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from rectk.data import readers
from rectk.data.types import Catalogue
from rectk.errors import DataError

__all__ = [
    "PrerequisiteEdges",
    "read_course_catalogue",
    "read_prerequisites",
    "split_title",
]

_log = logging.getLogger(__name__)

# Words that end with a period without ending the sentence; a ". " right after one of these is
# not taken as the end of the title.
_ABBREVIATIONS = frozenset(
    {"approx", "cf", "dept", "dr", "e.g", "eg", "etc", "i.e", "ie", "mr", "mrs", "ms", "no"}
    | {"prof", "st", "vol", "vs"}
)
_SENTENCE_BREAK = re.compile(r"\.\s")


_SHOWN = 5  # unknown-course rows quoted (with their lines) in a note


class PrerequisiteEdges(NamedTuple):
    """Prerequisite pairs read from an edges file.

    Attributes:
      pairs: int32 [E, 2] dense ``(course, prerequisite)`` pairs, in file order.
      unknown: rows skipped because they name a course missing from the catalogue.
      dropped: rows skipped because they repeat an earlier edge or make a course its own
        prerequisite.
      unknown_rows: the first few skipped rows as ``(line, unknown course ids)``.
    """

    pairs: np.ndarray
    unknown: int
    dropped: int
    unknown_rows: tuple[tuple[int, tuple[str, ...]], ...] = ()

    def notes(self, edges_file: str | Path, catalogue: str | Path) -> tuple[str, ...]:
        """What reading skipped, one line each (empty when nothing was)."""
        out = []
        if self.unknown:
            shown = "; ".join(
                f"line {line}: {', '.join(map(repr, ids))}" for line, ids in self.unknown_rows
            )
            more = ", ..." if self.unknown > len(self.unknown_rows) else ""
            out.append(
                f"{edges_file}: skipped {self.unknown} edge(s) naming courses not in "
                f"{catalogue} ({shown}{more})"
            )
        if self.dropped:
            out.append(f"{edges_file}: dropped {self.dropped} repeated or self edge(s)")
        return tuple(out)


def split_title(text: str) -> tuple[str, str]:
    """Split ``"Title. Description"`` into ``(title, description)``.

    The title ends at the first period followed by white space, unless the word before the
    period is a common abbreviation ("e.g.", "vs."). A period inside a word ("Hap.py") or a
    number ("6.046") does not end it. Text without a sentence break is all title. White space
    runs (including non-breaking spaces) become single spaces.

    >>> split_title("Algorithms. Design and analysis.")
    ('Algorithms', 'Design and analysis.')
    >>> split_title("Hap.py Coder: Python. Learn Python.")
    ('Hap.py Coder: Python', 'Learn Python.')
    >>> split_title("Senior Thesis.")
    ('Senior Thesis', '')
    """
    text = " ".join(text.split())
    for match in _SENTENCE_BREAK.finditer(text):
        head = text[: match.start()]
        last_word = head.rsplit(" ", 1)[-1].lower()
        if not head or last_word in _ABBREVIATIONS:
            continue
        return head, text[match.end() :].strip()
    return text.removesuffix(".").strip(), ""


def _rows(path: Path, what: str) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line number, fields)`` for every non-blank CSV row; every read problem (missing
    file, bytes that are not UTF-8, broken quoting) is a DataError naming the file and line."""
    return readers.csv_rows(path, f"{what} file")


def read_prerequisites(edges_csv: str | Path, item_ids: Sequence[str]) -> PrerequisiteEdges:
    """Read ``course,prerequisite`` rows into dense pairs over ``item_ids``.

    Rows naming a course that is not in ``item_ids`` are skipped and counted (the first few
    kept with their lines), as are repeated edges and self-loops. A file none of whose rows
    names two known courses is refused: its ids do not match the catalogue's.

    Args:
      edges_csv: path of the edges file.
      item_ids: raw course ids; dense index ``i`` is ``item_ids[i - 1]``.

    Raises:
      DataError: the file cannot be read, a row does not have two non-empty fields, or every
        row names an unknown course.
    """
    path = Path(edges_csv)
    index = {raw: i + 1 for i, raw in enumerate(item_ids)}
    pairs: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    unknown = dropped = rows = 0
    unknown_rows: list[tuple[int, tuple[str, ...]]] = []
    for line, fields in _rows(path, "prerequisite edges"):
        rows += 1
        fields = [f.strip() for f in fields]
        if len(fields) != 2 or not all(fields):
            raise DataError(
                f"{path}, line {line}: expected two non-empty fields 'course,prerequisite', "
                f"got {len(fields)} field(s): {','.join(fields)[:80]!r}"
            )
        course, prereq = index.get(fields[0]), index.get(fields[1])
        if course is None or prereq is None:
            unknown += 1
            if len(unknown_rows) < _SHOWN:
                unknown_rows.append((line, tuple(f for f in fields if f not in index)))
            continue
        if course == prereq or (course, prereq) in seen:
            dropped += 1
            continue
        seen.add((course, prereq))
        pairs.append((course, prereq))
    if rows and unknown == rows:
        line, ids = unknown_rows[0]
        raise DataError(
            f"{path}, line {line}: none of the {rows} edge(s) names two known courses "
            f"(here {', '.join(map(repr, ids))}); the ids must be the catalogue's, e.g. "
            f"{', '.join(map(repr, list(item_ids)[:3]))}"
        )
    arr = np.asarray(pairs, dtype=np.int32).reshape(-1, 2)
    return PrerequisiteEdges(
        pairs=arr, unknown=unknown, dropped=dropped, unknown_rows=tuple(unknown_rows)
    )


def read_course_catalogue(
    courses_csv: str | Path, edges_csv: str | Path | None = None
) -> Catalogue:
    """Read a course catalogue and, optionally, its prerequisite edges.

    Args:
      courses_csv: rows ``course_id,"Title. Description"`` (no header). The row order gives
        the dense item index (first row is item 1).
      edges_csv: optional rows ``course,prerequisite`` (no header). Rows naming unknown
        courses, repeated edges and self-loops are skipped; their number (and the first
        unknown rows, with lines) is logged as a warning (use :func:`read_prerequisites` to get
        the counts).

    Returns:
      A :class:`~rectk.data.types.Catalogue`; ``prerequisites`` holds dense
      ``(course, prerequisite)`` pairs.

    Raises:
      DataError: a file cannot be read; a row does not have exactly two fields; a course id is
        empty or repeated. The message names the file and line.
    """
    path = Path(courses_csv)
    ids: list[str] = []
    titles: list[str] = []
    descriptions: list[str] = []
    first_line: dict[str, int] = {}
    for line, fields in _rows(path, "courses"):
        if len(fields) != 2:
            raise DataError(
                f"{path}, line {line}: expected two fields 'course_id,\"Title. Description\"', "
                f"got {len(fields)} (quote the text if it contains commas)"
            )
        raw = fields[0].strip()
        if not raw:
            raise DataError(f"{path}, line {line}: empty course id; expected 'course_id,text'")
        if raw in first_line:
            raise DataError(
                f"{path}, line {line}: course id {raw!r} repeats the one on line "
                f"{first_line[raw]}; expected each course once"
            )
        first_line[raw] = line
        title, description = split_title(fields[1])
        ids.append(raw)
        titles.append(title)
        descriptions.append(description)
    if not ids:
        raise DataError(f"{path}: no courses found; expected rows 'course_id,\"Title. Text\"'")

    prerequisites = np.zeros((0, 2), np.int32)
    if edges_csv is not None:
        edges = read_prerequisites(edges_csv, ids)
        prerequisites = edges.pairs
        for note in edges.notes(edges_csv, path):
            _log.warning("%s", note)
    return Catalogue(
        item_ids=tuple(ids),
        titles=tuple(titles),
        descriptions=tuple(descriptions),
        prerequisites=prerequisites,
    )
