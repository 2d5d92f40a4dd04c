"""pyKT's virtual environment for ``benchmarks/vs_pykt.py``: ``.bench-venvs/pykt``, created on first use.

    python benchmarks/_pykt_env.py            # create it (or check the one there) and print its versions
    python benchmarks/_pykt_env.py --check    # exit 1 if it is missing or broken; install nothing

What it installs, in this order, and why:

1. ``torch==2.13.0+cpu`` alone, first: the CPU wheel (``pip index versions torch`` lists
   ``2.13.0+cpu`` beside the plain ``2.13.0``), so that nothing later resolves a CUDA build.
   It is repeated in the later commands so pip keeps it.
2. ``pykt-toolkit==0.0.38 --no-deps``: pyKT declares ``wandb>=0.12.9`` as a dependency, and wandb
   pulls protobuf, sentry-sdk, GitPython, pydantic, click and more; pyKT imports it only in
   ``pykt/utils/wandb_utils.py``, which neither ``import pykt`` nor training and evaluation load.
3. What pyKT imports when it trains and evaluates, pinned: ``numpy==1.26.4``, ``pandas==2.2.3``
   (pyKT's code predates numpy 2 and pandas 3; these are the last of the 1.x / 2.x lines it was
   written against), ``scikit-learn==1.5.2`` (``sklearn.metrics`` for AUC and accuracy; the last
   release built for numpy 1.26 on Python 3.11 that pip picks without a compiler).

``check`` imports pyKT's model, dataset and training modules in the venv, so a missing
dependency shows there and not half-way through a benchmark. Nothing is fetched from a model hub.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from _measure import create_venv

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".bench-venvs" / "pykt"
PYTHON = VENV / "bin" / "python"
TORCH_REQUIREMENT = "torch==2.13.0+cpu"
PYKT_REQUIREMENT = "pykt-toolkit==0.0.38"
DEPENDENCIES = ["numpy==1.26.4", "pandas==2.2.3", "scikit-learn==1.5.2"]

_CHECK = (
    "import json, numpy, pandas, sklearn, torch;"
    "import pykt;"
    "from pykt.models import train_model, evaluate, init_model;"
    "from pykt.datasets import init_dataset4train;"
    "from pykt.preprocess.split_datasets import generate_sequences;"
    "from importlib.metadata import version;"
    "assert torch.__version__.endswith('+cpu'), torch.__version__;"
    "print(json.dumps({'pykt-toolkit': version('pykt-toolkit'), 'torch': torch.__version__,"
    " 'numpy': numpy.__version__, 'pandas': pandas.__version__, 'scikit-learn': sklearn.__version__}))"
)


def check() -> dict | None:
    """The venv's versions, or None when it is missing or pyKT does not import there."""
    import json

    if not PYTHON.is_file():
        return None
    done = subprocess.run([str(PYTHON), "-c", _CHECK], capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None


def pykt_python() -> Path:
    """The pyKT venv's interpreter, creating the venv on first use."""
    if check() is not None:
        return PYTHON
    print(
        f"creating {VENV.relative_to(ROOT)}: {TORCH_REQUIREMENT}, then {PYKT_REQUIREMENT} "
        f"--no-deps, then {' '.join(DEPENDENCIES)} ...",
        flush=True,
    )
    create_venv(
        VENV,
        [
            [TORCH_REQUIREMENT],
            ["--no-deps", PYKT_REQUIREMENT],
            [TORCH_REQUIREMENT, *DEPENDENCIES],
        ],
    )
    if check() is None:
        raise SystemExit(
            f'{VENV} was created but pyKT does not import there: run\n  {PYTHON} -c "{_CHECK}"'
        )
    return PYTHON


if __name__ == "__main__":
    if "--check" in sys.argv[1:]:
        versions = check()
        print(versions if versions else f"{VENV}: missing or broken")
        raise SystemExit(0 if versions else 1)
    pykt_python()
    print(check())
