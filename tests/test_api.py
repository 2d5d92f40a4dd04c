"""The Python API (``rectk.api``): training from a dict on a data frame, many learners'
recommendations in fixed-size batches (the same lists as ``recommend``), Parquet files read as
CSV files are, and ``rectk recommend --users`` writing a table."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest

from rectk import api, registry
from rectk.data import readers
from rectk.errors import DataError, RecipeError, RectkError
from rectk.predict import recommend, recommend_many
from tests.conftest import TINY

# The quickstart recipe made tiny, with one reranker chain that reads only the model's item
# vectors (a data frame brings no catalogue, so no providers or topics).
RECIPE = {
    "base": "rectk:quickstart",
    "name": "frame",
    "model": {"dim": 16, "max_len": 10, "encoder": {"layers": 1}},
    "rerank": {"candidates": 40, "chains": {"diverse": [{"type": "mmr", "lambda_": 0.7}]}},
}
OVERRIDES = {
    o.split("=")[0]: int(o.split("=")[1])
    for o in TINY
    if o.startswith(("train.", "eval.batch_size"))
}


def _frame(num_learners: int = 200) -> pd.DataFrame:
    """Interactions of the bundled courses' simulated learners, as a data frame."""
    inter = registry.datasets.get("university_courses")(num_learners=num_learners).load()
    inter = inter.interactions
    return pd.DataFrame(
        {
            "user_id": np.asarray(inter.user_ids, object)[inter.user - 1],
            "item_id": np.asarray(inter.item_ids, object)[inter.item - 1],
            "timestamp": inter.time,
        }
    )


@pytest.fixture(scope="module")
def frame_run(tmp_path_factory):
    frame = _frame()
    root = tmp_path_factory.mktemp("api") / "runs"
    run = api.train(RECIPE, overrides=OVERRIDES, data=frame, run_dir=root)
    return run, frame, root


def _cli(*argv: str) -> tuple[int, str, str]:
    from rectk.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


# ---- training from Python ----------------------------------------------------------------------


def test_train_from_a_dict_on_a_data_frame_records_the_data(frame_run):
    run, frame, root = frame_run
    assert run.path == root / "frame"
    saved = run.path / api.DATA_FILE
    pd.testing.assert_frame_equal(pd.read_parquet(saved), frame)
    record = json.loads((run.path / "run.json").read_text())
    assert record["data_source"] == str(saved.resolve())
    csv = readers.build_interactions(
        list(frame.user_id), list(frame.item_id), frame.timestamp, None, source="frame"
    )
    assert record["data_fingerprint"] == csv.fingerprint()
    assert set(run.metrics) >= {"model", "popularity", "diverse"}
    assert list(run.evaluate().columns)[:1] == ["recall@10"]
    assert run.results["best_step"] > 0


def test_a_changed_data_frame_is_refused_and_the_saved_one_kept(frame_run):
    run, frame, root = frame_run
    before = (run.path / api.DATA_FILE).read_bytes()
    with pytest.raises(RectkError, match="holds other interactions than the data frame"):
        api.train(RECIPE, overrides=OVERRIDES, data=frame.iloc[:-1], run_dir=root)
    assert (run.path / api.DATA_FILE).read_bytes() == before


def test_bad_overrides_and_columns_are_clear_errors(tmp_path):
    with pytest.raises(RecipeError, match=r"train\.epochs"):
        api.train(RECIPE, overrides={"train.epochs": "two"}, run_dir=tmp_path)
    with pytest.raises(RecipeError, match=r"train\.epoch"):
        api.train(RECIPE, overrides=["train.epoch=2"], run_dir=tmp_path)
    frame = pd.DataFrame({"user_id": ["a"], "course": ["x"]})
    with pytest.raises(DataError, match=r"no column 'item_id' for the item \(columns: user_id, "):
        api.train(RECIPE, data=frame, run_dir=tmp_path)
    assert not (tmp_path / "frame").exists()


# ---- many learners at once ---------------------------------------------------------------------


