"""Knowledge-tracing data: the container, pyKT's cuts, the two file formats and their errors."""

import doctest
import re

import numpy as np
import pytest

from rectk.data import kt
from rectk.data.kt import TEST_FOLD, build, pykt_chunks
from rectk.errors import DataError
from rectk_plugins.datasets.kt_files import read_dkvmn, read_pykt
from tests.conftest import shared

HEADER = "fold,uid,concepts,responses\n"
TEST_HEADER = "fold,uid,concepts,responses,cidxs\n"


def _pykt_generate_sequences(lengths, min_seq_len=3, maxlen=200):
    """pyKT's ``generate_sequences`` loop (pykt/preprocess/split_datasets.py), transcribed:
    per chunk, (sequence, offset, length)."""
    out = []
    for i, lenrs in enumerate(lengths):
        rest, j = lenrs, 0
        while lenrs >= j + maxlen:
            rest = rest - maxlen
            out.append((i, j, maxlen))
            j += maxlen
        if rest < min_seq_len:
            continue
        out.append((i, j, rest))
    return out


def _chunk_list(lengths, **kw):
    return list(zip(*(a.tolist() for a in pykt_chunks(lengths, **kw)), strict=True))


# ---------------------------------------------------------------- pyKT's 200-cut


def test_chunks_follow_pykts_cut_by_hand():
    # 2: too short, dropped; 3: kept whole; 200: one chunk; 201, 202: the rest of 1 and 2 is
    # dropped; 203: rest of 3 kept; 400: two chunks, nothing left; 405: two chunks and 5.
    assert _chunk_list([2, 3, 200, 201, 202, 203, 400, 405]) == [
        (1, 0, 3),
        (2, 0, 200),
        (3, 0, 200),
        (4, 0, 200),
        (5, 0, 200),
        (5, 200, 3),
        (6, 0, 200),
        (6, 200, 200),
        (7, 0, 200),
        (7, 200, 200),
        (7, 400, 5),
    ]


def test_doctests():
    failures, tried = doctest.testmod(kt)
    assert tried and not failures


def test_chunks_match_pykts_loop():
    lengths = [*np.random.default_rng(0).integers(0, 700, size=500).tolist(), 0, 1, 199, 600]
    assert _chunk_list(lengths) == _pykt_generate_sequences(lengths)
    assert _chunk_list(lengths, maxlen=50, min_len=5) == _pykt_generate_sequences(lengths, 5, 50)


def _toy(lengths, folds):
    n = int(sum(lengths))
    return build(
        lengths=lengths,
        question=None,
        concepts=(np.arange(n) % 7).reshape(-1, 1),
        response=np.arange(n) % 2,
        fold=folds,
        learner_ids=[f"u{i}" for i in range(len(lengths))],
        source="toy",
    )


def test_targets_chunk_and_window_views():
    data = _toy([405, 2, 1], [0, 1, TEST_FOLD])
    chunks = data.targets([1, 2, 3], "chunks")
    # chunks of 200, 200, 5: every answer but a chunk's first, context from the chunk start
    assert len(chunks) == 199 + 199 + 4
    assert chunks.row[:2].tolist() == [1, 2] and set(chunks.start[:199].tolist()) == {0}
    assert 200 not in chunks.row.tolist() and chunks.start[199] == 200
    assert chunks.row[-1] == 404 and chunks.start[-1] == 400
    windows = data.targets([1, 2, 3], "windows")
    # every answer but a learner's first, from at most 199 answers before it
    assert len(windows) == 404 + 1
    at = dict(zip(windows.row.tolist(), windows.start.tolist(), strict=True))
    assert at[199] == 0 and at[200] == 1 and at[404] == 205 and at[406] == 405
    assert (windows.row - windows.start).max() == 199
    assert windows.learner[-1] == 2
    with pytest.raises(DataError, match="unknown KT target view"):
        data.targets([1], "rolling")


def test_split_is_pykts_fold_rule():
    data = _toy([3] * 6, [0, 1, 2, 0, TEST_FOLD, TEST_FOLD])
    s = data.split(0)
    assert s.train.tolist() == [2, 3] and s.valid.tolist() == [1, 4]
    assert s.test.tolist() == [5, 6] and data.folds == (0, 1, 2)
    assert data.split(2).train.tolist() == [1, 2, 4]
    with pytest.raises(DataError, match=r"no learners in fold 3 \(folds: 0, 1, 2\)"):
        data.split(3)


