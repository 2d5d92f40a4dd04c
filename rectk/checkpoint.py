"""Orbax checkpoints: atomic saves of the train state and the loop/data-iterator state,
keeping the latest N and the best by the validation metric. Written by every process of a
multi-host run (Orbax coordinates them)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp

_ITEMS = ("state", "meta")
# Pruned steps are renamed into this folder (one atomic rename), then deleted: a run killed
# while deleting leaves debris here, never a half-deleted step folder that looks like a step.
_TRASH = "_deleted"
# Orbax writes this file into a step folder when the save is complete.
_FINALISED = "_CHECKPOINT_METADATA"


class Checkpoints:
    """``save(step, state, meta, metric)`` / ``restore(step, abstract_state)``.

    A save lands whole or not at all (Orbax writes to a temporary folder and renames it), so a
    run killed mid-save leaves the previous checkpoints intact. A pruned step is renamed out of
    the way before it is deleted, for the same reason: a run killed mid-delete leaves no step
    folder missing files. Opening the folder clears that debris, and moves aside any step
    folder left incomplete by an older rectk (saying so on stderr). Kept: the latest ``keep`` and
    the one with the highest ``metric`` (the trainer passes its validation monitor). The metric
    is stored inside each checkpoint's ``meta`` item, and retention is decided here, not by
    Orbax's ``BestN`` policy: Orbax 0.12 forgets the metrics of checkpoints written by an
    earlier process, and a resumed run then deleted its best checkpoint.
    """

    _METRIC = "_checkpoint_metric"

    def __init__(self, directory: Path, *, keep: int):
        self.keep = max(1, keep)
        self._dir = Path(directory).absolute()
        _clear_incomplete(self._dir)
        options = ocp.CheckpointManagerOptions(
            enable_async_checkpointing=False, todelete_subdir=_TRASH
        )
        self._mngr = ocp.CheckpointManager(self._dir, options=options, item_names=_ITEMS)
        self._metrics: dict[int, float] = {}
        for step in self._mngr.all_steps():
            value = self._restore_meta(step).get(self._METRIC)
            if value is not None:
                self._metrics[step] = float(value)

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._mngr.all_steps())

    def best_step(self) -> int | None:
        """The kept step with the highest metric (the earliest such on ties, as early stopping
        counts only a strict improvement), or None."""
        if not self._metrics:
            return None
        return max(self._metrics, key=lambda s: (self._metrics[s], -s))

    def save(self, step: int, state: Any, meta: dict, metric: float | None = None) -> None:
        meta = dict(meta)
        if metric is not None:
            meta[self._METRIC] = float(metric)
        self._mngr.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )
        self._mngr.wait_until_finished()
        if metric is not None:
            self._metrics[step] = float(metric)
        self._prune()

    def _prune(self) -> None:
        """Delete all but the latest ``keep`` steps and the best one (after a save landed)."""
        steps = sorted(self._mngr.all_steps())
        keep = set(steps[-self.keep :])
        best = self.best_step()
        if best is not None:
            keep.add(best)
        for step in steps:
            if step not in keep:
                self._mngr.delete(step)  # a rename into _TRASH
                self._metrics.pop(step, None)
        shutil.rmtree(self._dir / _TRASH, ignore_errors=True)

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
        out = self._mngr.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
            ),
        )
        meta = dict(out["meta"])
        meta.pop(self._METRIC, None)
        return out["state"], meta

    def restore_weights(self, step: int, abstract_weights: Any) -> Any:
        """The ``{"params", "rest"}`` part of a saved train state alone (an Orbax partial
        restore: the optimiser state is not read), placed as ``abstract_weights`` says."""
        path = self._dir / str(step) / "state"
        restore_args = ocp.checkpoint_utils.construct_restore_args(abstract_weights)
        with ocp.PyTreeCheckpointer() as checkpointer:
            return checkpointer.restore(
                path,
                args=ocp.args.PyTreeRestore(
                    abstract_weights, restore_args=restore_args, partial_restore=True
                ),
            )

    def _restore_meta(self, step: int) -> dict:
        out = self._mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(out["meta"])

    def restore_meta(self, step: int) -> dict:
        meta = self._restore_meta(step)
        meta.pop(self._METRIC, None)
        return meta

    def close(self) -> None:
        self._mngr.close()


def latest_step(directory: Path) -> int | None:
    """The latest complete checkpoint in ``directory``, or None; creates no folder."""
    if not Path(directory).is_dir():
        return None
    ckpt = Checkpoints(directory, keep=1)  # ``keep`` matters to saves only
    try:
        return ckpt.latest_step()
    finally:
        ckpt.close()


def _clear_incomplete(directory: Path) -> None:
    """Deletes what a killed delete left in ``_TRASH``, and moves there (then deletes) any step
    folder without all of its items or Orbax's completion file: such a folder cannot be restored,
    and Orbax would list it as the latest step."""
    if not directory.is_dir():
        return
    trash = directory / _TRASH
    for step_dir in sorted(directory.iterdir()):
        if not (step_dir.is_dir() and step_dir.name.isdigit()):
            continue
        missing = [n for n in (*_ITEMS, _FINALISED) if not (step_dir / n).exists()]
        if not missing:
            continue
        trash.mkdir(exist_ok=True)
        try:
            step_dir.rename(trash / f"{step_dir.name}.incomplete")
        except FileNotFoundError:  # another process of a multi-host run moved it first
            continue
        print(
            f"rectk: {step_dir} was an incomplete checkpoint (no {', '.join(missing)}; a run "
            f"was killed while writing or deleting it); removed",
            file=sys.stderr,
        )
    shutil.rmtree(trash, ignore_errors=True)