@pytest.mark.parametrize("chain", ["none", "diverse"])
def test_recommend_many_gives_each_learner_its_recommend_list(frame_run, chain):
    loaded = frame_run[0].loaded
    users = loaded.vocab["user_ids"][:7]
    ids, scores = recommend_many(loaded, users=users, k=5, chain=chain, batch_size=3)
    for n, user in enumerate(users):
        one = recommend(loaded, user=user, k=5, chain=chain)
        assert [r["item"] for r in one] == [loaded.vocab["item_ids"][i - 1] for i in ids[n]]
        # float32 rounding apart: XLA sums a batch of one in another order than a batch of 3
        np.testing.assert_allclose([r["score"] for r in one], scores[n], rtol=1e-6)
    history = [loaded.vocab["item_ids"][i - 1] for i in loaded.history.row(3)]
    ids, _ = recommend_many(loaded, histories=[history, history[:2]], k=5, chain=chain)
    for n, h in enumerate([history, history[:2]]):
        one = recommend(loaded, history=h, k=5, chain=chain)
        assert [r["item"] for r in one] == [loaded.vocab["item_ids"][i - 1] for i in ids[n]]


def test_the_padded_last_batch_compiles_nothing_new_and_changes_no_list(frame_run):
    loaded = frame_run[0].loaded
    users = loaded.vocab["user_ids"][:8]
    full = recommend_many(loaded, users=users, k=4, chain="none", batch_size=4)
    compiled = loaded.top_k._cache_size()
    part = recommend_many(loaded, users=users[:7], k=4, chain="none", batch_size=4)
    assert loaded.top_k._cache_size() == compiled  # 7 learners: the last batch padded to 4
    np.testing.assert_array_equal(part[0], full[0][:7])
    np.testing.assert_array_equal(part[1], full[1][:7])


def test_run_recommend_is_a_table_of_every_learner(frame_run):
    run = api.open_run(frame_run[0].path)
    table = run.recommend(k=3, batch_size=64, chain="none")
    assert list(table.columns) == list(api.COLUMNS)
    users = run.loaded.vocab["user_ids"]
    assert len(table) == 3 * len(users)
    assert list(table.learner.unique()) == users
    assert table["rank"].tolist()[:6] == [1, 2, 3, 1, 2, 3]
    assert (table.groupby("learner").score.diff().dropna() <= 0).all()
    one = run.recommend("learner_0002", k=2, chain="none")
    assert one.learner.tolist() == ["learner_0002"] * 2


def test_recommend_many_refuses_what_recommend_refuses(frame_run):
    loaded = frame_run[0].loaded
    with pytest.raises(RectkError, match=r"unknown learner 'ghost': not in this run's data"):
        recommend_many(loaded, users=["learner_0001", "ghost"])
    with pytest.raises(RectkError, match=r"unknown learners 'a', 'b', 'c', 'd', 'e', \.\.\. "):
        recommend_many(loaded, users=list("abcdefg"))
    with pytest.raises(RectkError, match=r"histories\[1\]: unknown item id\(s\) nope"):
        recommend_many(loaded, histories=[["mit_6.0001"], ["nope"]])
    with pytest.raises(RectkError, match=rf"--k must lie in 1\.\.{loaded.num_items}, got 0"):
        recommend_many(loaded, k=0)
    with pytest.raises(RectkError, match="--chain 'nope': no such reranker chain"):
        recommend_many(loaded, chain="nope")


# ---- Parquet files -----------------------------------------------------------------------------


def test_a_parquet_file_reads_as_the_same_csv_file(tmp_path):
    frame = _frame(30)
    frame.to_csv(tmp_path / "i.csv", index=False)
    frame.to_parquet(tmp_path / "i.parquet")
    plugin = registry.datasets.get("csv")
    a = plugin(path=str(tmp_path / "i.csv")).load().interactions
    b = plugin(path=str(tmp_path / "i.parquet")).load().interactions
    assert a.fingerprint() == b.fingerprint()
    assert (a.user_ids, a.item_ids) == (b.user_ids, b.item_ids)
    np.testing.assert_array_equal(a.time, b.time)


