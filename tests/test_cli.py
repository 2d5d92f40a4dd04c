"""The command line: the main job, recommendations, and bad input answered in one clear line."""

import functools
import json
import operator
import os
import subprocess
import sys

import pytest

from rectk.cli import main
from tests.conftest import RECIPES, ROOT, TINY


def rectk(*args, env=None):
    """Runs the installed command in a fresh process (as a user would)."""
    return subprocess.run(
        [sys.executable, "-m", "rectk.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def assert_clean_error(code, err, *fragments):
    assert code == 2
    assert err.startswith("rectk: error: ")
    assert "Traceback" not in err
    for f in fragments:
        assert f in err, err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    proc = rectk(
        "run",
        str(RECIPES / "quickstart.toml"),
        "--no-progress",
        *functools.reduce(operator.iadd, (["--set", o] for o in TINY), []),
        "--set",
        f"run_dir={runs}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return runs / "quickstart", proc.stdout


def test_run_prints_metrics_baseline_and_recommendations(finished_run):
    _, out = finished_run
    assert "test metrics" in out and "popularity" in out and "ndcg@10" in out
    assert "top-10 recommendations" in out and "learner learner_0001" in out


def test_recommend_known_user_json(finished_run, capsys):
    run_dir, _ = finished_run
    assert (
        main(["recommend", "--run", str(run_dir), "--user", "learner_0001", "--k", "5", "--json"])
        == 0
    )
    recs = json.loads(capsys.readouterr().out)
    assert len(recs) == 5 and all({"item", "title", "score"} <= set(r) for r in recs)
    assert [r["score"] for r in recs] == sorted((r["score"] for r in recs), reverse=True)


def test_recommend_new_learner_history_excludes_history(finished_run, capsys):
    run_dir, _ = finished_run
    vocab = json.loads((run_dir / "vocab.json").read_text())
    history = vocab["item_ids"][:3]
    assert main(["recommend", "--run", str(run_dir), "--history", ",".join(history), "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert len(recs) == 10 and not {r["item"] for r in recs} & set(history)
    assert main(["recommend", "--run", str(run_dir), "--history", ",".join(history)]) == 0
    assert " 1. " in capsys.readouterr().out


def test_evaluate_prints_stored_results(finished_run, capsys):
    run_dir, _ = finished_run
    assert main(["evaluate", "--run", str(run_dir)]) == 0
    assert "popularity" in capsys.readouterr().out


def test_user_without_history_is_a_clear_error(finished_run, capsys):
    run_dir, _ = finished_run
    code = main(["recommend", "--run", str(run_dir), "--history", ","])
    assert_clean_error(code, capsys.readouterr().err, "no interactions")
    code = main(["recommend", "--run", str(run_dir), "--user", "nobody"])
    assert_clean_error(code, capsys.readouterr().err, "unknown learner 'nobody'")
    code = main(["recommend", "--run", str(run_dir), "--history", "not_a_course"])
    assert_clean_error(code, capsys.readouterr().err, "unknown item id(s) not_a_course")


def test_plugins_lists_every_kind(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    for kind in (
        "datasets:",
        "encoders:",
        "heads:",
        "losses:",
        "metrics:",
        "tasks:",
        "failed to import:",
    ):
        assert kind in out
    assert "sasrec" in out and "university_courses" in out


@pytest.mark.parametrize(
    "recipe_text, fragments",
    [
        ("[train]\nlearnig_rate = 1\n", ["key 'train.learnig_rate': unknown key"]),
        ('[train]\nsteps = "ten"\n', ["key 'train.steps': expected an integer"]),
        ('[model.encoder]\ntype = "transformerxl"\n', ["unknown encoder 'transformerxl'"]),
        (
            '[data]\ntype = "csv"\npath = "no/such/file.csv"\n',
            ["interaction file not found", "file.csv"],
        ),
    ],
    ids=["unknown-key", "wrong-type", "unknown-plugin", "missing-data-file"],
)
def test_bad_recipes_give_one_clear_error(tmp_path, capsys, recipe_text, fragments):
    p = tmp_path / "bad.toml"
    p.write_text(recipe_text)
    code = main(["run", str(p), "--no-progress", "--set", f"run_dir={tmp_path}"])
    assert_clean_error(
        code, capsys.readouterr().err, str(p) if "file" not in fragments[0] else "", *fragments
    )


def test_short_data_row_names_file_and_line(tmp_path, capsys):
    data = tmp_path / "inter.csv"
    data.write_text("user_id,item_id,timestamp\nu1,i1,1\nu1,i2\n")
    p = tmp_path / "r.toml"
    p.write_text(f'[data]\ntype = "csv"\npath = "{data}"\n')
    code = main(["run", str(p), "--no-progress", "--set", f"run_dir={tmp_path}"])
    assert_clean_error(
        code, capsys.readouterr().err, f"{data}, line 3", "expected at least 3 columns"
    )


def test_empty_data_set(tmp_path, capsys):
    data = tmp_path / "inter.csv"
    data.write_text("user_id,item_id,timestamp\n")
    p = tmp_path / "r.toml"
    p.write_text(f'[data]\ntype = "csv"\npath = "{data}"\n')
    code = main(["run", str(p), "--no-progress", "--set", f"run_dir={tmp_path}"])
    assert_clean_error(code, capsys.readouterr().err, "the data set is empty")


def test_errors_in_a_fresh_process_have_no_traceback(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[train]\nbatch_size = -3\n")
    proc = rectk("run", str(p))
    assert_clean_error(proc.returncode, proc.stderr, "train.batch_size must be positive")
