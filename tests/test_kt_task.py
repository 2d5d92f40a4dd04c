"""The knowledge-tracing task end to end: a recipe trains a tracer through the shared loop on
pyKT-format files, tests it under pyKT's protocol, resumes exactly, and a finished run predicts
success and mastery from its directory alone."""

import json
import math

import numpy as np
import pytest

from rectk import recipe as recipe_lib
from rectk.errors import RecipeError, RectkError
from rectk.kt import batches as kb
from rectk.kt.metrics import auc, expected_calibration_error
from rectk.kt.predict import load_kt_run
from rectk.kt.train import chunk_set, train_and_evaluate, window_set
from rectk.predict import load_run
from rectk_plugins.datasets.kt_files import read_pykt


def write_pykt(folder, *, learners=120, concepts=6, seed=0, lengths=(5, 60), questions=False):
    """Synthetic pyKT files with a learnable pattern: each learner has an ability, each
    concept a difficulty; P(right) = sigmoid(ability - difficulty + 0.15 * practice).
    ``questions``: a questions column too, three question ids per concept."""
    rng = np.random.default_rng(seed)
    difficulty = np.linspace(-1.5, 1.5, concepts)
    folder.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[str]] = {"train": [], "test": []}
    seen = 0  # pyKT's cidxs: a running answer index over the test file
    for u in range(learners):
        n = int(rng.integers(*lengths))
        ability = rng.normal()
        cs = rng.integers(0, concepts, n)
        practice = np.zeros(concepts)
        rs = []
        for c in cs:
            p = 1 / (1 + math.exp(-(ability - difficulty[c] + 0.15 * practice[c])))
            rs.append(int(rng.random() < p))
            practice[c] += 1
        fold = -1 if u % 5 == 4 else u % 5
        seqs = [cs + 10, rs]
        if questions:
            seqs.insert(0, 100 + 3 * cs + rng.integers(0, 3, n))
        if fold == -1:
            seqs.append(range(seen, seen + n))
            seen += n
        line = ",".join([str(fold), f"u{u}"] + ['"' + ",".join(map(str, s)) + '"' for s in seqs])
        rows["test" if fold == -1 else "train"].append(line)
    q_col = "questions," if questions else ""
    (folder / "train_valid.csv").write_text(
        f"fold,uid,{q_col}concepts,responses\n" + "\n".join(rows["train"]) + "\n"
    )
    (folder / "test.csv").write_text(
        f"fold,uid,{q_col}concepts,responses,cidxs\n" + "\n".join(rows["test"]) + "\n"
    )
    return folder


def _recipe(tmp_path, data, *extra, tracer="dkt"):
    text = f"""
name = "kt"
run_dir = "{tmp_path / "runs"}"
[task]
type = "knowledge_tracing"
maxlen = 32
[data]
type = "pykt"
path = "{data}"
[model]
dim = 16
[model.tracer]
type = "{tracer}"
[train]
batch_size = 16
epochs = 3
lr = 1e-2
warmup_steps = 0
log_every = 5
patience = 0
group_by_length = true
[eval]
batch_size = 16
"""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "kt.toml"
    path.write_text(text)
    return recipe_lib.load(path, list(extra))


@pytest.fixture(scope="module")
def kt_data(tmp_path_factory):
    return write_pykt(tmp_path_factory.mktemp("kt") / "data")


def test_auc_and_ece_by_hand():
    assert auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5  # a tie counts one half
    assert math.isnan(auc(np.array([0.2, 0.3]), np.array([1, 1])))
    assert expected_calibration_error(np.array([0.2, 0.2, 0.9, 0.9]), np.array([0, 1, 1, 1])) == (
        pytest.approx(0.2)
    )


def test_window_view_predicts_every_answer_but_the_first_from_199_before(kt_data):
    kt = read_pykt(kt_data)
    test = kt.learners(-1)
    windows = window_set(kt, test, 8, 3)
    long = test[kt.lengths[test] >= 3]
    assert len(windows) == int((kt.lengths[long] - 1).sum())
    # a later window is read at its last answer only, from at most maxlen - 1 before it
    arrays = windows.arrays
    last_only = arrays["weight"].sum(1) == 1
    assert (arrays["mask"][last_only].sum(1) <= 8).all()
    chunks = chunk_set(kt, test, 8, 3)
    assert len(chunks) == sum(int(n) - 1 for n in kt.chunks(test, 8, 3).length)


def test_eval_batches_cut_to_the_longest_row_and_cover_every_row(kt_data):
    kt = read_pykt(kt_data)
    arrays = chunk_set(kt, kt.learners(0), 32, 3).arrays
    seen = []
    for rows, batch in kb.eval_batches(arrays, 7):
        assert batch["mask"].shape[0] == 7
        assert batch["mask"].shape[1] in (8, 16, 32)
        assert batch["mask"][: len(rows)].sum() == arrays["mask"][rows].sum()
        seen.extend(rows.tolist())
    assert sorted(seen) == list(range(arrays["mask"].shape[0]))


