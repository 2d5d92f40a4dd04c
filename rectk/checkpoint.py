"""Orbax checkpoints: atomic saves of the train state and the loop/data-iterator state,
keeping the latest N and the best by the validation metric. Written by every process of a
multi-host run (Orbax coordinates them); the files rectk adds or moves beside Orbax's are
process 0's, the others waiting for it where they would read them.

Each checkpoint records the recipe hash of its run and the size of each of its files: a
checkpoint of another recipe is refused, and one that cannot be read (a truncated file, a
failed restore) is moved aside to ``checkpoints.damaged/`` with a note, the newest intact one
taking its place."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import jax
import orbax.checkpoint as ocp

from rectk.errors import RectkError
from rectk.rundir import unwritable

T = TypeVar("T")

_ITEMS = ("state", "meta")
# Pruned steps are renamed into this folder (one atomic rename), then deleted: a run killed
# while deleting leaves debris here, never a half-deleted step folder that looks like a step.
_TRASH = "_deleted"
# Orbax writes this file into a step folder when the save is complete.
_FINALISED = "_CHECKPOINT_METADATA"
# rectk writes this file into a step folder after Orbax: the size of every file of the step.
_FILES = "rectk_files.json"


class DamagedCheckpoint(RectkError):
    """A checkpoint that cannot be read: a file truncated or missing, or its restore failed."""


class Checkpoints:
    """``save(step, state, meta, metric)`` / ``restore(step, abstract_state)``.

    A save lands whole or not at all (Orbax writes to a temporary folder and renames it), so a
    run killed mid-save leaves the previous checkpoints intact. A pruned step is renamed out of
    the way before it is deleted, for the same reason: a run killed mid-delete leaves no step
    folder missing files. Opening the folder clears that debris, and moves aside any step
    folder left incomplete by an older rectk (saying so on stderr). Kept: the latest ``keep`` and
    the one with the highest ``metric`` (the trainer passes its validation monitor at the
    validations that are its own bests, ``train.min_delta`` included). The metric
    is stored inside each checkpoint's ``meta`` item, and retention is decided here, not by
    Orbax's ``BestN`` policy: Orbax 0.12 forgets the metrics of checkpoints written by an
    earlier process, and a resumed run then deleted its best checkpoint.

    ``recipe_hash``: the hash of the run's recipe, stored in each checkpoint saved; opening
    refuses a checkpoint that holds another. Opening also checks every checkpoint's files
    against the sizes recorded at its save and reads its ``meta``: a damaged one is moved
    aside (``repair``, the default) or skipped (``repair=False``: a reader of a run that is
    training leaves its folder alone).
    """

    _METRIC = "_checkpoint_metric"
    _HASH = "_recipe_hash"

    def __init__(
        self, directory: Path, *, keep: int, recipe_hash: str | None = None, repair: bool = True
    ):
        self.keep = max(1, keep)
        self._dir = Path(directory).absolute()
        self._hash = recipe_hash
        self._repair = repair
        if jax.process_index() == 0:
            _clear_incomplete(self._dir)
        _barrier("rectk_checkpoints_cleared")  # no process lists a step folder moved away
        options = ocp.CheckpointManagerOptions(
            enable_async_checkpointing=False,
            todelete_subdir=_TRASH,
            cleanup_tmp_directories=repair,  # what a failed save (a full disk) left
        )
        self._mngr = ocp.CheckpointManager(self._dir, options=options, item_names=_ITEMS)
        self._metrics: dict[int, float] = {}
        self._metas: dict[int, dict] = {}
        self._damaged: set[int] = set()
        try:
            for step in self._mngr.all_steps():
                try:
                    meta = self._read_meta(step)
                except DamagedCheckpoint as err:
                    self._set_aside(step, err)
                    continue
                self._check_hash(step, meta)
                value = meta.get(self._METRIC)
                if value is not None:
                    self._metrics[step] = float(value)
        except BaseException:
            self._mngr.close()
            raise

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return max(steps) if steps else None

    def all_steps(self) -> list[int]:
        return sorted(s for s in self._mngr.all_steps() if s not in self._damaged)

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
        if self._hash is not None:
            meta[self._HASH] = self._hash
        try:
            self._mngr.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
                ),
                force=True,
            )
            self._mngr.wait_until_finished()
            if jax.process_index() == 0:
                _record_sizes(self._dir / str(step))
        except Exception as err:
            code = _os_error_code(err)
            message = unwritable(self._dir / str(step), code) if code else None
            if message is None:
                raise
            raise message from None
        self._metas[step] = meta
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
                self._metas.pop(step, None)
        if jax.process_index() == 0:  # after Orbax's barrier: every process has deleted
            shutil.rmtree(self._dir / _TRASH, ignore_errors=True)

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
        """The train state and ``meta`` saved at ``step``; ``DamagedCheckpoint`` if they
        cannot be read."""
        out = self._reading(
            step,
            lambda: self._mngr.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
                ),
            ),
        )
        return out["state"], self._public(out["meta"])

    def restore_first(self, steps: Sequence[int], read: Callable[[int], T]) -> tuple[int, T]:
        """``read(step)`` of the first of ``steps`` that can be read, and that step. Those
        that fail before it are moved aside (or skipped), each with a note; if none can be
        read, a ``DamagedCheckpoint`` naming each failure (nothing is moved: a failure of all
        may be a model that changed rather than damage)."""
        failed: list[tuple[int, DamagedCheckpoint]] = []
        for step in dict.fromkeys(steps):
            if step in self._damaged:
                continue
            try:
                value = read(step)
            except DamagedCheckpoint as err:
                failed.append((step, err))
                continue
            for bad, failure in failed:
                self._set_aside(bad, failure, instead=step)
            return step, value
        why = "; ".join(str(failure) for _, failure in failed) or "there is none"
        raise DamagedCheckpoint(
            f"no checkpoint in {self._dir} can be read ({why}). If this rectk or its model "
            f"code changed since they were written, train under another name (--set "
            f"name=...); else move {self._dir} away to train from the start"
        )

    def restore_weights(self, step: int, abstract_weights: Any) -> Any:
        """The ``{"params", "rest"}`` part of a saved train state alone (an Orbax partial
        restore: the optimiser state is not read), placed as ``abstract_weights`` says."""
        path = self._dir / str(step) / "state"
        restore_args = ocp.checkpoint_utils.construct_restore_args(abstract_weights)

        def read():
            with ocp.PyTreeCheckpointer() as checkpointer:
                return checkpointer.restore(
                    path,
                    args=ocp.args.PyTreeRestore(
                        abstract_weights, restore_args=restore_args, partial_restore=True
                    ),
                )

        return self._reading(step, read)

    def _read_meta(self, step: int) -> dict:
        if step not in self._metas:
            out = self._reading(
                step,
                lambda: self._mngr.restore(
                    step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
                ),
            )
            self._metas[step] = dict(out["meta"])
        return self._metas[step]

    def restore_meta(self, step: int) -> dict:
        return self._public(self._read_meta(step))

    def _public(self, meta: dict) -> dict:
        """``meta`` as saved, without what this class added to it."""
        return {k: v for k, v in meta.items() if k not in (self._METRIC, self._HASH)}

    def _reading(self, step: int, read: Callable[[], T]) -> T:
        """``read()`` of checkpoint ``step``, its files' sizes checked first; any failure is a
        ``DamagedCheckpoint`` (a folder that cannot be opened for want of permission is not)."""
        folder = self._dir / str(step)
        if step in self._damaged or not folder.is_dir():
            raise DamagedCheckpoint(f"{folder}: missing (moved aside as damaged, or deleted)")
        _check_sizes(folder)
        try:
            return read()
        except PermissionError:
            raise
        except Exception as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            first = first.split(" See full TensorStore details")[0][:300]
            raise DamagedCheckpoint(f"{folder}: cannot be restored: {first}") from None

    def _check_hash(self, step: int, meta: dict) -> None:
        saved = meta.get(self._HASH)
        if self._hash is not None and saved is not None and saved != self._hash:
            raise RectkError(
                f"{self._dir / str(step)} is a checkpoint of another recipe (hash {saved}; this "
                f"run's recipe hash is {self._hash}), copied from another run directory? Move it "
                f"out of {self._dir}, or train under another name (--set name=...)"
            )

    def _set_aside(self, step: int, err: Exception, *, instead: int | None = None) -> None:
        """Moves the damaged checkpoint ``step`` to ``checkpoints.damaged/`` (kept, not
        deleted) or, without ``repair``, skips it; says so on stderr."""
        self._damaged.add(step)
        self._metrics.pop(step, None)
        self._metas.pop(step, None)
        folder = self._dir / str(step)
        if not self._repair:
            done = "left in place (its run is training)"
        elif jax.process_index() != 0:
            return  # process 0 moves it and says so
        else:
            aside = self._dir.with_name(self._dir.name + ".damaged")
            aside.mkdir(exist_ok=True)
            target, n = aside / str(step), 1
            while target.exists():
                target, n = aside / f"{step}.{n}", n + 1
            try:
                folder.rename(target)
                done = f"moved to {target}"
            except FileNotFoundError:
                done = "already moved"
            self._mngr.reload()
        then = f"; using the checkpoint at step {instead}" if instead is not None else ""
        print(f"rectk: note: damaged checkpoint ({err}); {done}{then}", file=sys.stderr)

    def close(self) -> None:
        self._mngr.close()


def latest_step(directory: Path) -> int | None:
    """The latest complete checkpoint in ``directory``, or None; creates no folder.

    All processes of a multi-host run call it together: they look for the folder at once, so
    all of them open it (Orbax's collective start) or none."""
    _barrier("rectk_latest_step")
    if not Path(directory).is_dir():
        return None
    ckpt = Checkpoints(directory, keep=1)  # ``keep`` matters to saves only
    try:
        return ckpt.latest_step()
    finally:
        ckpt.close()


def _barrier(name: str) -> None:
    """Waits until every process of a multi-host run has reached ``name`` (else nothing)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _record_sizes(folder: Path) -> None:
    """Writes ``_FILES`` into a saved step folder: the size of each of its files."""
    sizes = {
        str(f.relative_to(folder)): f.stat().st_size
        for f in sorted(folder.rglob("*"))
        if f.is_file() and f.name != _FILES
    }
    tmp = folder / (_FILES + ".tmp")
    tmp.write_text(json.dumps(sizes))
    os.replace(tmp, folder / _FILES)


def _check_sizes(folder: Path) -> None:
    """Raises ``DamagedCheckpoint`` if a file of ``folder`` is missing or is not of the size
    recorded at its save (a step saved by an older rectk, or killed just before the record
    was written, has no record: Orbax's restore alone checks it)."""
    record = folder / _FILES
    if not record.is_file():
        return
    try:
        sizes = json.loads(record.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DamagedCheckpoint(f"{record}: truncated or not JSON") from None
    for name, size in sizes.items():
        f = folder / name
        if not f.is_file():
            raise DamagedCheckpoint(f"{folder}: {name} is missing")
        actual = f.stat().st_size
        if actual != size:
            raise DamagedCheckpoint(f"{folder}: {name} has {actual} bytes, {size} when saved")


def _os_error_code(err: BaseException) -> int | None:
    """The OS error number behind ``err``: an ``OSError`` in its chain, or the code that
    TensorStore writes into its messages."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno:
            return seen.errno
        found = re.search(r"os_error_code='?(\d+)", str(seen))
        if found:
            return int(found.group(1))
        seen = seen.__cause__ or seen.__context__
    return None


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