# ---------------------------------------------------------------- readers on small files


def _write(path, text):
    """``text`` as UTF-8, but the character \\xff as that lone byte (not UTF-8)."""
    path.write_bytes(text.encode().replace("\xff".encode(), b"\xff"))


def _pykt(tmp_path, train_valid, test=None):
    (tmp_path / "train_valid.csv").write_text(train_valid)
    (tmp_path / "test.csv").write_text(
        test if test is not None else TEST_HEADER + '-1,t1,"1,2,3","1,0,1","0,1,2"\n'
    )
    return tmp_path


def test_pykt_reads_lists_folds_and_dense_ids(tmp_path):
    data = read_pykt(_pykt(tmp_path, HEADER + '0,a,"30,10,30","1,0,1"\n1,b,"20,20","0,0"\n'))
    assert data.learner_ids == ("a", "b", "t1")
    assert data.fold.tolist() == [-2, 0, 1, TEST_FOLD]
    # dense ids follow the raw integers, ascending; the question is the concept
    assert data.concept_ids == ("1", "2", "3", "10", "20", "30")
    assert data.concepts[:, 0].tolist() == [6, 4, 6, 5, 5, 1, 2, 3]
    assert not data.has_questions and (data.question == data.concepts[:, 0]).all()
    assert data.response.tolist() == [1, 0, 1, 0, 0, 1, 0, 1]
    assert data.lengths.tolist() == [0, 3, 2, 3]


def test_pykt_multi_concept_questions_are_one_row(tmp_path):
    # pyKT expands a question with several concepts into rows, is_repeat 1 after the first;
    # they merge back, so an answer is one target and never in its own context.
    head = "fold,uid,questions,concepts,responses,is_repeat\n"
    data = read_pykt(
        _pykt(
            tmp_path,
            head + '0,a,"5,5,6,7","1,2,3,1_3","1,1,0,1","0,1,0,0"\n',
            head.replace("is_repeat", "is_repeat,cidxs") + '-1,t,"6,6","3,1","0,0","0,1","0,1"\n',
        )
    )
    assert data.has_questions and data.question_ids == ("5", "6", "7")
    assert data.question.tolist() == [1, 2, 3, 2]
    assert data.concepts.tolist() == [[1, 2], [3, 0], [1, 3], [3, 1]]
    assert data.response.tolist() == [1, 0, 1, 0] and data.lengths.tolist() == [0, 3, 1]


