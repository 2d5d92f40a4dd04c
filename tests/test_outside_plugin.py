"""An outside author's plugin package, installed into its own environment, used from a recipe."""

import functools
import operator
import os
import subprocess
import sys
import venv

import pytest

from tests.conftest import ROOT, TINY

pytestmark = pytest.mark.slow

EXAMPLE = ROOT / "docs" / "examples" / "rectk-decay-encoder"


def test_example_plugin_package_installs_and_runs(tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    # A plain install, no build isolation: the build back end comes from the outer environment.
    build = tmp_path / "build"
    subprocess.run(
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
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    del build
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