@pytest.mark.parametrize(
    "frame, fragment",
    [
        (
            pd.DataFrame({"user_id": ["a"], "item": ["x"], "timestamp": [1]}),
            "i.parquet: no column 'item_id' for the item (columns: user_id, item, timestamp)",
        ),
        (
            pd.DataFrame({"user_id": ["a", None], "item_id": ["x", "y"], "timestamp": [1, 2]}),
            "i.parquet, row 2: column 'user_id' is null; expected an id",
        ),
        (
            pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", " "], "timestamp": [1, 2]}),
            "i.parquet, row 2: column 'item_id' is empty; expected an id",
        ),
        (
            pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": [1, None]}),
            "i.parquet, row 2: column 'timestamp' is empty; expected a number",
        ),
        (
            pd.DataFrame({"user_id": [1.5], "item_id": ["x"], "timestamp": [1]}),
            "column 'user_id' holds double values; expected ids as text or integers",
        ),
    ],
)
def test_bad_parquet_files_name_the_file_column_and_row(tmp_path, frame, fragment):
    frame.to_parquet(tmp_path / "i.parquet")
    with pytest.raises(DataError) as err:
        registry.datasets.get("csv")(path=str(tmp_path / "i.parquet")).load()
    assert fragment in str(err.value)


def test_a_file_that_is_not_parquet_is_a_clear_error(tmp_path):
    (tmp_path / "i.parquet").write_text("user_id,item_id\na,x\n")
    with pytest.raises(DataError, match=r"i\.parquet: not a readable Parquet file"):
        readers.read_delimited(tmp_path / "i.parquet", user="user_id", item="item_id")


# ---- rectk recommend --users -------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_cli_writes_many_learners_lists(frame_run, tmp_path, suffix):
    run = frame_run[0]
    users = tmp_path / "users.csv"
    users.write_text("user_id,group\nlearner_0003,a\nlearner_0001,b\n")
    out = tmp_path / f"recs{suffix}"
    code, stdout, err = _cli(
        "recommend", "--run", str(run.path), "--users", str(users), "--out", str(out), "--k", "4"
    )
    assert code == 0, err
    assert "2 learners, 8 rows" in stdout
    table = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    assert list(table.columns) == list(api.COLUMNS)
    assert table.learner.tolist() == ["learner_0003"] * 4 + ["learner_0001"] * 4
    one = recommend(run.loaded, user="learner_0001", k=4, chain="none")
    assert table.item.tolist()[4:] == [r["item"] for r in one]


def test_cli_unknown_learners_name_the_file_and_write_nothing(frame_run, tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("learner_0001\nghost\n\nnobody\n")
    out = tmp_path / "recs.parquet"
    code, _, err = _cli(
        "recommend", "--run", str(frame_run[0].path), "--users", str(users), "--out", str(out)
    )
    assert code == 2
    assert f"{users}: 2 unknown learner(s)" in err and "'ghost', 'nobody'" in err
    assert "nothing written" in err
    assert list(tmp_path.iterdir()) == [users]


@pytest.mark.slow
def test_train_a_loaded_recipe_on_a_parquet_file_with_its_own_column_names(tmp_path):
    import tomli_w

    from rectk import recipe as recipe_lib

    frame = _frame(100).rename(columns={"user_id": "learner", "item_id": "course"})
    frame.to_parquet(tmp_path / "taken.parquet")
    recipe_file = tmp_path / "r.toml"
    table = {"type": "csv", "path": "unused.csv", "user": "learner", "item": "course"}
    recipe_file.write_text(tomli_w.dumps({**RECIPE, "base": "rectk:quickstart", "data": table}))
    loaded = recipe_lib.load(recipe_file)
    run = api.train(loaded, overrides=OVERRIDES, data=tmp_path / "taken.parquet", run_dir=tmp_path)
    record = json.loads((run.path / "run.json").read_text())
    assert record["data_source"] == str(tmp_path / "taken.parquet")
    assert record["users"] == 100
    recs = run.recommend(frame.learner.iloc[0], k=3, chain="none")
    assert recs["rank"].tolist() == [1, 2, 3]
