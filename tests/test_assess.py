"""Learning-effect assessment: per-concept mastery of a learner, calibration on held-out
answers, and ``rectk assess``."""

import dataclasses
import io
import json
import zipfile

import numpy as np
import pytest

from rectk.cli import main
from rectk.data.kt import TEST_FOLD
from rectk.kt import assess
from rectk.kt.metrics import expected_calibration_error
from rectk.kt.predict import ANSWERS, load_kt_run
from rectk.kt.train import train_and_evaluate
from tests.test_kt_task import _recipe, write_pykt


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("assess")
    data = write_pykt(root / "data", learners=60, lengths=(5, 40))
    recipe = _recipe(root, data, "train.epochs=2", "task.maxlen=16")
    train_and_evaluate(recipe, progress=False, echo=lambda *a: None)
    return root / "runs" / "kt"


def test_mastery_rows_cover_every_concept_weakest_first(run_dir):
    run = load_kt_run(run_dir)
    q, r = run.learner("u0")
    rows = assess.concept_mastery(run, q, r)
    assert len(rows) == len(run.concept_ids)
    assert [x["mastery"] for x in rows] == sorted(x["mastery"] for x in rows)
    assert sum(x["answered"] for x in rows) == len(q)
    assert sum(x["right"] for x in rows) == int(r.sum())
    assert all(0 < x["mastery"] < 1 for x in rows)


def test_calibration_predicts_every_test_answer_but_the_first(run_dir):
    run = load_kt_run(run_dir)
    assert run.fold is not None  # answers.npz keeps the folds
    test = assess.test_learners(run)
    assert len(test) == 12 and (run.fold[test] == TEST_FOLD).all()  # every fifth of 60
    lengths = run.ptr[test + 1] - run.ptr[test]
    prob, label = assess.held_out_predictions(run, test, rows=8)  # several batches, windows
    assert len(prob) == int((lengths - 1).sum())
    assert ((prob > 0) & (prob < 1)).all()
    # the labels are the answers after each learner's first, in order
    expect = np.concatenate([run.response[run.ptr[u] + 1 : run.ptr[u + 1]] for u in test])
    assert (label == expect).all()
    # a prediction reads only the answers before it: changing a later answer changes nothing
    u = test[np.argmax(lengths)]
    lo, hi = int(run.ptr[u]), int(run.ptr[u + 1])
    first, _ = assess.held_out_predictions(run, [u])
    flipped = run.response.copy()
    flipped[hi - 1] = 1 - flipped[hi - 1]
    again, _ = assess.held_out_predictions(dataclasses.replace(run, response=flipped), [u])
    np.testing.assert_allclose(first, again, rtol=1e-5, atol=1e-6)
    assert hi - lo > run.maxlen  # the longest learner spans several windows

    result = assess.calibration(run, bins=5)
    assert result["answers"] == len(prob) and sum(result["count"]) == len(prob)
    assert result["ece"] == pytest.approx(expected_calibration_error(prob, label, 5))


def test_a_run_saved_without_folds_reads_them_from_its_data(run_dir, tmp_path):
    import shutil

    copy = tmp_path / "old"
    shutil.copytree(run_dir, copy)
    with np.load(copy / ANSWERS) as z:
        arrays = {k: z[k] for k in z.files if k != "fold"}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    (copy / ANSWERS).write_bytes(buf.getvalue())
    old, new = load_kt_run(copy), load_kt_run(run_dir)
    assert old.fold is None
    assert (assess.test_learners(old) == assess.test_learners(new)).all()


def test_assess_cli_prints_tables_and_writes_charts(run_dir, tmp_path, capsys):
    out = tmp_path / "charts"
    assert main(["assess", "--run", str(run_dir), "--user", "u3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "mastery per concept, weakest first" in text and "concept" in text
    png = out / "mastery_u3.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert (
        main(["assess", "--run", str(run_dir), "--calibration", "--json", "--out", str(out)]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    cal = report["calibration"]
    assert 0 <= cal["ece"] <= 1 and len(cal["count"]) == 10
    assert (out / "calibration.png").read_bytes()[:4] == b"\x89PNG"

    assert main(["assess", "--run", str(run_dir)]) == 2  # neither --user nor --calibration
    assert "needs --user" in capsys.readouterr().err
    assert main(["assess", "--run", str(run_dir), "--user", "nobody"]) == 2
    assert "unknown learner" in capsys.readouterr().err


def test_answers_archive_is_a_zip_with_folds(run_dir):
    with zipfile.ZipFile(run_dir / ANSWERS) as z:
        assert "fold.npy" in z.namelist()
