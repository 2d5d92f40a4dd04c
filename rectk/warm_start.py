"""Starting a run from another run's trained weights: pre-train, then fine-tune.

``train.init_from`` names a finished run. Its best weights replace this run's initial ones
wherever a parameter has the same path in both models (same module names); the optimiser and
the step count start afresh. The source must have been trained on the same data and split, so
that its embedding rows mean the same items and learners and it never saw this run's
validation or test targets.

The loop decides once how a run starts (``rectk.train``): from its own latest checkpoint if
it has one, else from ``train.init_from`` (``warm_start``), else from fresh weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax

from rectk.config import RunConfig
from rectk.errors import RectkError
from rectk.predict import load_run
from rectk.rundir import RunDir


def source_path(cfg: RunConfig) -> Path:
    """The run ``train.init_from`` names: a bare name lies under ``run_dir`` (so a benchmark
    that moves ``run_dir`` moves both stages); anything with a ``/`` is a path."""
    ref = cfg.train.init_from
    path = Path(ref)
    return path if len(path.parts) > 1 else Path(cfg.run_dir) / ref


def warm_start(cfg: RunConfig, state: dict, fingerprint: str) -> tuple[dict, dict]:
    """``state`` with its initial weights replaced by the best weights of the run
    ``train.init_from`` names, and a report of what was done (``init_from.json``)."""
    path = source_path(cfg)
    if path.resolve() == RunDir.of(cfg).path.resolve():
        raise RectkError(f"train.init_from = {cfg.train.init_from!r} names this run itself")
    try:
        record = RunDir(path).record()
    except RectkError as err:
        raise RectkError(
            f"train.init_from = {cfg.train.init_from!r}: {err}; train the pre-training recipe "
            f"first, with the same run_dir"
        ) from None
    source = load_run(path)
    check_source(cfg, source.cfg, record, fingerprint)
    params, report = copy_matching(state["params"], source.weights["params"])
    rest, rest_report = copy_matching(state["rest"], source.weights["rest"])
    if not report["copied"]:
        raise RectkError(
            f"train.init_from = {cfg.train.init_from!r}: no trained parameter of this model has "
            f"a counterpart in {path} (its modules are named differently)"
        )
    info = {
        "path": str(path),
        "recipe_hash": record["recipe_hash"],
        "step": source.step,
        **{k: report[k] + rest_report[k] for k in ("copied", "fresh", "unused")},
    }
    return {**state, "params": params, "rest": rest}, info


def check_source(cfg: RunConfig, source_cfg: RunConfig, record: dict, fingerprint: str) -> None:
    """Refuses a source trained on other data or another split, naming what differs."""
    where = f"train.init_from = {cfg.train.init_from!r} ({source_path(cfg)})"
    if record.get("data_fingerprint") != fingerprint:
        raise RectkError(
            f"{where} was trained on other data (version {record.get('data_fingerprint')}, "
            f"this run's {fingerprint}): its embedding rows would mean other items"
        )
    if source_cfg.split != cfg.split:
        raise RectkError(
            f"{where} used another split ({source_cfg.split}, this run's {cfg.split}): it may "
            f"have trained on this run's validation or test targets"
        )


def _by_path(tree: Any) -> dict[str, Any]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): leaf for path, leaf in leaves}


def copy_matching(target: Any, source: Any) -> tuple[Any, dict[str, list[str]]]:
    """``target`` with every array leaf that ``source`` holds at the same path replaced by the
    source's (placed as the target leaf is). Returns it and the paths ``copied``, ``fresh``
    (target only: they keep their initial values) and ``unused`` (source only).

    >>> import numpy as np
    >>> out, report = copy_matching({"a": np.zeros(2), "b": np.zeros(1)}, {"a": np.ones(2)})
    >>> out["a"].tolist(), report["fresh"]
    ([1.0, 1.0], ["['b']"])
    """
    src = _by_path(source)
    report: dict[str, list[str]] = {"copied": [], "fresh": [], "unused": []}
    bad = []

    def pick(path, leaf):
        key = jax.tree_util.keystr(path)
        if key not in src:
            report["fresh"].append(key)
            return leaf
        new = src[key]
        if new.shape != leaf.shape or new.dtype != leaf.dtype:
            bad.append(
                f"{key}: source {new.dtype}{list(new.shape)}, here {leaf.dtype}{list(leaf.shape)}"
            )
            return leaf
        report["copied"].append(key)
        sharding = getattr(leaf, "sharding", None)
        return jax.device_put(new, sharding) if sharding is not None else new

    out = jax.tree_util.tree_map_with_path(pick, target)
    if bad:
        raise RectkError(
            "train.init_from: parameters differ in shape or type between the runs (change the "
            "model to match, or rename the module so it starts afresh): " + "; ".join(bad)
        )
    report["unused"] = sorted(set(src) - set(report["copied"]))
    return out, report