# (file, content, expected message) ; the content replaces one file of a good data set
PYKT_BAD = [
    ("train_valid.csv", "", r"train_valid\.csv, line 1: the file is empty"),
    ("train_valid.csv", "\n\n", r"train_valid\.csv, line 1: the file is empty"),
    ("train_valid.csv", HEADER, r"train_valid\.csv, line 1: no learners below the header"),
    ("train_valid.csv", "fold,uid,responses\n", r"line 1: no column concepts or questions"),
    ("train_valid.csv", "uid,concepts,responses\n", r"line 1: no column fold"),
    (
        "train_valid.csv",
        HEADER + '0,a,"1,2,3","1,0"\n',
        r"train_valid\.csv, line 2: 3 concepts but 2 responses",
    ),
    (
        "train_valid.csv",
        HEADER + '0,a,"1,2","1,0"\n0,b,"1,2","1,2"\n',
        r"train_valid\.csv, line 3: responses entry 2 is '2'; expected 0 \(wrong\) or 1",
    ),
    (
        "train_valid.csv",
        HEADER + '0,a,"1,x","1,0"\n',
        r"line 2: concepts entry 2 is 'x'; expected a non-negative integer id",
    ),
    (
        "train_valid.csv",
        HEADER + '0,a,"1,-1","1,-1"\n',
        r"line 2: responses entry 2 is '-1'",
    ),
    (
        "train_valid.csv",
        HEADER + '0,a,"1,-1","1,0"\n',
        r"line 2: concepts entry 2 is '-1'.*\*_sequences\.csv",
    ),
    ("train_valid.csv", HEADER + 'x,a,"1","1"\n', r"line 2: fold is 'x'; expected an integer"),
    ("train_valid.csv", HEADER + '-1,a,"1","1"\n', r"line 2: fold -1 in train_valid\.csv"),
    ("train_valid.csv", HEADER + '0,a,"1,2","1,0",9\n', r"line 2: 5 fields, expected 4"),
    ("train_valid.csv", HEADER + '0,,"1","1"\n', r"line 2: uid is empty"),
    (
        "train_valid.csv",
        HEADER + '0,a,"1","1"\n1,a,"2","0"\n',
        r"line 3: learner 'a' appears again \(first at .*line 2\)",
    ),
    (
        "train_valid.csv",
        HEADER + '0,a,"1","1"\n0,b,"1\xff","1"\n',
        r"train_valid\.csv, line 3, column \d+: bytes .* are not valid UTF-8",
    ),
    (
        "train_valid.csv",
        HEADER.replace("responses", "responses,selectmasks") + '0,a,"1","1","1"\n',
        r"line 1: a selectmasks column",
    ),
    (
        "train_valid.csv",
        HEADER + '0,a,"1_2","1"\n',
        r"line 2: a concept list joined by '_' but no questions column",
    ),
    (
        "train_valid.csv",
        "fold,uid,questions,concepts,responses,is_repeat\n" + '0,a,"5,6","1,2","1,1","0,1"\n',
        r"line 2: is_repeat entry 2 is 1 but the entry before is another question",
    ),
    ("test.csv", TEST_HEADER + '0,t,"1","1","0"\n', r"test\.csv, line 2: fold 0 in the test"),
    (
        "test.csv",
        TEST_HEADER + '-1,t,"1,2","1,1","0,1"\n-1,s,"1","1","5"\n',
        r"test\.csv, line 3: cidxs run 5\.\.5; expected pyKT's running answer index 2\.\.2",
    ),
    ("test.csv", TEST_HEADER + '-1,t,"1,2","1,1","0"\n', r"line 2: 1 cidxs but 2 responses"),
    (
        "test.csv",
        'fold,uid,questions,responses\n-1,t,"1","1"\n',
        r"test\.csv, line 1: the header has a questions column that train_valid\.csv lacks",
    ),
]


@pytest.mark.parametrize(("name", "text", "message"), PYKT_BAD)
def test_bad_pykt_files_name_file_and_line(tmp_path, name, text, message):
    _pykt(tmp_path, HEADER + '0,a,"1,2","1,0"\n')
    _write(tmp_path / name, text)
    with pytest.raises(DataError, match=message) as err:
        read_pykt(tmp_path)
    assert str(tmp_path / name) in str(err.value)


def _dkvmn(tmp_path, **files):
    good = {
        "valid1": "2\n1,2\n1,0\n3\n3,3,1\n0,0,1\n",
        "valid2": "1\n2\n1\n",
        "test": "2\n5,1\n1,1\n",
        "train1": "1\n2\n1\n",
        "train2": "2\n1,2\n1,0\n3\n3,3,1\n0,0,1\n",
    }
    good.update(files)
    for name, text in good.items():
        _write(tmp_path / f"toy_{name}.csv", text)
    return tmp_path


def test_dkvmn_reads_three_lines_per_learner_and_the_fixed_splits(tmp_path):
    data = read_dkvmn(_dkvmn(tmp_path, test="2\n5,1,\n1,1,\n"))  # a trailing comma is fine
    assert data.learner_ids == (
        "toy_valid1.csv:1",
        "toy_valid1.csv:4",
        "toy_valid2.csv:1",
        "toy_test.csv:1",
    )
    assert data.fold.tolist() == [-2, 0, 0, 1, TEST_FOLD]
    assert data.concept_ids == ("1", "2", "3", "5")
    assert data.concepts[:, 0].tolist() == [1, 2, 3, 3, 1, 2, 4, 1]
    assert data.split(1).train.tolist() == [1, 2] and data.split(1).valid.tolist() == [3]


