"""The command line: the main job, recommendations, and bad input answered in one clear line."""

import json
import os
import subprocess
import sys

import pytest

from rectk.cli import _parser, main
from tests.conftest import ROOT


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


def test_run_prints_metrics_baseline_and_recommendations(tiny_run):
    out = tiny_run.stdout
    assert "trained 12 steps (reached train.steps); best validation ndcg@10" in out
    assert "test metrics" in out and "popularity" in out and "ndcg@10" in out
    assert "top-10 recommendations" in out and "learner learner_0001" in out


def test_progress_bar_only_on_a_terminal(tiny_run):
    # tiny_run's output is not a terminal: no progress frames in it
    assert "\r" not in tiny_run.stdout + tiny_run.stderr
    assert "train:" not in tiny_run.stderr
    parse = _parser().parse_args
    assert parse(["run", "r.toml"]).progress is None  # decided by the output
    assert parse(["run", "r.toml", "--progress"]).progress is True
    assert parse(["train", "r.toml", "--no-progress"]).progress is False


def test_version(capsys):
    from rectk import __version__

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"rectk {__version__}"


def test_recommend_known_user_json(tiny_run, capsys):
    args = ["recommend", "--run", str(tiny_run.path), "--user", "learner_0001", "--k", "5"]
    assert main([*args, "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert len(recs) == 5 and all({"item", "title", "score"} <= set(r) for r in recs)
    assert [r["score"] for r in recs] == sorted((r["score"] for r in recs), reverse=True)


def test_recommend_new_learner_history_excludes_history(tiny_run, capsys):
    vocab = json.loads((tiny_run.path / "vocab.json").read_text())
    history = vocab["item_ids"][:3]
    args = ["recommend", "--run", str(tiny_run.path), "--history", ",".join(history)]
    assert main([*args, "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert len(recs) == 10 and not {r["item"] for r in recs} & set(history)
    assert main(args) == 0
    assert " 1. " in capsys.readouterr().out


def test_evaluate_prints_validation_and_test_metrics(tiny_run, capsys):
    assert main(["evaluate", "--run", str(tiny_run.path)]) == 0
    out = capsys.readouterr().out
    best = tiny_run.results["best_step"]
    assert f"validation (the model at its best step, {best})" in out
    assert "test (200 targets)" in out and "popularity" in out
    assert main(["evaluate", "--run", str(tiny_run.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == tiny_run.results


def test_user_without_history_is_a_clear_error(tiny_run, capsys):
    run_dir = str(tiny_run.path)
    code = main(["recommend", "--run", run_dir, "--history", ","])
    assert_clean_error(code, capsys.readouterr().err, "no interactions")
    code = main(["recommend", "--run", run_dir, "--user", "nobody"])
    assert_clean_error(code, capsys.readouterr().err, "unknown learner 'nobody'")
    code = main(["recommend", "--run", run_dir, "--history", "not_a_course"])
    assert_clean_error(code, capsys.readouterr().err, "unknown item id(s) not_a_course")


def test_plugins_lists_every_kind(capsys):
    from rectk import registry

    # 1 only where a module failed to import (earlier tests may have recorded such failures)
    assert main(["plugins"]) == (1 if registry.failed_plugins() else 0)
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
    assert_clean_error(proc.returncode, proc.stderr, "key 'train.batch_size': must be positive")
