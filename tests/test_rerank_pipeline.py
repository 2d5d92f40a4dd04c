"""Reranker chains on the predict path: declared in recipes, checked at load, evaluated at
the end of training, applied by ``recommend``, swept into a table and a frontier plot."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from rectk import recipe as recipe_lib
from rectk.errors import RecipeError, RectkError
from tests.conftest import RECIPES, TINY, set_args

RERANK = RECIPES / "quickstart_rerank.toml"


def _main(*argv: str) -> tuple[int, str, str]:
    from rectk.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def rerank_run(tmp_path_factory):
    overrides = [*TINY, "rerank.candidates=40", f"run_dir={tmp_path_factory.mktemp('rr')}"]
    code, out, err = _main("run", str(RERANK), *set_args(overrides))
    assert code == 0, err[-3000:]
    cfg = recipe_lib.load(RERANK, overrides).config
    path = next(p for p in (tmp_path_factory.getbasetemp()).glob("rr*/quickstart_rerank"))
    return cfg, path, out


# ---- recipes: bad chains are one message at load, naming the key -----------------------------


def _load(tmp_path, text: str, *overrides: str):
    path = tmp_path / "r.toml"
    path.write_text(f'base = "rectk:quickstart"\n{text}')
    return recipe_lib.load(path, overrides)


@pytest.mark.parametrize(
    "text, key, words",
    [
        (
            '[[rerank.chains.d]]\ntype = "mmr"\nlambda_ = 1.5\n',
            "rerank.chains.d[0].lambda_",
            "must lie in [0, 1], got 1.5",
        ),
        ("[rerank.chains]\nd = []\n", "rerank.chains.d", "an empty chain"),
        ('[[rerank.chains.d]]\ntype = "mmx"\n', "rerank.chains.d[0].type", "mmr"),
        ("[[rerank.chains.d]]\nlambda_ = 0.5\n", "rerank.chains.d[0].type", "reranker"),
        ('[[rerank.chains.d]]\ntype = "mmr"\nlamda = 0.5\n', "rerank.chains.d[0].lamda", "lambda_"),
        ("[rerank]\nk = 20\ncandidates = 10\n", "rerank.k", "K <= C"),
        ('[rerank]\nuse = "nope"\n', "rerank.use", "name of a chain"),
        ('[[rerank.chains."a b"]]\ntype = "mmr"\n', "rerank.chains.a b", "letters, digits"),
    ],
)
def test_a_bad_chain_is_refused_at_load(tmp_path, text, key, words):
    with pytest.raises(RecipeError) as err:
        _load(tmp_path, text)
    msg = str(err.value)
    assert f"key '{key}'" in msg and words in msg and str(tmp_path / "r.toml") in msg


def test_a_chain_needing_what_the_data_set_lacks_is_refused_at_load(tmp_path):
    data = tmp_path / "log.csv"
    data.write_text("user_id,item_id,timestamp\nu,a,1\nu,b,2\nu,c,3\n")
    text = f'[data]\ntype = "csv"\npath = "{data}"\n[[rerank.chains.cal]]\ntype = "calibration"\n'
    with pytest.raises(RecipeError) as err:
        _load(tmp_path, text)
    msg = str(err.value)
    assert "key 'rerank.chains.cal[0]': the calibration reranker needs item topics" in msg
    assert "'csv' does not provide" in msg


def test_a_csv_data_set_with_prerequisites_provides_them(tmp_path):
    text = (
        '[data]\ntype = "csv"\npath = "log.csv"\ncatalogue = "c.csv"\n'
        'prerequisites = "p.csv"\n[[rerank.chains.p]]\ntype = "prerequisites"\n'
    )
    cfg = _load(tmp_path, text).config  # files are read at training, not at load
    assert cfg.data.provides() == {"prerequisites"}
    with pytest.raises(RecipeError, match="needs item prerequisites"):
        _load(tmp_path, text.replace('prerequisites = "p.csv"\n', ""))


def test_a_users_catalogue_gives_providers_and_topics_to_the_chains(tmp_path):
    (tmp_path / "log.csv").write_text(
        "user_id,item_id,timestamp\n"
        + "".join(f"u{u},i{(u + t) % 6},{t}\n" for u in range(12) for t in range(5))
    )
    (tmp_path / "c.csv").write_text(
        "item_id,title,school,tags\n"
        + "".join(f"i{i},T{i},s{i % 2},{'ml;math' if i % 3 else 'art'}\n" for i in range(6))
    )
    text = (
        f'[data]\ntype = "csv"\npath = "{tmp_path / "log.csv"}"\n'
        f'catalogue = "{tmp_path / "c.csv"}"\ngroup = "school"\n'
        'topics = "tags"\n[[rerank.chains.f]]\ntype = "fair"\nprotected_groups = ["s1"]\n'
        '[[rerank.chains.c]]\ntype = "calibration"\n[rerank]\ncandidates = 3\nk = 2\n'
        "[recommend]\nk = 2\n"
    )
    path = tmp_path / "r.toml"
    path.write_text(f'base = "rectk:quickstart"\n{text}')
    tiny = [o for o in TINY if not o.startswith("data.")]
    args = [*tiny, f"run_dir={tmp_path}", "eval.ks=[1, 2]", "train.monitor=ndcg@2"]
    code, _, err = _main("train", str(path), *set_args(args))
    assert code == 0, err[-2000:]
    results = json.loads((tmp_path / "quickstart" / "results.json").read_text())
    assert {"model", "f", "c"} == set(results["rerank"])
    assert "exposure_disparity@2" in results["rerank"]["f"]
    assert "miscalibration@2" in results["rerank"]["c"]


def test_an_unknown_protected_group_fails_before_training(tmp_path):
    text = '[[rerank.chains.f]]\ntype = "fair"\nprotected_groups = ["hogwarts"]\n'
    path = tmp_path / "r.toml"
    path.write_text(f'base = "rectk:quickstart"\n{text}')
    code, _, err = _main("run", str(path), *set_args([*TINY, f"run_dir={tmp_path}"]))
    assert code == 2
    assert "rerank.chains.f[0]: protected_groups: unknown group 'hogwarts'" in err
    assert "'mit'" in err and "Traceback" not in err
    assert not (tmp_path / "quickstart").exists()  # refused before the run directory is written


# ---- a finished run ------------------------------------------------------------------------


def test_training_reports_each_chain_beside_the_model(rerank_run):
    cfg, path, out = rerank_run
    results = json.loads((path / "results.json").read_text())
    table = results["rerank"]
    assert list(table) == ["model", *cfg.rerank.chains]
    k = cfg.rerank.k
    # The model's own top K of its candidates ranks the test targets as full ranking does.
    for m in ("recall", "ndcg", "mrr"):
        assert table["model"][f"{m}@{k}"] == pytest.approx(results["test"]["model"][f"{m}@{k}"])
    for row in table.values():
        assert {f"coverage@{k}", f"gini@{k}", f"ild@{k}", f"miscalibration@{k}"} <= set(row)
        assert {f"exposure_disparity@{k}", f"prerequisite_violations@{k}"} <= set(row)
    assert table["prepared"][f"prerequisite_violations@{k}"] == 0.0
    assert table["model"][f"prerequisite_violations@{k}"] > 0.0
    assert "reranker chains" in out and "prepared" in out


def test_evaluate_prints_the_chains(rerank_run):
    _, path, _ = rerank_run
    code, out, err = _main("evaluate", "--run", str(path))
    assert code == 0, err
    assert "reranker chains" in out and "exposure_disparity@10" in out


def test_recommend_applies_a_chain(rerank_run):
    from rectk.predict import load_run, recommend

    cfg, path, _ = rerank_run
    run = load_run(path)
    user = run.vocab["user_ids"][0]
    seen = {run.vocab["item_ids"][i - 1] for i in run.history.row(1)}
    model = recommend(run, user=user, k=10, chain="none")
    for name in cfg.rerank.chains:
        recs = recommend(run, user=user, k=10, chain=name)
        items = [r["item"] for r in recs]
        assert len(items) == len(set(items)) <= 10 and not set(items) & seen, name
    assert recommend(run, user=user, k=10) == recommend(run, user=user, k=10, chain="prepared")
    mmr1 = recommend(run, user=user, k=10, chain="diverse")
    assert [r["item"] for r in mmr1] != [r["item"] for r in model]
    with pytest.raises(RectkError, match="no such reranker chain"):
        recommend(run, user=user, k=10, chain="nope")
    with pytest.raises(RectkError, match=r"exceeds rerank\.candidates"):
        recommend(run, user=user, k=41, chain="diverse")


def test_a_sweep_writes_a_table_and_a_frontier_plot(rerank_run):
    cfg, path, _ = rerank_run
    code, _, err = _main(
        "sweep", "--run", str(path), "--chain", "diverse", "--param", "mmr.lambda_",
        "--values", "0,1", "--split", "test",
    )  # fmt: skip
    assert code == 0, err
    stem = path / "sweeps" / "diverse-mmr-lambda_-test"
    rows = json.loads(stem.with_suffix(".json").read_text())["rows"]
    assert [r["value"] for r in rows] == [None, 0.0, 1.0]
    # lambda_ = 1 is relevance alone: the model's own lists
    assert {k: v for k, v in rows[2].items() if k not in ("chain", "value")} == pytest.approx(
        {k: v for k, v in rows[0].items() if k not in ("chain", "value")}
    )
    assert rows[1][f"ild@{cfg.rerank.k}"] > rows[0][f"ild@{cfg.rerank.k}"]
    assert stem.with_suffix(".csv").read_text().startswith("chain,value,recall@10")
    assert stem.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = _main("sweep", "--run", str(path), "--chain", "diverse", "--param", "mmr.lamda")
    assert code == 2 and "has no field 'lamda'" in err and "Traceback" not in err
    code, _, err = _main(
        "sweep", "--run", str(path), "--chain", "diverse", "--param", "mmr.lambda_",
        "--values", "2",
    )  # fmt: skip
    assert code == 2 and "lambda_ must lie in [0, 1]" in err


def test_side_information_is_saved_with_the_run(rerank_run):
    from rectk.rerank.side import ItemSide

    _, path, _ = rerank_run
    side = ItemSide.load(path)
    assert side is not None and side.provides() >= {"groups", "topics", "prerequisites"}
    assert "mit" in side.group_names and side.pop_v[0] == 0
    assert np.allclose(side.topics_vt[1:].sum(1), 1.0, atol=1e-5)


def test_a_damaged_items_file_is_one_message(rerank_run, tmp_path):
    import shutil

    _, path, _ = rerank_run
    copy = tmp_path / "run"
    shutil.copytree(path, copy)
    (copy / "items.npz").write_bytes((path / "items.npz").read_bytes()[:100])
    code, _, err = _main("recommend", "--run", str(copy), "--user", "learner_0001")
    assert code == 2 and "Traceback" not in err
    assert f"{copy / 'items.npz'} is damaged" in err and "run the same training command" in err


def test_an_export_carries_the_recipes_chain(rerank_run, tmp_path):
    """``rectk export`` builds the recipe's ``rerank.use`` chain into the exported function:
    its lists equal ``recommend``'s through the same chain."""
    from rectk.predict import load_run, recommend
    from rectk.serving.artifact import Artifact
    from rectk.serving.export import export_run

    cfg, path, _ = rerank_run
    with pytest.raises(RectkError, match=r"k-max 100 exceeds rerank\.candidates = 40"):
        export_run(path, tmp_path / "too_long")
    art = Artifact(export_run(path, tmp_path / "e", k_max=cfg.rerank.k))
    assert art.manifest["source"]["chain"] == cfg.rerank.use
    run = load_run(path)
    users = list(run.vocab["user_ids"][:8])
    for user, got in zip(users, art.recommend(users=users, k=cfg.rerank.k), strict=True):
        want = recommend(run, user=user, k=cfg.rerank.k)  # through rerank.use
        assert [g["item"] for g in got] == [w["item"] for w in want], user
    plain = recommend(run, user=users[0], k=cfg.rerank.k, chain="none")
    assert [p["item"] for p in plain] != [g["item"] for g in art.recommend(users=users[:1])[0]]
