"""An outside author's plugin package, installed into its own environment, used from a recipe."""

import functools
import operator
import os
import subprocess
import sys
import sysconfig
import tomllib
import venv
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY

EXAMPLE = ROOT / "docs" / "examples" / "rectk-decay-encoder"


def _nested_env(env_dir):
    """A virtual environment that sees this test's environment, not the base interpreter's.

    ``system_site_packages=True`` would expose the *base* interpreter's site-packages (on a
    fresh Python 3.11, setuptools 65.5), not those of the environment running the tests. So the
    nested environment has no packages of its own (not even pip), and a ``.pth`` file adds this
    environment's site directories, whose own ``.pth`` files (rectk's editable install) run too.
    """
    venv.EnvBuilder(system_site_packages=False, with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    nested = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    outer = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    lines = [f"import site; site.addsitedir({d!r})" for d in outer]
    (Path(nested) / "_rectk_outer_env.pth").write_text("\n".join(lines) + "\n")
    return py


def test_nested_env_builds_with_this_environments_setuptools(tmp_path):
    """The check that catches a build back end taken from the base interpreter: the example's
    build requirement must be met by the setuptools the nested environment imports, and that
    setuptools must be this environment's."""
    py = _nested_env(tmp_path / "venv")
    probe = subprocess.run(
        [py, "-c", "import setuptools; print(setuptools.__version__); print(setuptools.__file__)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    import setuptools

    assert probe == [setuptools.__version__, setuptools.__file__]
    required = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["build-system"]["requires"]
    need = next(r for r in required if r.startswith("setuptools"))
    minimum = tuple(int(x) for x in need.split(">=")[1].split("."))
    have = tuple(int(x) for x in setuptools.__version__.split(".")[: len(minimum)])
    assert have >= minimum, f"{need} needed to build the example; this environment has {probe[0]}"


@pytest.mark.slow
def test_example_plugin_package_installs_and_runs(tmp_path):
    py = _nested_env(tmp_path / "venv")
    # A plain install, no build isolation: the build back end comes from the outer environment.
    built = subprocess.run(
        [
            py,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            str(EXAMPLE),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert built.returncode == 0, built.stderr[-3000:]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    listed = subprocess.run(
        [py, "-m", "rectk.cli", "plugins"], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert listed.returncode == 0, listed.stderr
    assert "rectk_decay_encoder.encoder.DecayConfig" in listed.stdout
    sets = [*[t for t in TINY if not t.startswith("model.encoder")], f"run_dir={tmp_path / 'runs'}"]
    proc = subprocess.run(
        [
            py,
            "-m",
            "rectk.cli",
            "run",
            str(EXAMPLE / "recipe.toml"),
            "--no-progress",
            *functools.reduce(operator.iadd, (["--set", s] for s in sets), []),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test metrics" in proc.stdout
    resolved = (tmp_path / "runs" / "decay_example" / "recipe.toml").read_text()
    assert 'type = "decay"' in resolved and "initial_decay = 0.7" in resolved
    # The outer environment (rectk's own) does not know the plugin.
    assert "rectk_decay_encoder" not in sys.modules