def test_wide_eval_batches_hold_at_most_max_tokens_answers(kt_data):
    kt = read_pykt(kt_data)
    arrays = chunk_set(kt, kt.learners(0, 1, 2), 32, 3).arrays
    seen = []
    for rows, batch in kb.eval_batches(arrays, 16, max_tokens=128, multiple=2):
        rows_b, width = batch["mask"].shape
        assert rows_b * width <= 128 and rows_b % 2 == 0
        assert len(rows) <= rows_b
        seen.extend(rows.tolist())
    assert sorted(seen) == list(range(arrays["mask"].shape[0]))


def test_a_recipe_trains_tests_and_predicts(tmp_path, kt_data):
    recipe = _recipe(tmp_path, kt_data)
    summary = train_and_evaluate(recipe, progress=False, echo=lambda *a: None)
    test = summary["test"]["model"]
    assert set(test) >= {"auc", "accuracy", "ece", "window_auc", "window_accuracy"}
    assert test["auc"] > 0.6  # the synthetic pattern is learnable: ability and difficulty
    assert summary["valid"]["auc"] > 0.6
    run = tmp_path / "runs" / "kt"
    assert json.loads((run / "results.json").read_text())["test"]["model"]["auc"] == test["auc"]

    loaded = load_kt_run(run)
    q, r = loaded.learner("u0")
    p = loaded.success(q, r)
    assert p.shape == (len(loaded.question_ids),) and ((p > 0) & (p < 1)).all()
    # the easiest concept (raw id 10) is predicted easier than the hardest (raw id 15)
    easy, hard = loaded.questions(["10", "15"])
    assert p[easy - 1] > p[hard - 1]
    m = loaded.mastery(q, r)
    assert m["mastery"].shape == (len(loaded.concept_ids),)
    assert m["answered"].sum() == len(q)
    with pytest.raises(Exception, match="unknown learner 'nobody'"):
        loaded.learner("nobody")
    with pytest.raises(RectkError, match="recommends no items"):
        load_run(run)  # a knowledge-tracing run is refused by recommend, with the reason


def test_stopped_and_resumed_equals_uninterrupted(tmp_path, kt_data, monkeypatch):
    import rectk.loop as loop

    ref = train_and_evaluate(_recipe(tmp_path / "ref", kt_data), progress=False, echo=print)
    recipe = _recipe(tmp_path / "cut", kt_data)
    original = loop._on_devices

    def interrupted(it, put):  # Ctrl-C at the 13th batch, after a checkpoint (each epoch)
        for n, item in enumerate(original(it, put)):
            if n == 12:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(loop, "_on_devices", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(recipe, progress=False, echo=print)
    monkeypatch.setattr(loop, "_on_devices", original)
    resumed = train_and_evaluate(recipe, progress=False, echo=print)
    assert resumed["test"]["model"] == ref["test"]["model"]
    assert resumed["best_step"] == ref["best_step"]


def test_a_ranking_data_set_is_refused_with_the_reason(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('[task]\ntype = "knowledge_tracing"\n')
    with pytest.raises(RecipeError, match="needs a data set with answers"):
        recipe_lib.load(path)


def test_a_ranking_monitor_is_refused_for_knowledge_tracing(tmp_path, kt_data):
    with pytest.raises(RecipeError, match="one of auc, accuracy"):
        _recipe(tmp_path, kt_data, "train.monitor=ndcg@10")


@pytest.mark.parametrize("tracer", ["sakt", "akt", "simplekt"])
def test_attention_tracers_train_through_the_task(tmp_path, kt_data, tracer):
    recipe = _recipe(tmp_path, kt_data, "train.epochs=1", "model.tracer.heads=2", tracer=tracer)
    summary = train_and_evaluate(recipe, progress=False, echo=lambda *a: None)
    assert math.isfinite(summary["test"]["model"]["auc"])


@pytest.mark.parametrize("tracer", ["akt", "simplekt"])
def test_question_ids_give_a_rasch_difficulty_that_a_loaded_run_keeps(tmp_path, tracer):
    """With a questions column, the default ``use_questions = "auto"`` learns a difficulty per
    question, and ``load_kt_run`` rebuilds the same model from the run directory."""
    data = write_pykt(tmp_path / "data", learners=60, questions=True)
    recipe = _recipe(tmp_path, data, "train.epochs=1", "model.tracer.heads=2", tracer=tracer)
    assert recipe.resolved["model"]["tracer"]["use_questions"] == "auto"
    summary = train_and_evaluate(recipe, progress=False, echo=lambda *a: None)
    assert math.isfinite(summary["test"]["model"]["auc"])
    loaded = load_kt_run(tmp_path / "runs" / "kt")
    assert len(loaded.question_ids) == 18 and len(loaded.concept_ids) == 6
    mu = np.asarray(loaded.weights["params"]["embed"]["difficulty"]["embedding"])
    assert mu.shape == (19, 1) and np.abs(mu).max() > 0  # trained away from its zero start
    q, r = loaded.learner("u0")
    assert np.isfinite(loaded.success(q, r)).all()
