"""Course-outcome prediction: OULAD's reader, the features at a cut-off, the model, the split."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from rectk import outcome as oc
from rectk.errors import DataError
from rectk.kt.metrics import auc
from rectk_plugins.datasets.oulad import OUTCOMES, read_oulad
from tests.conftest import shared

COURSES = "code_module,code_presentation,module_presentation_length\nAAA,2013J,200\nAAA,2014J,210\n"
ASSESSMENTS = (
    '"code_module","code_presentation","id_assessment","assessment_type","date","weight"\n'
    '"AAA","2013J","2","CMA","50","0"\n'
    '"AAA","2013J","1","TMA","20","40"\n'
    '"AAA","2013J","3","Exam","","100"\n'
    '"AAA","2014J","4","TMA","30","100"\n'
)
SUBMISSIONS = (
    "id_assessment,id_student,date_submitted,is_banked,score\n"
    "1,10,18,0,80\n"
    "2,10,60,0,\n"
    "1,11,25,1,?\n"
    "4,10,29,0,55.5\n"
)
INFO = (
    "code_module,code_presentation,id_student,gender,final_result\n"
    "AAA,2013J,10,F,Pass\n"
    "AAA,2013J,11,M,Withdrawn\n"
    "AAA,2014J,10,F,Distinction\n"
)


def write(folder, **files: str):
    texts = {
        "courses": COURSES,
        "assessments": ASSESSMENTS,
        "studentAssessment": SUBMISSIONS,
        "studentInfo": INFO,
    }
    texts.update(files)
    for name, text in texts.items():
        (folder / f"{name}.csv").write_text(text)
    return folder


def test_reader_orders_by_due_day_and_keeps_missing_scores_apart(tmp_path):
    d = read_oulad(write(tmp_path))
    assert d.num_enrolments == 3
    assert d.module.tolist() == ["AAA"] * 3
    assert d.presentation.tolist() == ["2013J", "2013J", "2014J"]
    assert [OUTCOMES[o] for o in d.outcome] == ["Pass", "Withdrawn", "Distinction"]
    assert d.passed.tolist() == [True, False, True]
    assert d.lengths.tolist() == [3, 3, 1]
    first = slice(0, 3)
    assert d.assessment[first].tolist() == [1, 2, 3]  # due days 20, 50, 200 (the exam: the end)
    assert d.due[first].tolist() == [20, 50, 200]
    assert d.submitted[first].tolist() == [True, True, False]
    assert d.score[0] == 80 and np.isnan(d.score[1]) and np.isnan(d.score[2])  # unscored, absent
    assert np.isnan(d.day[2]) and d.day[1] == 60
    assert d.banked[3] and np.isnan(d.score[3])  # "?" is a missing score
    assert d.score[6] == pytest.approx(55.5)
    assert d.enrolment_of.tolist() == [0, 0, 0, 1, 1, 1, 2]
    assert "2 submissions without a score" in d.notes[0]


@pytest.mark.parametrize(
    ("file", "text", "message"),
    [
        ("studentAssessment", SUBMISSIONS + "1,12,20,0,abc\n", "line 6, column 'score'"),
        ("studentAssessment", SUBMISSIONS + "1,12,20,0,101\n", "line 6, column 'score'"),
        ("studentAssessment", SUBMISSIONS + "1,12,x,0,1\n", "line 6, column 'date_submitted'"),
        ("studentAssessment", SUBMISSIONS + "1,12,20,0\n", "line 6: expected 5 columns"),
        ("studentAssessment", SUBMISSIONS + "9,10,20,0,1\n", "column 'id_assessment': 9 is not"),
        ("studentAssessment", SUBMISSIONS + "1,10,20,0,1\n", "line 6: student 10 submits 1 twice"),
        ("studentAssessment", SUBMISSIONS + "4,11,20,0,1\n", "line 6: student 11 submits"),
        ("studentInfo", INFO + "AAA,2014J,11,M,Merit\n", "line 5, column 'final_result'"),
        ("studentInfo", INFO + "BBB,2014J,11,M,Pass\n", "line 5: presentation ('BBB', '2014J')"),
        ("assessments", ASSESSMENTS + '"AAA","2014J","5","Quiz","9","1"\n', "'assessment_type'"),
        ("assessments", ASSESSMENTS + '"AAA","2014J","5","CMA","9","x"\n', "column 'weight'"),
        ("courses", "code_module,length\n", "no column 'code_presentation'"),
    ],
)
def test_malformed_rows_name_file_line_and_column(tmp_path, file, text, message):
    write(tmp_path, **{file: text})
    with pytest.raises(DataError) as err:
        read_oulad(tmp_path)
    assert f"{file}.csv" in str(err.value) and message in str(err.value), str(err.value)


def test_missing_folder_and_file(tmp_path):
    with pytest.raises(DataError, match="OULAD folder not found"):
        read_oulad(tmp_path / "nope")
    write(tmp_path)
    (tmp_path / "courses.csv").unlink()
    with pytest.raises(DataError, match=r"courses\.csv not found"):
        read_oulad(tmp_path)


def test_a_cutoff_shows_only_what_is_known_by_then(tmp_path):
    d = read_oulad(write(tmp_path))
    col = {name: i for i, name in enumerate(oc.FEATURES)}
    full = oc.sequences(d)
    assert full.mask_bl.sum(1).tolist() == [2, 2, 1]  # the exam left out
    assert oc.sequences(d, exams=True).mask_bl.sum(1).tolist() == [3, 3, 1]
    day55 = oc.sequences(d, cutoff=55)
    # Student 10 in 2013J: both seen; the CMA (due 50) is submitted only on day 60.
    assert day55.x_blf[0, :2, col["submitted"]].tolist() == [1, 0]
    assert day55.x_blf[0, :2, col["no_score"]].tolist() == [0, 1]
    assert day55.x_blf[0, 0, col["score"]] == pytest.approx(0.8)
    day25 = oc.sequences(d, cutoff=25)
    assert day25.mask_bl.sum(1).tolist() == [1, 1, 0]  # 2014J's TMA: due 30, submitted 29
    day29 = oc.sequences(d, cutoff=29)  # submitted before it is due: seen, with its score
    assert day29.mask_bl[2, 0] and day29.x_blf[2, 0, col["score"]] == pytest.approx(0.555)
    assert oc.sequences(d, cutoff=10).mask_bl.sum() == 0


def test_split_keeps_students_apart_and_tests_the_latest_presentation():
    rng = np.random.default_rng(0)

    class Data:
        presentation = rng.choice(np.array(["2013B", "2013J", "2014B", "2014J"]), 400)
        student = rng.integers(0, 150, 400)

    train, valid, test = oc.split_by_presentation(Data, seed=1)
    assert sorted(np.concatenate([train, valid, test]).tolist()) == list(range(400))
    assert set(Data.presentation[test]) == {"2014J"}
    assert not set(Data.student[train]) & set(Data.student[valid])
    again = oc.split_by_presentation(Data, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(again, (train, valid, test), strict=True))


def test_docstring_example():
    result = doctest.testmod(oc, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def synthetic(n: int, seed: int) -> oc.Sequences:
    """Pass exactly when the mean score of a learner's assessments is above one half."""
    rng = np.random.default_rng(seed)
    length = rng.integers(1, 7, n)
    mask = np.arange(6)[None] < length[:, None]
    x = np.zeros((n, 6, len(oc.FEATURES)), np.float32)
    score = rng.uniform(0, 1, (n, 6)).astype(np.float32) * mask
    x[..., 0] = score
    x[..., 3] = 0.2 * mask
    mean = score.sum(1) / length
    outcome = np.where(mean > 0.5, 2 + (mean > 0.7), (mean > 0.3).astype(int))
    return oc.Sequences(x, mask, outcome.astype(np.int32))


