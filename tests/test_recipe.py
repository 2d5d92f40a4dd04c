from pathlib import Path

import pytest

from rectk import recipe
from rectk.errors import RecipeError
from tests.conftest import RECIPES


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.toml")), ids=lambda p: p.name)
def test_every_recipe_loads_and_validates(path, tmp_path):
    import tomli_w

    r = recipe.load(path)
    assert len(r.hash) == 16
    # The resolved form (as written into a run directory) validates again to the same hash.
    resolved = tmp_path / "resolved.toml"
    resolved.write_text(tomli_w.dumps(r.resolved))
    assert recipe.load(resolved).hash == r.hash


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_base_defaults_equal_schema_defaults():
    """recipes/base.toml lists every key with the schema's default."""
    from rectk.config import RunConfig

    base = recipe.load(RECIPES / "base.toml")
    schema = recipe.from_dict(RunConfig, {})
    assert base.resolved == recipe.to_dict(schema)


def test_layering_and_overrides(tmp_path):
    base = write(tmp_path, "b.toml", "[train]\nlr = 0.5\nsteps = 7\n[model]\ndim = 8\n")
    child = write(tmp_path, "c.toml", 'base = "b.toml"\n[train]\nlr = 0.25\n')
    r = recipe.load(child, ["train.steps=100", "model.encoder.layers=1", "name=hello"])
    cfg = r.config
    assert cfg.train.lr == 0.25 and cfg.train.steps == 100 and cfg.model.dim == 8
    assert cfg.model.encoder.layers == 1 and cfg.name == "hello"
    assert recipe.load(child).hash != r.hash
    assert (
        recipe.load(child, ["train.steps=100", "model.encoder.layers=1", "name=hello"]).hash
        == r.hash
    )
    del base


def test_unknown_key_names_file_and_path(tmp_path):
    p = write(tmp_path, "r.toml", "[train]\nlearning_rate = 0.1\n")
    with pytest.raises(RecipeError) as err:
        recipe.load(p)
    msg = str(err.value)
    assert str(p) in msg and "train.learning_rate" in msg and "unknown key" in msg


def test_unknown_key_from_base_names_the_base_file(tmp_path):
    write(tmp_path, "b.toml", "[model]\nwidth = 3\n")
    child = write(tmp_path, "c.toml", 'base = "b.toml"\n')
    with pytest.raises(RecipeError, match=r"b\.toml: key 'model\.width'"):
        recipe.load(child)


def test_wrong_type(tmp_path):
    p = write(tmp_path, "r.toml", '[train]\nbatch_size = "big"\n')
    with pytest.raises(
        RecipeError, match=r"r\.toml: key 'train\.batch_size': expected an integer, got 'big'"
    ):
        recipe.load(p)


def test_wrong_type_from_set_names_set(tmp_path):
    p = write(tmp_path, "r.toml", "")
    with pytest.raises(RecipeError, match=r"--set: key 'train\.lr': expected a number"):
        recipe.load(p, ["train.lr=fast"])


def test_missing_required_field(tmp_path):
    p = write(tmp_path, "r.toml", '[data]\ntype = "atomic"\n')
    with pytest.raises(RecipeError, match=r"key 'data\.path': missing required key"):
        recipe.load(p)


def test_unknown_plugin_name(tmp_path):
    p = write(tmp_path, "r.toml", '[model.encoder]\ntype = "sasrek"\n')
    with pytest.raises(RecipeError) as err:
        recipe.load(p)
    msg = str(err.value)
    assert "model.encoder.type" in msg and "unknown encoder 'sasrek'" in msg and "sasrec" in msg


def test_changing_plugin_type_replaces_the_table(tmp_path):
    write(tmp_path, "b.toml", '[data]\ntype = "atomic"\npath = "x.inter"\ntitle_field = "t"\n')
    child = write(
        tmp_path, "c.toml", 'base = "b.toml"\n[data]\ntype = "sequences"\npath = "y.txt"\n'
    )
    cfg = recipe.load(child).config
    assert type(cfg.data).plugin_name == "sequences" and cfg.data.path == "y.txt"


def test_malformed_toml_and_missing_file(tmp_path):
    with pytest.raises(RecipeError, match="not valid TOML"):
        recipe.load(write(tmp_path, "r.toml", "[train\n"))
    with pytest.raises(RecipeError, match="recipe file not found"):
        recipe.load(tmp_path / "nope.toml")
    with pytest.raises(RecipeError, match="expected KEY=VALUE"):
        recipe.load(write(tmp_path, "ok.toml", ""), ["train.steps"])


def test_value_checks_in_post_init(tmp_path):
    p = write(tmp_path, "r.toml", '[model.encoder]\ntype = "sasrec"\ndropout = 1.5\n')
    with pytest.raises(RecipeError, match="dropout"):
        recipe.load(p)


