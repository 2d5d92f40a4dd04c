"""The Junyi Academy exercise table as a prerequisite graph (for planning exercise paths).

``junyi_Exercise_table.csv`` (starts with a byte-order mark) lists one exercise per row:
``name``, ``prerequisites`` (comma-separated exercise names, possibly empty), ``topic``,
``pretty_display_name``, ... An exercise is ready once every one of its prerequisites is done;
a topic names a concept (all of its exercises), so a goal may name either.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rectk.data.readers import check_file, csv_rows
from rectk.errors import DataError
from rectk.plan import PrerequisiteGraph

__all__ = ["read_junyi_exercises"]


def read_junyi_exercises(path: str | Path) -> PrerequisiteGraph:
    """The exercises of ``path`` (dense ids in file order, a repeated row kept once) with
    their prerequisites and topics (concepts). A prerequisite naming no exercise of the table
    is kept aside (``PrerequisiteGraph.missing``): goals that need it are unreachable."""
    p = check_file(path, "Junyi exercise table")
    rows = csv_rows(p, "Junyi exercise table")
    try:
        _, header = next(rows)
    except StopIteration:
        raise DataError(f"{p}: empty file; expected a header with name and prerequisites") from None
    need = ("name", "prerequisites", "topic", "pretty_display_name")
    absent = [c for c in need if c not in header]
    if absent:
        raise DataError(f"{p}: no column {', '.join(absent)} in the header {header}")
    col = {c: header.index(c) for c in need}
    names: list[str] = []
    titles: list[str] = []
    topics: list[str] = []
    wants: list[list[str]] = []
    for line, row in rows:
        if len(row) != len(header):
            raise DataError(f"{p}, line {line}: {len(row)} fields, expected {len(header)}")
        name = row[col["name"]].strip()
        if not name:
            raise DataError(f"{p}, line {line}: empty exercise name")
        if name in names:
            continue  # the table lists two exercises twice, with the same text
        names.append(name)
        titles.append(row[col["pretty_display_name"]].strip())
        topics.append(row[col["topic"]].strip())
        wants.append([w.strip() for w in row[col["prerequisites"]].split(",") if w.strip()])
    index = {n: i for i, n in enumerate(names, 1)}
    pairs = [(i, index[w]) for i, ws in enumerate(wants, 1) for w in ws if w in index]
    missing = {i: tuple(w for w in ws if w not in index) for i, ws in enumerate(wants, 1) if ws}
    concepts: dict[str, list[int]] = {}
    for i, t in enumerate(topics, 1):
        if t:
            concepts.setdefault(t, []).append(i)
    return PrerequisiteGraph.from_pairs(
        names,
        np.asarray(pairs, np.int64).reshape(-1, 2),
        titles=tuple(titles),
        concepts={t: tuple(ids) for t, ids in concepts.items() if t not in index},
        missing={i: m for i, m in missing.items() if m},
    )