def test_model_learns_a_separable_task():
    train, valid, test = synthetic(1024, 0), synthetic(256, 1), synthetic(512, 2)
    cfg = oc.OutcomeConfig(dim=16, batch_size=128, max_epochs=5, patience=2, learning_rate=1e-2)
    trained = oc.fit(train, valid, cfg)
    assert trained.valid_loss[trained.best_epoch] == min(trained.valid_loss)
    pass_p, out_p = oc.predict(trained, test)
    assert pass_p.shape == (512,) and out_p.shape == (512, oc.NUM_OUTCOMES)
    assert np.allclose(out_p.sum(1), 1, atol=1e-5)
    m = oc.metrics(pass_p, out_p, test.outcome_b)
    assert m["auc_pass"] > 0.9, m
    assert m["auc_macro"] > 0.85, m


def test_training_is_seeded():
    train, valid = synthetic(256, 0), synthetic(64, 1)
    cfg = oc.OutcomeConfig(dim=8, batch_size=64, max_epochs=2)
    first = oc.fit(train, valid, cfg)
    compiled = oc._train_step._cache_size()
    again = oc.fit(train, valid, cfg)
    assert first.valid_loss == again.valid_loss
    assert oc._train_step._cache_size() == compiled  # a second fit does not recompile
    other = oc.fit(train, valid, oc.OutcomeConfig(dim=8, batch_size=64, max_epochs=2, seed=1))
    assert other.valid_loss != first.valid_loss


@pytest.mark.slow
def test_oulad_end_to_end():
    d = read_oulad(shared("oulad"))
    assert d.num_enrolments == 32593
    assert int(d.submitted.sum()) == 173912
    train, valid, test = oc.split_by_presentation(d)
    assert set(d.presentation[test]) == {"2014J"}
    assert not set(d.student[train]) & set(d.student[valid])
    seqs = oc.sequences(d, cutoff=100)
    cfg = oc.OutcomeConfig(max_epochs=6, patience=2)
    trained = oc.fit(seqs.take(train), seqs.take(valid), cfg)
    pass_p, out_p = oc.predict(trained, seqs.take(test))
    m = oc.metrics(pass_p, out_p, d.outcome[test])
    assert m["auc_pass"] > 0.85, m
    assert m["auc_macro"] > 0.75, m
    assert auc(pass_p, d.passed[test]) == m["auc_pass"]