def test_recipe_is_frozen():
    import dataclasses

    cfg = recipe.load(RECIPES / "quickstart.toml").config
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.lr = 1.0


# ---------------------------------------------------------------------------------------------
# Shipped recipes as bases; plugin files next to a recipe; names checked against a registry.
# ---------------------------------------------------------------------------------------------


def test_shipped_recipes_are_the_repository_recipes():
    shipped = recipe.shipped_recipes()
    assert sorted(p.name for p in shipped.glob("*.toml")) == sorted(
        p.name for p in RECIPES.glob("*.toml")
    )


def test_base_names_a_shipped_recipe(tmp_path):
    p = write(
        tmp_path, "mine.toml", 'base = "rectk:quickstart"\nname = "mine"\n[train]\nsteps = 5\n'
    )
    mine = recipe.load(p)
    same = recipe.load(RECIPES / "quickstart.toml", ["name=mine", "train.steps=5"])
    assert mine.config.name == "mine" and mine.hash == same.hash
    assert recipe.load(write(tmp_path, "t.toml", 'base = "rectk:quickstart.toml"\n')).hash == (
        recipe.load(RECIPES / "quickstart.toml").hash
    )


def test_unknown_shipped_recipe_lists_the_shipped_ones(tmp_path):
    p = write(tmp_path, "r.toml", 'base = "rectk:quikstart"\n')
    with pytest.raises(RecipeError) as err:
        recipe.load(p)
    msg = str(err.value)
    assert str(p) in msg and "no shipped recipe 'rectk:quikstart'" in msg and "quickstart" in msg


PLUGIN_FILE = """
import dataclasses

from rectk import registry
from rectk.contracts import BuildContext, EncoderPlugin
from rectk.recipe import registered
from rectk_plugins.encoders.mean_pool import MeanPool


@registered(registry.encoders, "file_plugin_pool")
@dataclasses.dataclass(frozen=True, kw_only=True)
class FilePool(EncoderPlugin):
    linear: bool = False
    init_std: float = 0.02

    def build(self, ctx: BuildContext) -> MeanPool:
        return MeanPool(self, dim=ctx.dim, rngs=ctx.rngs)
"""


@pytest.fixture
def forget_file_plugin():
    from rectk import registry

    yield
    registry.encoders._entries.pop("file_plugin_pool", None)
    registry.encoders._origins.pop("file_plugin_pool", None)


def test_plugins_may_name_a_file_beside_the_recipe(tmp_path, forget_file_plugin):
    import tomli_w

    folder = tmp_path / "project"
    folder.mkdir()
    write(folder, "pool.py", PLUGIN_FILE)
    p = write(
        folder,
        "r.toml",
        'plugins = ["./pool.py"]\n[model.encoder]\ntype = "file_plugin_pool"\nlinear = true\n',
    )
    r = recipe.load(p)
    assert type(r.config.model.encoder).__name__ == "FilePool" and r.config.model.encoder.linear
    # The resolved recipe names the file by its absolute path, so a run directory reloads it.
    assert r.config.plugins == (str((folder / "pool.py").resolve()),)
    elsewhere = write(tmp_path, "resolved.toml", tomli_w.dumps(r.resolved))
    assert recipe.load(elsewhere).hash == r.hash


def test_a_plugin_file_that_fails_is_one_recipe_error(tmp_path):
    write(tmp_path, "broken.py", "raise RuntimeError('boom')\n")
    p = write(tmp_path, "r.toml", 'plugins = ["broken.py"]\n')
    with pytest.raises(RecipeError, match=r"key 'plugins': could not import 'broken\.py' .*boom"):
        recipe.load(p)
    with pytest.raises(RecipeError, match=r"could not import 'missing\.py' .*no such file"):
        recipe.load(write(tmp_path, "m.toml", 'plugins = ["missing.py"]\n'))


def test_plugin_names_are_checked_against_their_registry(tmp_path):
    import dataclasses

    from rectk import registry

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Schema:
        metrics: tuple[str, ...] = recipe.plugin_names(registry.metrics, ("recall",))

    assert recipe.load(write(tmp_path, "ok.toml", 'metrics = ["ndcg"]\n'), schema=Schema).config
    p = write(tmp_path, "r.toml", 'metrics = ["ndcg", "ndgc"]\n')
    with pytest.raises(RecipeError) as err:
        recipe.load(p, schema=Schema)
    msg = str(err.value)
    assert f"{p}: key 'metrics[1]': unknown metric 'ndgc'" in msg and "Did you mean 'ndcg'" in msg
    # The field's metadata changes nothing in the resolved form (or the hash).
    assert recipe.load(write(tmp_path, "d.toml", ""), schema=Schema).resolved == {
        "metrics": ["recall"]
    }
