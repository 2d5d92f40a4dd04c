"""Numeric recipe keys out of range, and run names leaving run_dir, are refused at load with one
message naming the key (and where the value came from), before anything is trained or written."""

import pytest

from rectk.errors import RecipeError
from rectk.recipe import load
from tests.conftest import RECIPES

CASES = [
    ("train.lr=-0.001", "--set: key 'train.lr': must be positive, got -0.001"),
    ("train.lr=0", "key 'train.lr': must be positive"),
    ("train.steps=-5", "key 'train.steps': must be >= 0, got -5"),
    ("train.warmup_steps=-1", "key 'train.warmup_steps': must be >= 0"),
    ("train.eval_every=-1", "key 'train.eval_every': must be >= 0"),
    ("train.checkpoint_every=-1", "key 'train.checkpoint_every': must be >= 0"),
    ("train.patience=-2", "key 'train.patience': must be >= 0"),
    ("train.weight_decay=-0.1", "key 'train.weight_decay': must be >= 0"),
    ("train.clip_norm=-1.0", "key 'train.clip_norm': must be >= 0"),
    ("train.log_every=0", "key 'train.log_every': must be at least 1, got 0"),
    ("train.keep_checkpoints=0", "key 'train.keep_checkpoints': must be at least 1"),
    ("eval.ks=[0, 10]", "key 'eval.ks': must be a list of k >= 1"),
    ("eval.ks=[]", "key 'eval.ks': must be a list of k >= 1"),
    ("eval.batch_size=0", "key 'eval.batch_size': must be at least 1"),
    ("eval.item_chunk=0", "key 'eval.item_chunk': must be at least 1"),
    ("recommend.k=0", "key 'recommend.k': must be at least 1"),
    ("recommend.show_users=-1", "key 'recommend.show_users': must be >= 0"),
    ("split.cold_items=1.0", "key 'split.cold_items': must be in [0, 1)"),
    ("split.test_fraction=-0.1", "key 'split.test_fraction': must be in [0, 1)"),
    ("split.test_fraction=0.95", "split.valid_fraction + split.test_fraction must be below 1"),
    ("mesh.data=0", "key 'mesh.data': must be -1 or at least 1"),
    ("mesh.model=0", "key 'mesh.model': must be at least 1"),
    ('name="../elsewhere"', "key 'name': must be a non-empty relative name without '..'"),
    ('name="/tmp/abs"', "key 'name': must be a non-empty relative name without '..'"),
    ('name=""', "key 'name': must be a non-empty relative name without '..'"),
    ('name="a/../../b"', "key 'name': must be a non-empty relative name without '..'"),
]


@pytest.mark.parametrize(("override", "message"), CASES, ids=[c[0] for c in CASES])
def test_out_of_range_values_are_one_clear_error(override, message):
    with pytest.raises(RecipeError) as err:
        load(RECIPES / "quickstart.toml", [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_value_from_a_recipe_file_names_that_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(f'base = "{RECIPES / "quickstart.toml"}"\n[train]\nlr = -1.0\n')
    with pytest.raises(RecipeError, match=r"bad\.toml: key 'train\.lr': must be positive"):
        load(bad)


def test_a_nested_run_name_stays_allowed():
    assert load(RECIPES / "quickstart.toml", ['name="group/run_1"']).config.name == "group/run_1"


def test_the_cli_refuses_before_writing_anything(tmp_path, capsys):
    from rectk import cli

    code = cli.main(
        [
            "train",
            str(RECIPES / "quickstart.toml"),
            "--set",
            "train.lr=-0.001",
            "--set",
            f"run_dir={tmp_path / 'runs'}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "key 'train.lr': must be positive" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()
