"""LectureBank (Li et al., AAAI 2019): lecture resources of NLP, ML, AI, DL and IR courses.

Not a registered data set: LectureBank has resources and their topics but no learners, so it
has no ``Interactions`` for a ``DatasetPlugin.load()`` to return. :func:`read_lecturebank` reads
the folder as published (``lecturebank.tsv``, ``lecturebank3.tsv``,
``LectureBank2/data/lecturebank20.tsv``, ``LectureBank1and2.tsv``, ``taxonomy.tsv``,
``208topics.csv``, ``prerequisite_annotation.csv``); ``rectk.resources`` builds a resource index
from it. The data is not bundled with rectk: pass the folder's path.

Resources are merged over the four resource files by URL (the first file in that order names
the resource, ``lb3:105``); a resource's topic is a ``taxonomy.tsv`` topic (``Topic_ID`` is the
taxonomy's ``true_id``), from the first file that labels it. The text of a resource is its
title: the files hold no other text about its content.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from rectk.data import readers
from rectk.errors import DataError

__all__ = ["RESOURCE_FILES", "LectureBank", "read_lecturebank"]

# (tag, path, header line?, number of columns, column of the topic id or -1)
RESOURCE_FILES: tuple[tuple[str, str, bool, int, int], ...] = (
    ("lb3", "lecturebank3.tsv", True, 8, 3),
    ("lb1", "lecturebank.tsv", False, 8, 3),
    ("lb2", "LectureBank2/data/lecturebank20.tsv", False, 8, 3),
    ("lb12", "LectureBank1and2.tsv", True, 7, -1),
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LectureBank:
    """LectureBank's resources, their taxonomy topics and the annotated prerequisites.

    Attributes:
      resource_ids: ``"<file tag>:<ID>"`` per resource (R of them).
      titles: the title of each resource.
      urls: the URL of each resource (the key the files are merged on).
      topic_r: int32 ``[R]``, index into ``topic_names`` of each resource's topic; -1 where
        unlabelled (no topic, or an id missing from ``taxonomy.tsv``).
      topic_ids: the taxonomy's ``true_id`` of each topic (T of them).
      topic_names: the name of each topic.
      topic_parent_t: int32 ``[T]``, index of each topic's parent topic; -1 for a root.
      concepts: the names of the 208 annotated concepts (``208topics.csv``), empty if absent.
      prerequisites: int32 ``[E, 2]`` pairs ``(prerequisite, concept)`` into ``concepts``.
      notes: what reading skipped, one line each.
    """

    resource_ids: tuple[str, ...]
    titles: tuple[str, ...]
    urls: tuple[str, ...]
    topic_r: np.ndarray
    topic_ids: tuple[str, ...]
    topic_names: tuple[str, ...]
    topic_parent_t: np.ndarray
    concepts: tuple[str, ...] = ()
    prerequisites: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros((0, 2), np.int32)
    )
    notes: tuple[str, ...] = ()

    @property
    def labelled(self) -> np.ndarray:
        """Indices of the resources that carry a topic."""
        return np.flatnonzero(self.topic_r >= 0)

    def topic_text(self, t: int) -> str:
        """A topic's name, with its parent's for context (``"Parsing; Syntax and Parsing"``)."""
        parent = int(self.topic_parent_t[t])
        name = self.topic_names[t]
        return name if parent < 0 or parent == t else f"{name}; {self.topic_names[parent]}"


def _rows(path: Path, what: str, sep: str, width: int, header: bool) -> Iterator[tuple[int, list]]:
    """``(line number, fields)`` of the non-blank lines, each with exactly ``width`` fields."""
    for n, line in enumerate(readers.text_lines(path, what), 1):
        if (header and n == 1) or not line.strip():
            continue
        fields = [f.strip() for f in line.rstrip("\r\n").split(sep)]
        if len(fields) != width:
            raise DataError(
                f"{path}, line {n}: expected {width} {'tab' if sep == chr(9) else 'comma'}-"
                f"separated fields ({what}), found {len(fields)}: {line.strip()[:80]!r}"
            )
        yield n, fields


def _int(text: str, path: Path, line: int, column: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DataError(f"{path}, line {line}: {column} {text!r} is not an integer") from None


def _taxonomy(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    what = "LectureBank taxonomy (id, topic_name, parent_topic, true_id)"
    local: list[int] = []
    parents: list[int] = []
    ids: list[str] = []
    names: list[str] = []
    for n, (lid, name, parent, true_id) in _rows(path, what, "\t", 4, header=True):
        local.append(_int(lid, path, n, "id"))
        parents.append(_int(parent, path, n, "parent_topic"))
        _int(true_id, path, n, "true_id")
        if true_id in ids:
            raise DataError(f"{path}, line {n}: true_id {true_id} is listed twice")
        ids.append(true_id)
        names.append(name)
    row = {lid: i for i, lid in enumerate(local)}
    parent_t = np.array([row.get(p, -1) for p in parents], np.int32)
    return ids, names, parent_t


def _concepts(folder: Path) -> tuple[tuple[str, ...], np.ndarray, list[str]]:
    topics, annot = folder / "208topics.csv", folder / "prerequisite_annotation.csv"
    if not topics.is_file():
        return (), np.zeros((0, 2), np.int32), ["208topics.csv absent: no prerequisites"]
    names: dict[int, str] = {}
    for n, line in enumerate(readers.text_lines(topics, "LectureBank concept list"), 1):
        if not line.strip():
            continue
        cid, sep, rest = line.partition(",")
        if not sep:
            raise DataError(f"{topics}, line {n}: expected 'ID,Topic,Wiki_Page_URL'")
        name, _, link = rest.rstrip("\r\n").rpartition(",")
        if not link.startswith(("http", "NULL")):  # a name holding a comma, no link
            name = rest.strip()
        name = name.removesuffix(",NULL")
        names[_int(cid.strip(), topics, n, "ID")] = name.strip()
    order = {cid: j for j, cid in enumerate(names)}
    pairs: list[tuple[int, int]] = []
    missing: set[int] = set()
    if annot.is_file():
        what = "LectureBank prerequisite annotation (source, target, 0/1)"
        for n, (src, tgt, flag) in _rows(annot, what, ",", 3, header=False):
            s, t = _int(src, annot, n, "source"), _int(tgt, annot, n, "target")
            if flag not in ("0", "1"):
                raise DataError(f"{annot}, line {n}: If_prerequisite {flag!r} is not 0 or 1")
            if s not in order or t not in order:
                missing.add(s if s not in order else t)
            elif flag == "1":
                pairs.append((order[s], order[t]))
    notes = []
    if missing:
        notes.append(
            f"{annot.name}: pairs naming concepts absent from 208topics.csv "
            f"({', '.join(map(str, sorted(missing)))}) skipped"
        )
    return tuple(names.values()), np.array(pairs, np.int32).reshape(-1, 2), notes


def read_lecturebank(folder: str | Path) -> LectureBank:
    """Reads a LectureBank folder (the GitHub repository's layout).

    Raises:
      DataError: the folder, ``taxonomy.tsv`` or every resource file is missing, or a row is
        malformed (the message names the file and line).
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DataError(f"LectureBank folder not found: {root.resolve()}")
    topic_ids, topic_names, parent_t = _taxonomy(
        readers.check_file(root / "taxonomy.tsv", "LectureBank taxonomy.tsv")
    )
    topic_of = {tid: t for t, tid in enumerate(topic_ids)}
    by_url: dict[str, int] = {}
    ids: list[str] = []
    titles: list[str] = []
    urls: list[str] = []
    topic: list[int] = []
    unknown: dict[str, int] = {}
    found = 0
    for tag, rel, header, width, col in RESOURCE_FILES:
        path = root / rel
        if not path.is_file():
            continue
        found += 1
        for n, fields in _rows(path, f"LectureBank resource file {rel}", "\t", width, header):
            rid, title, url = fields[0], fields[1], fields[2]
            if url.endswith("'"):  # lecturebank3.tsv's copy of lecturebank.tsv: a stray quote
                fields = [f.removesuffix("'") for f in fields]
                url = fields[2]
                if title.count("'") % 2:
                    title = title.removesuffix("'")
            if not title:
                raise DataError(f"{path}, line {n}: empty Title")
            if not url:  # nothing to merge on: the file's own id is its key
                url = f"{tag}:{rid}"
            t = -1
            if col >= 0 and fields[col]:
                _int(fields[col], path, n, "Topic_ID")
                t = topic_of.get(fields[col], -1)
                if t < 0:
                    unknown[fields[col]] = unknown.get(fields[col], 0) + 1
            i = by_url.get(url)
            if i is None:
                by_url[url] = len(ids)
                ids.append(f"{tag}:{rid}")
                titles.append(title)
                urls.append(url)
                topic.append(t)
            elif topic[i] < 0:
                topic[i] = t
    if not found:
        names = ", ".join(rel for _, rel, *_ in RESOURCE_FILES)
        raise DataError(f"{root}: no LectureBank resource file found (expected one of {names})")
    concepts, prereqs, notes = _concepts(root)
    if unknown:
        listed = ", ".join(f"{k} ({v} rows)" for k, v in sorted(unknown.items()))
        notes.append(f"topic ids missing from taxonomy.tsv, rows left unlabelled: {listed}")
    return LectureBank(
        resource_ids=tuple(ids),
        titles=tuple(titles),
        urls=tuple(urls),
        topic_r=np.array(topic, np.int32),
        topic_ids=tuple(topic_ids),
        topic_names=tuple(topic_names),
        topic_parent_t=parent_t,
        concepts=concepts,
        prerequisites=prereqs,
        notes=tuple(notes),
    )
