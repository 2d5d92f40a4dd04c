"""Explanations (``rectk.explain``, ``rectk recommend --explain``) on the session's tiny run."""

from __future__ import annotations

import contextlib
import doctest
import io
import json

import numpy as np
import pytest

from rectk import explain as explain_lib
from rectk.data.pipeline import left_pad


@pytest.fixture(scope="module")
def loaded(tiny_run):
    from rectk.predict import load_run

    return load_run(tiny_run.path)


@pytest.fixture(scope="module")
def explainer(loaded):
    return explain_lib.Explainer(loaded)


def _cli(*argv: str) -> tuple[int, str, str]:
    from rectk.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _histories(run, n: int) -> list[np.ndarray]:
    lengths = run.history.lengths
    users = [u for u in range(1, len(lengths)) if lengths[u] >= 2][:n]
    return [run.history.row(u) for u in users]


def _top_k(run, hist_bl, k: int):
    """The run's own top-k (``load_run``'s jitted scorer), seen items masked."""
    seen = np.zeros((len(hist_bl), 64), np.int32)
    seen[:, -hist_bl.shape[1] :] = hist_bl
    batch = {"user": np.zeros(len(hist_bl), np.int32), "input": hist_bl, "seen": seen}
    scores, ids = run.top_k(k, run.weights, batch)
    return np.asarray(scores), np.asarray(ids)


def test_doctests():
    result = doctest.testmod(explain_lib)
    assert result.attempted > 0 and result.failed == 0


def test_shapes_and_finite_values(loaded, explainer):
    hist_bl = explainer.windows(_histories(loaded, 4))
    top_s, top_ids = _top_k(loaded, hist_bl, 3)
    score_bk, weight_blk = explainer.occlusion(hist_bl, top_ids)
    assert score_bk.shape == (4, 3)
    assert weight_blk.shape == (4, loaded.cfg.model.max_len, 3)
    assert np.isfinite(score_bk).all() and np.isfinite(weight_blk).all()
    np.testing.assert_allclose(score_bk, top_s, rtol=1e-5, atol=1e-5)  # the model's own scores
    assert (weight_blk[hist_bl == 0] == 0).all()  # padding weighs nothing
    gxi_bl = explainer.gradient_x_input(hist_bl, top_ids[:, 0])
    assert gxi_bl.shape == hist_bl.shape and np.isfinite(gxi_bl).all()
    assert (gxi_bl[hist_bl == 0] == 0).all()


def test_occlusion_equals_rescoring_each_deletion(loaded, explainer):
    """The batched weights against a slow reference: every deletion rescored one by one
    through the run's top-k over all items."""
    hists = _histories(loaded, 3)
    hist_bl = explainer.windows(hists)
    _, top_ids = _top_k(loaded, hist_bl, 2)
    _, weight_blk = explainer.occlusion(hist_bl, top_ids)
    max_len = loaded.cfg.model.max_len

    def score_of(items, item):
        scores, ids = _top_k(loaded, left_pad(items, max_len)[None], loaded.num_items)
        return scores[0][list(ids[0]).index(item)]

    for b, h in enumerate(hists):
        window = h[-max_len:]
        for k, r in enumerate(top_ids[b]):
            base = score_of(window, r)
            for j in range(len(window)):
                expected = base - score_of(np.delete(window, j), r)
                got = weight_blk[b, max_len - len(window) + j, k]
                np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_recommend_explain_names_history_items(loaded):
    from rectk.predict import recommend

    user = loaded.vocab["user_ids"][0]
    history = loaded.history.row(1)
    taken = {loaded.vocab["item_ids"][i - 1] for i in history}
    recs = recommend(loaded, user=user, k=4, explain=True)
    assert len(recs) == 4
    for r in recs:
        assert {b["item"] for b in r["because"]} <= taken
        assert all(b["weight"] > 0 for b in r["because"])
        assert len(r["weights"]) == min(len(history), loaded.cfg.model.max_len)
        assert r["sentence"].endswith(".")
        assert "similar" not in r  # an id item tower: no "similar by text"


def test_similar_by_item_vectors(loaded, explainer, monkeypatch):
    from rectk.predict import recommend

    history = loaded.history.row(2)
    recs = recommend(loaded, user=loaded.vocab["user_ids"][1], k=2)
    monkeypatch.setattr(explainer, "text_tower", True)
    for r in explainer.annotate(history, recs):
        assert r["similar"]["item"] in {loaded.vocab["item_ids"][i - 1] for i in history}
        assert -1.0 <= r["similar"]["cosine"] <= 1.0 + 1e-6


def test_cli_explain_table_and_json(tiny_run, loaded):
    user = loaded.vocab["user_ids"][0]
    code, out, err = _cli(
        "recommend", "--run", str(tiny_run.path), "--user", user, "--k", "3", "--explain"
    )
    assert code == 0, err
    assert out.count("weights:") == 3
    assert "Because you took" in out or "From your history as a whole" in out
    titles = {loaded.titles[i - 1] for i in loaded.history.row(1)}
    ids = {loaded.vocab["item_ids"][i - 1] for i in loaded.history.row(1)}
    named = [line for line in out.splitlines() if line.strip().startswith("Because you took")]
    for line in named:
        assert any(t in line for t in titles)
    weights_lines = [line for line in out.splitlines() if "weights:" in line and "+" in line]
    for line in weights_lines:
        assert any(i in line for i in ids)

    code, out, err = _cli(
        "recommend", "--run", str(tiny_run.path), "--user", user, "--k", "3", "--explain", "--json"
    )
    assert code == 0, err
    recs = json.loads(out)
    assert len(recs) == 3
    for r in recs:
        assert {"item", "score", "because", "weights", "sentence"} <= set(r)
        assert all(np.isfinite(w["weight"]) for w in r["weights"])


def test_one_item_history(tiny_run, loaded):
    item = loaded.vocab["item_ids"][0]
    code, out, err = _cli(
        "recommend",
        "--run",
        str(tiny_run.path),
        "--history",
        item,
        "--k",
        "2",
        "--explain",
        "--json",
    )
    assert code == 0, err
    for r in json.loads(out):
        assert [w["item"] for w in r["weights"]] == [item]
        assert np.isfinite(r["weights"][0]["weight"])
        assert r["sentence"].startswith(("Because you took", "From your history as a whole"))


def test_empty_history_is_one_clear_message(tiny_run):
    code, _, err = _cli("recommend", "--run", str(tiny_run.path), "--history", ",", "--explain")
    assert code == 2
    assert "no interactions" in err and "Traceback" not in err


def test_annotate_refuses_an_empty_history(explainer):
    from rectk.errors import DataError

    with pytest.raises(DataError, match="history is empty"):
        explainer.annotate(np.zeros(0, np.int32), [])


def test_sentence_lists_names():
    assert explain_lib.sentence(["A"]) == "Because you took A."
    assert explain_lib.sentence(["A", "B", "C"]) == "Because you took A, B and C."