DKVMN_BAD = [
    ("valid2", "", r"toy_valid2\.csv, line 1: the file is empty"),
    ("valid2", "1\n2\n1\n2\n1,2\n", r"toy_valid2\.csv, line 4: the file has 5 lines, not a mult"),
    ("valid2", "7,1\n2\n1\n", r"toy_valid2\.csv, line 1: '7,1'; expected the learner's number"),
    ("valid2", "0\n2\n1\n", r"toy_valid2\.csv, line 1: '0'; expected .* a positive integer"),
    ("valid2", "2\n2\n1\n", r"toy_valid2\.csv, line 2: 1 skill ids but 2 answers \(line 1\)"),
    ("valid2", "2\n2,2\n1\n", r"toy_valid2\.csv, line 3: 1 correctness values but 2 skill"),
    ("valid2", "2\n2,2\n1,2\n", r"toy_valid2\.csv, line 3: correctness entry 2 is '2'"),
    ("valid2", "2\n2,a\n1,1\n", r"toy_valid2\.csv, line 2: skill ids entry 2 is 'a'"),
    ("valid2", "2\n2,2.0\n1,1\n", r"toy_valid2\.csv, line 2: skill ids entry 2 is '2\.0'"),
    ("test", "1\n2\n1\n1\n\xff\n1\n", r"toy_test\.csv, line 5, column 1: bytes .* not valid UTF-8"),
    ("train1", "1\n3\n1\n", r"toy_train1\.csv, line 1: this learner is in no valid file but val"),
    ("train2", "2\n1,2\n1,0\n", r"toy_valid1\.csv, line 4: this learner is missing from toy_trai"),
]


@pytest.mark.parametrize(("name", "text", "message"), DKVMN_BAD)
def test_bad_dkvmn_files_name_file_and_line(tmp_path, name, text, message):
    with pytest.raises(DataError, match=message):
        read_dkvmn(_dkvmn(tmp_path, **{name: text}))


def test_dkvmn_needs_its_files(tmp_path):
    (tmp_path / "toy_test.csv").write_text("1\n2\n1\n")
    with pytest.raises(DataError, match=r"toy_valid1\.csv not found"):
        read_dkvmn(tmp_path)
    (tmp_path / "other_test.csv").write_text("1\n2\n1\n")
    with pytest.raises(DataError, match=r"expected one \*_test\.csv file"):
        read_dkvmn(tmp_path)


# ---------------------------------------------------------------- the real files


@pytest.fixture(scope="module")
def assist2015():
    return read_pykt(shared("assist2015-pykt"))


@pytest.fixture(scope="module")
def assist2009():
    return read_dkvmn(shared("assist2009"), "assist2009_updated")


def _counts(data, fold):
    learners = data.learners(fold)
    rows = np.concatenate([np.arange(data.ptr[u], data.ptr[u + 1]) for u in learners])
    return len(learners), len(rows), len(np.unique(data.concepts[rows]))


def test_assist2015_counts(assist2015):
    d = assist2015
    assert (d.num_learners, len(d), d.num_concepts) == (19093, 682797, 100)
    assert not d.has_questions and d.concepts.shape == (682797, 1)
    per_fold = [_counts(d, f) for f in (0, 1, 2, 3, 4, TEST_FOLD)]
    assert per_fold == [
        (3055, 105831, 100),
        (3055, 106663, 100),
        (3055, 107443, 100),
        (3055, 112027, 100),
        (3055, 112375, 100),
        (3818, 138458, 100),
    ]
    s = d.split(0)
    assert (len(s.train), len(s.valid), len(s.test)) == (12220, 3055, 3818)
    # pyKT's cut of the test learners, and the answers it predicts
    test = d.chunks(s.test)
    assert (len(test), int(test.length.sum())) == (3866, 138458)
    assert len(d.targets(s.test)) == 134592 and len(d.targets(s.test, "windows")) == 134640
    assert len(d.chunks(s.train)) == 12344 and len(d.chunks(s.valid)) == 3082
    pykt = _pykt_generate_sequences(d.lengths[s.test].tolist())
    assert _chunk_list(d.lengths[s.test]) == pykt


def test_assist2009_counts(assist2009):
    d = assist2009
    assert (d.num_learners, len(d), d.num_concepts) == (4151, 325637, 110)
    per_fold = [_counts(d, f) for f in (0, 1, 2, 3, 4, TEST_FOLD)]
    assert per_fold == [
        (630, 47534, 102),
        (566, 46307, 102),
        (548, 34797, 106),
        (587, 47652, 108),
        (590, 47928, 106),
        (1230, 101419, 109),
    ]
    assert [len(d.split(k).train) for k in range(5)] == [2291, 2355, 2373, 2334, 2331]
    assert re.fullmatch(r"assist2009_updated_valid1\.csv:1", d.learner_ids[0])
