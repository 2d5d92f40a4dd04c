"""Knowledge-tracing files: pyKT's processed format and the DKVMN three-line format.

Both read into a ``rectk.data.kt.KTData`` (one row per answered question, learners in file
order, folds as the files give them). Every malformed input is a DataError naming the file,
the line (as an editor counts) and what was expected.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from rectk import registry
from rectk.contracts import DatasetPlugin
from rectk.data import readers
from rectk.data.kt import TEST_FOLD, KTData, build
from rectk.data.types import Dataset, Interactions
from rectk.errors import DataError
from rectk.recipe import registered

_INTS = re.compile(r"[0-9]+(?:,[0-9]+)*")
_BITS = re.compile(r"[01](?:,[01])*")
_FOLD = re.compile(r"-?[0-9]+")
_ID = re.compile(r"[0-9]+")


def _bad(where: str, what: str, k: int, part: str) -> DataError:
    hint = (
        " (-1 pads pyKT's *_sequences.csv files: read train_valid.csv and test.csv)"
        if part.strip() == "-1"
        else ""
    )
    return DataError(
        f"{where}: {what} entry {k} is {part!r}; expected a non-negative integer id{hint}"
    )


def _ints(text: str, where: str, what: str) -> list[int]:
    """Comma-separated non-negative integers, or a DataError naming the first bad entry."""
    text = text.strip()
    if not _INTS.fullmatch(text):
        for k, part in enumerate(text.split(","), 1):
            if not _ID.fullmatch(part.strip()):
                raise _bad(where, what, k, part)
    return [int(x) for x in text.split(",")]


def _id_lists(text: str, where: str, what: str) -> list[list[int]]:
    """Comma-separated entries of one or more ids joined by '_' (pyKT's multi-concept form)."""
    text = text.strip()
    if _INTS.fullmatch(text):
        return [[int(x)] for x in text.split(",")]
    out = []
    for k, part in enumerate(text.split(","), 1):
        ids = part.strip().split("_")
        if not all(_ID.fullmatch(i) for i in ids):
            raise _bad(where, what, k, part)
        out.append([int(i) for i in ids])
    return out


def _bits(text: str, where: str, what: str) -> list[int]:
    """0/1 values separated by commas, or a DataError naming the first other one."""
    text = text.strip()
    if not _BITS.fullmatch(text):
        for k, part in enumerate(text.split(","), 1):
            if part.strip() not in ("0", "1"):
                raise DataError(
                    f"{where}: {what} entry {k} is {part!r}; expected 0 (wrong) or 1 (correct)"
                )
    return [int(x) for x in text.split(",")]


def _count(where: str, what: str, n: int, other: str, m: int) -> None:
    if n != m:
        raise DataError(f"{where}: {n} {what} but {m} {other}; expected one per answer")


class _Rows:
    """Answers gathered learner by learner."""

    def __init__(self) -> None:
        self.lengths: list[int] = []
        self.questions: list[int] = []
        self.concepts: list[list[int]] = []
        self.responses: list[int] = []
        self.folds: list[int] = []
        self.ids: list[str] = []
        self.first_line: dict[str, str] = {}

    def add(
        self,
        uid: str,
        where: str,
        fold: int,
        qs: list[int] | None,
        cs: list[list[int]],
        rs: list[int],
    ) -> None:
        if uid in self.first_line:
            raise DataError(
                f"{where}: learner {uid!r} appears again (first at {self.first_line[uid]}); "
                "expected one row per learner"
            )
        self.first_line[uid] = where
        self.ids.append(uid)
        self.folds.append(fold)
        self.lengths.append(len(rs))
        if qs is not None:
            self.questions.extend(qs)
        self.concepts.extend(cs)
        self.responses.extend(rs)

    def build(self, source: str, has_questions: bool) -> KTData:
        width = max((len(c) for c in self.concepts), default=1)
        if width == 1:
            concepts = np.asarray(self.concepts, np.int64)
        else:
            concepts = np.full((len(self.concepts), width), -1, np.int64)
            for n, c in enumerate(self.concepts):
                concepts[n, : len(c)] = c
        return build(
            lengths=self.lengths,
            question=np.asarray(self.questions, np.int64) if has_questions else None,
            concepts=concepts,
            response=np.asarray(self.responses, np.int8),
            fold=self.folds,
            learner_ids=self.ids,
            source=source,
        )


# ---------------------------------------------------------------- pyKT's processed format

_PYKT_NEEDS = ("fold", "uid", "responses")


def _pykt_file(path: Path, rows: _Rows, test: bool) -> bool:
    """Reads one pyKT file into ``rows``; True if it has a ``questions`` column."""
    what = "pyKT test file" if test else "pyKT train_valid file"
    records = readers.csv_rows(path, what)
    first = next(records, None)
    if first is None:
        raise DataError(
            f"{path}, line 1: the file is empty (expected a header line such as "
            "fold,uid,concepts,responses)"
        )
    head_line, header = first
    names = [h.strip() for h in header]
    for name in set(names):
        if names.count(name) > 1:
            raise DataError(f"{path}, line {head_line}: column {name!r} appears twice")
    missing = [n for n in _PYKT_NEEDS if n not in names]
    if missing or not {"concepts", "questions"} & set(names):
        need = ", ".join(missing) or "concepts or questions"
        raise DataError(
            f"{path}, line {head_line}: no column {need} (columns: {', '.join(names)}); "
            "expected pyKT's train_valid.csv or test.csv header (fold,uid,concepts,responses)"
        )
    if "selectmasks" in names:
        raise DataError(
            f"{path}, line {head_line}: a selectmasks column, so this is one of pyKT's padded "
            "*_sequences.csv files; read train_valid.csv and test.csv instead"
        )
    col = {n: names.index(n) for n in names}
    has_q, has_c = "questions" in col, "concepts" in col
    seen = 0  # answers read so far in this file (pyKT's cidxs count them)
    count = 0
    for line, row in records:
        where = f"{path}, line {line}"
        if len(row) != len(names):
            raise DataError(
                f"{where}: {len(row)} fields, expected {len(names)} as the header names "
                f'({", ".join(names)}); quote the lists ("1,2,3")'
            )
        fold_text = row[col["fold"]].strip()
        if not _FOLD.fullmatch(fold_text):
            raise DataError(f"{where}: fold is {fold_text!r}; expected an integer")
        fold = int(fold_text)
        if test and fold != TEST_FOLD:
            raise DataError(f"{where}: fold {fold} in the test file; expected {TEST_FOLD}")
        if not test and fold < 0:
            raise DataError(
                f"{where}: fold {fold} in train_valid.csv; expected a cross-validation fold "
                "0, 1, ... (test learners belong in test.csv)"
            )
        uid = row[col["uid"]].strip()
        if not uid:
            raise DataError(f"{where}: uid is empty; expected a learner id")
        rs = _bits(row[col["responses"]], where, "responses")
        qs = _ints(row[col["questions"]], where, "questions") if has_q else None
        if has_c:
            cs = _id_lists(row[col["concepts"]], where, "concepts")
        else:
            cs = [[q] for q in qs or ()]
        _count(where, "concepts" if has_c else "questions", len(cs), "responses", len(rs))
        if qs is not None:
            _count(where, "questions", len(qs), "responses", len(rs))
        if has_c and not has_q and any(len(c) > 1 for c in cs):
            raise DataError(
                f"{where}: a concept list joined by '_' but no questions column; expected one "
                "concept per answer in a concept-only file"
            )
        if "cidxs" in col:
            cidx = _ints(row[col["cidxs"]], where, "cidxs")
            _count(where, "cidxs", len(cidx), "responses", len(rs))
            if cidx != list(range(seen, seen + len(rs))):
                raise DataError(
                    f"{where}: cidxs run {cidx[0]}..{cidx[-1]}; expected pyKT's running answer "
                    f"index {seen}..{seen + len(rs) - 1} (the file's rows out of order?)"
                )
        seen += len(rs)
        if "is_repeat" in col:
            rep = _bits(row[col["is_repeat"]], where, "is_repeat")
            _count(where, "is_repeat flags", len(rep), "responses", len(rs))
            qs, cs, rs = _collapse(where, qs, cs, rs, rep)
        rows.add(uid, where, fold, qs, cs, rs)
        count += 1
    if count == 0:
        raise DataError(
            f"{path}, line {head_line}: no learners below the header; expected one row per learner"
        )
    return has_q


def _collapse(where: str, qs, cs, rs, rep):
    """pyKT's expanded rows (one per concept of a question, ``is_repeat`` 1 after the first)
    merged back into one row per answered question."""
    out_q: list[int] = []
    out_c: list[list[int]] = []
    out_r: list[int] = []
    for k, flag in enumerate(rep):
        if flag:
            same = k > 0 and (qs is None or qs[k] == qs[k - 1]) and rs[k] == rs[k - 1]
            if not same:
                raise DataError(
                    f"{where}: is_repeat entry {k + 1} is 1 but the entry before is another "
                    "question or response; expected the repeat to follow its question"
                )
            out_c[-1] = out_c[-1] + cs[k]
            continue
        if qs is not None:
            out_q.append(qs[k])
        out_c.append(list(cs[k]))
        out_r.append(rs[k])
    return (out_q if qs is not None else None), out_c, out_r


def read_pykt(
    folder: str | Path, *, train_valid: str = "train_valid.csv", test: str = "test.csv"
) -> KTData:
    """A data set in pyKT's processed format: ``train_valid.csv`` (cross-validation folds
    0..K-1) and ``test.csv`` (fold -1), one row per learner with comma-separated lists.

    Columns read: ``fold``, ``uid``, ``responses`` and ``concepts`` and/or ``questions``;
    ``is_repeat`` (multi-concept questions expanded into rows) is merged back into one row per
    question; ``cidxs`` (test.csv) is checked to be pyKT's running answer index. Other columns
    (``timestamps``, ``usetimes``) are not read. Without ``questions``, the question is the
    concept, as in pyKT.
    """
    root = Path(folder).expanduser()
    rows = _Rows()
    has_q = _pykt_file(readers.check_file(root / train_valid, "pyKT train_valid file"), rows, False)
    test_path = readers.check_file(root / test, "pyKT test file")
    if _pykt_file(test_path, rows, True) != has_q:
        raise DataError(
            f"{test_path}, line 1: the header {'lacks' if has_q else 'has'} a questions column "
            f"that {train_valid} {'has' if has_q else 'lacks'}; expected the same columns in both"
        )
    return rows.build(str(root), has_q)


# ---------------------------------------------------------------- DKVMN's three-line format


def _dkvmn_learners(path: Path) -> Iterator[tuple[int, list[int], list[int]]]:
    """``(first line, skills, answers)`` per learner of a DKVMN file."""
    lines = [t.rstrip("\r\n") for t in readers.text_lines(path, "DKVMN file")]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(f"{path}, line 1: the file is empty; expected 3 lines per learner")
    if len(lines) % 3:
        start = len(lines) - len(lines) % 3 + 1
        raise DataError(
            f"{path}, line {start}: the file has {len(lines)} lines, not a multiple of 3; "
            "expected 3 lines per learner (length, skill ids, correctness), the learner "
            f"starting at line {start} has {len(lines) % 3}"
        )
    for i in range(0, len(lines), 3):
        head = lines[i].strip()
        if not _ID.fullmatch(head) or int(head) == 0:
            raise DataError(
                f"{path}, line {i + 1}: {head!r}; expected the learner's number of answers "
                "alone, a positive integer (3 lines per learner: length, skill ids, correctness)"
            )
        n = int(head)
        skills = _ints(_one_comma(lines[i + 1]), f"{path}, line {i + 2}", "skill ids")
        answers = _bits(_one_comma(lines[i + 2]), f"{path}, line {i + 3}", "correctness")
        _count(f"{path}, line {i + 2}", "skill ids", len(skills), f"answers (line {i + 1})", n)
        _count(f"{path}, line {i + 3}", "correctness values", len(answers), "skill ids", n)
        yield i + 1, skills, answers


def _one_comma(text: str) -> str:
    """The line without one trailing comma (DKVMN's own loader accepts one)."""
    text = text.strip()
    return text[:-1] if text.endswith(",") else text


def read_dkvmn(folder: str | Path, prefix: str | None = None) -> KTData:
    """A data set in DKVMN's format: ``{prefix}_valid{k}.csv`` (k = 1, 2, ...) and
    ``{prefix}_test.csv``, 3 lines per learner (number of answers; skill ids; 0/1 correctness).

    The files have no learner ids: a learner is named ``file:line`` (its first line). Learners
    of ``valid{k}`` get fold ``k - 1`` and test learners ``TEST_FOLD``; each ``train{k}`` file
    present must hold exactly the learners of the other valid files (as DKVMN's five splits of
    ``{prefix}_train.csv`` do), so ``KTData.split(k - 1)`` gives DKVMN's split k. The skill is
    the question (the files name skills only).
    """
    root = Path(folder).expanduser()
    if prefix is None:
        tests = sorted(root.glob("*_test.csv"))
        if len(tests) != 1:
            found = ", ".join(p.name for p in tests) or "none"
            raise DataError(
                f"{root}: expected one *_test.csv file to name the data set, found {found}; "
                "give the prefix"
            )
        prefix = tests[0].name[: -len("_test.csv")]
    valid: list[Path] = []
    while (root / f"{prefix}_valid{len(valid) + 1}.csv").is_file():
        valid.append(root / f"{prefix}_valid{len(valid) + 1}.csv")
    if not valid:
        raise DataError(f"{root / (prefix + '_valid1.csv')} not found: DKVMN's fold files")
    test = readers.check_file(root / f"{prefix}_test.csv", "DKVMN test file")
    rows = _Rows()
    folds: list[dict[tuple, list[str]]] = []
    for k, path in enumerate(valid):
        seen: dict[tuple, list[str]] = {}
        for line, skills, answers in _dkvmn_learners(path):
            where = f"{path}, line {line}"
            rows.add(f"{path.name}:{line}", where, k, None, [[s] for s in skills], answers)
            seen.setdefault((tuple(skills), tuple(answers)), []).append(where)
        folds.append(seen)
    for line, skills, answers in _dkvmn_learners(test):
        where = f"{test}, line {line}"
        rows.add(f"{test.name}:{line}", where, TEST_FOLD, None, [[s] for s in skills], answers)
    for k in range(len(valid)):
        train = root / f"{prefix}_train{k + 1}.csv"
        if train.is_file():
            _check_train(train, [f for j, f in enumerate(folds) if j != k], k)
    return rows.build(str(root / prefix), has_questions=False)


def _check_train(path: Path, others: list[dict[tuple, list[str]]], k: int) -> None:
    """A DataError unless ``path`` holds exactly the learners of ``others``, the valid files
    but k's (learners compared by their answers; the files name none)."""
    left: dict[tuple, list[str]] = {}
    for fold in others:
        for key, places in fold.items():
            left.setdefault(key, []).extend(places)
    for line, skills, answers in _dkvmn_learners(path):
        where = left.get((tuple(skills), tuple(answers)), [])
        if not where:
            raise DataError(
                f"{path}, line {line}: this learner is in no valid file but valid{k + 1}; "
                f"expected train{k + 1} to hold exactly the learners of the other valid files"
            )
        where.pop(0)
    missing = [w for places in left.values() for w in places]
    if missing:
        raise DataError(
            f"{missing[0]}: this learner is missing from {path.name} "
            f"({len(missing)} learner(s) of the other valid files are); expected "
            f"train{k + 1} to hold exactly the learners of the valid files but valid{k + 1}"
        )


# ---------------------------------------------------------------- the registered data sets


def answers_dataset(name: str, kt: KTData) -> Dataset:
    """A ``Dataset`` of ``kt``: (learner, question) interactions in answer order, each valued
    by its response (1 right, 0 wrong), with the answers themselves attached."""
    learner = kt.learner[kt.ptr[1] :]  # rows start with learner 1's (learner 0 owns none)
    position = np.arange(len(kt), dtype=np.float64) - np.repeat(kt.ptr[1:-1], kt.lengths[1:])
    inter = Interactions(
        user=learner,
        item=kt.question,
        time=position,
        value=kt.response.astype(np.float32),
        user_ids=kt.learner_ids,
        item_ids=kt.question_ids,
    )
    return Dataset(name=name, interactions=inter, source=kt.source, answers=kt)


@functools.lru_cache(maxsize=4)
def _cached(kind: str, path: str, prefix: str | None) -> KTData:
    """Parsed files, kept while they are in use (a run reads them once)."""
    return read_pykt(path) if kind == "pykt" else read_dkvmn(path, prefix)


@registered(registry.datasets, "pykt")
@dataclasses.dataclass(frozen=True, kw_only=True)
class PyKTFiles(DatasetPlugin):
    """Graded answers in pyKT's processed format (a folder with ``train_valid.csv``, folds
    0..K-1, and ``test.csv``), for knowledge tracing (``[task] type =
    "knowledge_tracing"``). Multi-concept questions expanded into rows (``is_repeat``) are
    merged back into one answer each."""

    path: str

    def load(self) -> Dataset:
        return answers_dataset("pykt", _cached("pykt", self.path, None))

    def provides(self) -> frozenset[str]:
        return frozenset({"answers"})


@registered(registry.datasets, "dkvmn")
@dataclasses.dataclass(frozen=True, kw_only=True)
class DKVMNFiles(DatasetPlugin):
    """Graded answers in DKVMN's three-line format (a folder with ``{prefix}_valid{k}.csv``
    and ``{prefix}_test.csv``; ``train{k}`` files, where present, are checked to hold the
    other folds), for knowledge tracing. ``prefix`` "" = the one ``*_test.csv`` present."""

    path: str
    prefix: str = ""

    def load(self) -> Dataset:
        return answers_dataset("dkvmn", _cached("dkvmn", self.path, self.prefix or None))

    def provides(self) -> frozenset[str]:
        return frozenset({"answers"})
